package chaos

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/raft/client"
	"github.com/raftpipe/raftpipe/raft/node"
)

// flagProcess enables the process-mode schedule (real raftnode processes,
// SIGKILL/SIGSTOP/SIGCONT). Off by default: building the binary costs tens
// of seconds on a loaded machine, more than `make test` can spare.
var flagProcess = flag.Bool("chaos.process", false,
	"also run the process-mode schedule: build cmd/raftnode and kill/pause real processes")

// statusTimeout bounds one /status request; a paused process never answers.
const statusTimeout = 300 * time.Millisecond

// raftnodeBin builds cmd/raftnode once per test binary.
var raftnodeBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "chaos-raftnode-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "raftnode")
	out, err := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, "github.com/raftpipe/raftpipe/cmd/raftnode").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build raftnode: %v\n%s", err, out)
	}
	return bin, nil
})

// chaosProc is one raftnode process.
type chaosProc struct {
	id              uint64
	peer, cl, admin string
	args            []string
	logPath         string
	cmd             *exec.Cmd
	exited          chan struct{}
	paused          bool
	httpc           *http.Client
}

// start launches the process with its fixed arguments.
func (p *chaosProc) start(bin string) error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start raftnode %d: %w", p.id, err)
	}
	p.exited = make(chan struct{})
	cmd, exited := p.cmd, p.exited
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	return nil
}

// alive reports whether the process runs (paused counts as alive).
func (p *chaosProc) alive() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill SIGKILLs the process and reaps it.
func (p *chaosProc) kill() {
	if !p.alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.paused = false
}

// signal sends SIGSTOP or SIGCONT.
func (p *chaosProc) signal(sig syscall.Signal) {
	if p.alive() {
		_ = p.cmd.Process.Signal(sig)
		p.paused = sig == syscall.SIGSTOP
	}
}

// status reads /status from the admin port.
func (p *chaosProc) status() (node.Status, error) {
	var st node.Status
	resp, err := p.httpc.Get("http://" + p.admin + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// procCluster is three raftnode processes on loopback, linked directly
// (network faults are the in-process schedules' business; these are
// process faults).
type procCluster struct {
	bin   string
	procs []*chaosProc
}

func newProcCluster(t *testing.T, voters int) *procCluster {
	t.Helper()
	bin, err := raftnodeBin()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	pc := &procCluster{bin: bin}
	var members []string
	for i := 0; i < voters; i++ {
		p := &chaosProc{id: uint64(i + 1), peer: testutil.ReserveAddr(t), cl: testutil.ReserveAddr(t), admin: testutil.ReserveAddr(t),
			logPath: filepath.Join(base, fmt.Sprintf("node%d.log", i+1)), httpc: &http.Client{Timeout: statusTimeout}}
		pc.procs = append(pc.procs, p)
		members = append(members, fmt.Sprintf("%d=%s/%s", p.id, p.peer, p.cl))
	}
	for _, p := range pc.procs {
		p.args = []string{"run", "-id", fmt.Sprint(p.id), "-cluster-id", fmt.Sprint(chaosClusterID),
			"-data-dir", filepath.Join(base, fmt.Sprintf("data%d", p.id)),
			"-peer-addr", p.peer, "-client-addr", p.cl, "-admin-addr", p.admin,
			"-members", strings.Join(members, ","), "-bootstrap", "-tick", chaosTick.String(),
			"-snapshot-entries", fmt.Sprint(chaosSnapshotEntries), "-retain-entries", fmt.Sprint(chaosRetainEntries),
			"-log-level", "warn"}
	}
	t.Cleanup(func() {
		for _, p := range pc.procs {
			p.signal(syscall.SIGCONT)
			p.kill()
			p.httpc.CloseIdleConnections()
		}
		if t.Failed() {
			for _, p := range pc.procs {
				b, _ := os.ReadFile(p.logPath)
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("--- raftnode %d log (tail) ---\n%s", p.id, b)
			}
		}
	})
	for _, p := range pc.procs {
		if err := p.start(bin); err != nil {
			t.Fatal(err)
		}
	}
	return pc
}

// leader returns the unpaused live process that reports leadership with
// the highest term, or nil.
func (pc *procCluster) leader() *chaosProc {
	var best *chaosProc
	var bestTerm uint64
	for _, p := range pc.procs {
		if !p.alive() || p.paused {
			continue
		}
		st, err := p.status()
		if err == nil && st.Role == "leader" && (best == nil || st.Term > bestTerm) {
			best, bestTerm = p, st.Term
		}
	}
	return best
}

func (pc *procCluster) waitLeader(d time.Duration) *chaosProc {
	var l *chaosProc
	testutil.Poll(d, func() bool { l = pc.leader(); return l != nil })
	return l
}

func (pc *procCluster) clientAddrs() []string {
	var out []string
	for _, p := range pc.procs {
		out = append(out, p.cl)
	}
	return out
}

// converge resumes and restarts every process, commits a fence write and
// waits until every process has applied the leader's commit index.
func (pc *procCluster) converge(t *testing.T) error {
	for _, p := range pc.procs {
		p.signal(syscall.SIGCONT)
		if !p.alive() {
			if err := p.start(pc.bin); err != nil {
				return err
			}
		}
	}
	cl := newChaosClient(t, pc.clientAddrs())
	defer cl.Close()
	deadline := time.Now().Add(convergeDeadline)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		_, err := cl.Put(ctx, []byte(fenceKey), []byte(fmt.Sprint(time.Now().UnixNano())))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("converge: fence write failed until the deadline: %w", err)
		}
	}
	var l *chaosProc
	var lst node.Status
	ok := testutil.Poll(time.Until(deadline), func() bool {
		if l = pc.leader(); l == nil {
			return false
		}
		var err error
		lst, err = l.status()
		return err == nil
	})
	if !ok {
		return fmt.Errorf("converge: no leader")
	}
	for _, p := range pc.procs {
		ok := testutil.Poll(time.Until(deadline), func() bool {
			st, err := p.status()
			return err == nil && st.Applied >= lst.Commit && st.Leader == l.id
		})
		if !ok {
			st, err := p.status()
			return fmt.Errorf("converge: raftnode %d did not catch up with leader %d (commit %d): %+v %v", p.id, l.id, lst.Commit, st, err)
		}
	}
	return nil
}

