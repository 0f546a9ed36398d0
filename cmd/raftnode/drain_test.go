package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/raft/client"
)

// TestProcessDrainOnSIGTERM SIGTERMs the leader of a 3-process cluster
// under a write load: it exits 0 within its -drain-timeout (+ stop), hands
// leadership off, and no write gets an unknown outcome (each is
// acknowledged, or refused and retried by the client on the new leader).
func TestProcessDrainOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	bin := raftnodeBinary(t)
	procs := startProcCluster(t, bin, func(p *proc) []string { return []string{"-drain-timeout", "5s"} })
	leader := waitLeader(t, procs, 0)
	cl := procClient(t, procs)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		mu      sync.Mutex
		acked   = map[string]bool{}
		unknown []string
		n       atomic.Int64
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				k := fmt.Sprintf("d%d-%d", w, i)
				_, err := cl.Put(ctx, []byte(k), []byte(k))
				mu.Lock()
				switch {
				case err == nil:
					acked[k] = true
					n.Add(1)
				case errors.Is(err, client.ErrUnknownOutcome):
					unknown = append(unknown, fmt.Sprintf("%s: %v", k, err))
				default:
					unknown = append(unknown, fmt.Sprintf("%s: refused without retry: %v", k, err))
				}
				mu.Unlock()
			}
		}()
	}
	testutil.WaitFor(t, 20*time.Second, "writes under load", func() bool { return n.Load() >= 200 })
	start := time.Now()
	if err := leader.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := leader.waitExit(t, 5*time.Second+stopTimeout)
	took := time.Since(start)
	if code != exitOK {
		t.Fatalf("leader exited %d after SIGTERM, want 0", code)
	}
	before := n.Load()
	testutil.WaitFor(t, 20*time.Second, "writes to continue on the new leader", func() bool { return n.Load() >= before+100 })
	stop.Store(true)
	wg.Wait()
	log, _ := os.ReadFile(leader.logPath)
	if !strings.Contains(string(log), "handed leadership off") {
		t.Errorf("leader's log lacks the hand-off")
	}
	if len(unknown) > 0 {
		t.Fatalf("%d writes without a definite answer, e.g. %v", len(unknown), unknown[:min(5, len(unknown))])
	}
	t.Logf("leader %d exited 0 %v after SIGTERM; %d writes acknowledged", leader.id, took, n.Load())
	for k := range acked {
		if _, ok, err := cl.Get(ctx, []byte(k)); err != nil || !ok {
			t.Fatalf("acknowledged write %s: found=%v err=%v", k, ok, err)
		}
	}
	var rest []*proc
	for _, p := range procs {
		if p != leader {
			rest = append(rest, p)
		}
	}
	stopProcCluster(t, rest)
}

// TestProcessRemovedExitStatus removes a follower with raftnode admin
// remove: the removed process exits with status 3 and the others' term
// does not move over several election timeouts.
func TestProcessRemovedExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	bin := raftnodeBinary(t)
	procs := startProcCluster(t, bin, nil)
	leader := waitLeader(t, procs, 0)
	var victim *proc
	for _, p := range procs {
		if p != leader {
			victim = p
			break
		}
	}
	out, code := runCmd(t, bin, append(append([]string{"admin", "-addr", leader.admin}, leader.adminArgs...), "remove", fmt.Sprint(victim.id))...)
	if code != exitOK {
		t.Fatalf("admin remove: exit %d: %s", code, out)
	}
	if code := victim.waitExit(t, 15*time.Second); code != exitRemoved {
		t.Fatalf("removed node exited %d, want %d", code, exitRemoved)
	}
	st, err := leader.status()
	if err != nil {
		t.Fatal(err)
	}
	// 5 election timeouts at -tick 20ms and 10 election ticks.
	observe := time.NewTimer(5 * 10 * 20 * time.Millisecond)
	<-observe.C
	st2, err := leader.status()
	if err != nil || st2.Term != st.Term || st2.Role != "leader" {
		t.Fatalf("after the removal: term %d -> %d, role %s, err %v", st.Term, st2.Term, st2.Role, err)
	}
	log, _ := os.ReadFile(victim.logPath)
	if !strings.Contains(string(log), "removed from the cluster") {
		t.Errorf("removed node's log does not say why it stopped")
	}
	var rest []*proc
	for _, p := range procs {
		if p != victim {
			rest = append(rest, p)
		}
	}
	stopProcCluster(t, rest)
}