// TestChaosProcess runs real raftnode processes under SIGKILL and
// SIGSTOP/SIGCONT of leaders and followers (a paused leader is the classic
// way to get two nodes that both believe they lead), with the same
// workload and checks as TestChaos. Enabled by -chaos.process.
func TestChaosProcess(t *testing.T) {
	if !*flagProcess {
		t.Skip("process mode is off; run with -chaos.process")
	}
	const name = "process-kill-pause"
	seed := scheduleSeed(name)
	replay := fmt.Sprintf("seed %d; replay: go test ./internal/chaos -run 'TestChaosProcess$' -chaos.process -chaos.seed %d", seed, baseSeed())
	t.Logf("%s", replay)
	pc := newProcCluster(t, 3)
	if pc.waitLeader(convergeDeadline) == nil {
		t.Fatal("no initial leader")
	}
	w := startWorkload(t, pc.clientAddrs(), seed)
	t.Cleanup(w.stop)
	rng := rand.New(rand.NewPCG(seed, 0x70726f63))
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }
	end := time.Now().Add(scheduleDuration())
	hold := func(d time.Duration) { time.Sleep(min(d, max(time.Until(end), 0))) }
	faults, kinds := 0, map[string]int{}
	note := func(kind, format string, args ...any) {
		faults++
		kinds[kind]++
		t.Logf("%6.2fs nemesis %s: %s", time.Until(end).Seconds(), kind, fmt.Sprintf(format, args...))
	}
	start := time.Now()
	for time.Now().Before(end) {
		l := pc.waitLeader(nemesisWaitDeadline)
		if l == nil {
			continue
		}
		switch rng.IntN(3) {
		case 0:
			l.kill()
			note("sigkill", "leader %d", l.id)
			hold(between(200*time.Millisecond, time.Second))
			if err := l.start(pc.bin); err != nil {
				t.Fatal(err)
			}
		case 1:
			l.signal(syscall.SIGSTOP)
			note("sigstop", "leader %d paused", l.id)
			hold(between(700*time.Millisecond, 2500*time.Millisecond))
			l.signal(syscall.SIGCONT)
		default:
			var f *chaosProc
			for _, p := range pc.procs {
				if p != l && (f == nil || rng.IntN(2) == 0) {
					f = p
				}
			}
			f.signal(syscall.SIGSTOP)
			note("sigstop", "follower %d paused", f.id)
			hold(between(500*time.Millisecond, 2*time.Second))
			f.signal(syscall.SIGCONT)
		}
		hold(between(300*time.Millisecond, 1200*time.Millisecond))
	}
	faultTime := time.Since(start)
	w.stop()
	if err := pc.converge(t); err != nil {
		t.Fatalf("%v (%s)", err, replay)
	}
	finals, err := w.finalReads(t, pc.clientAddrs())
	if err != nil {
		t.Fatalf("%v (%s)", err, replay)
	}
	for _, p := range pc.procs {
		cl, err := client.New(client.Config{Addrs: []string{p.cl}, ClusterID: chaosClusterID})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < workloadKeys; i++ {
			key := workloadKey(i)
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			v, found, err := cl.GetStale(ctx, []byte(key))
			cancel()
			if err != nil {
				t.Fatalf("raftnode %d stale get %s: %v (%s)", p.id, key, err, replay)
			}
			want := finals[key]
			if found != (want != nil) || (found && string(v) != *want) {
				t.Errorf("raftnode %d holds %s=%q (found %v), the leader read %v (%s)", p.id, key, v, found, describeFinal(want), replay)
			}
		}
		cl.Close()
	}
	checkAndReport(t, name, seed, 3, replay, w, faultTime, faults, kinds)
}
