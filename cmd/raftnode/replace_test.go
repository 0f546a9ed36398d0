package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/raft/client"
)

// admin runs `raftnode admin` against p and fails the test on a non-zero
// exit.
func admin(t *testing.T, bin string, p *proc, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, append(append([]string{"admin", "-addr", p.admin, "-timeout", "20s"}, p.adminArgs...), args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("raftnode admin %s against node %d: %v\n%s", strings.Join(args, " "), p.id, err, out)
	}
	return string(out)
}

// TestProcessReplaceHost follows the procedure in docs/deploy.md: a new
// node joins as a learner, is promoted once caught up, the old node is
// removed, and leadership can be moved onto the new node.
func TestProcessReplaceHost(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	bin := raftnodeBinary(t)
	procs := startProcCluster(t, bin, nil)
	var members []string
	for _, p := range procs {
		members = append(members, fmt.Sprintf("%d=%s/%s", p.id, p.peer, p.clientAddr))
	}
	leader := waitLeader(t, procs, 0)

	// Some data first, so the new node has something to catch up on.
	cl, err := client.New(client.Config{Addrs: []string{procs[0].clientAddr, procs[1].clientAddr, procs[2].clientAddr}, ClusterID: procClusterID})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for i := 0; i < 50; i++ {
		if _, err := cl.Put(ctx, fmt.Appendf(nil, "r%02d", i), []byte("x")); err != nil {
			t.Fatalf("put: %v", err)
		}
	}

	// The new host: a new ID, empty, no -bootstrap, -members = the cluster.
	p4 := &proc{id: 4, peer: testutil.ReserveAddr(t), clientAddr: testutil.ReserveAddr(t), admin: testutil.ReserveAddr(t)}
	dir := t.TempDir()
	p4.logPath = filepath.Join(dir, "node4.log")
	p4.adminArgs = procs[0].adminArgs
	p4.args = append([]string{"run", "-id", "4", "-cluster-id", fmt.Sprint(procClusterID), "-data-dir", filepath.Join(dir, "data4"),
		"-peer-addr", p4.peer, "-client-addr", p4.clientAddr, "-admin-addr", p4.admin,
		"-members", strings.Join(members, ","), "-tick", "20ms"}, p4.adminArgs...)
	t.Cleanup(func() {
		if p4.running() {
			p4.cmd.Process.Kill()
			<-p4.exited
		}
	})
	p4.start(t, bin)
	all := append(slices.Clone(procs), p4)

	admin(t, bin, leader, "add-learner", "4", p4.peer, p4.clientAddr)
	testutil.WaitFor(t, procCatchUpWait, "learner 4 to catch up", func() bool {
		st, err := leader.status()
		f, ok := st.Followers[4]
		return err == nil && ok && f.Learner && f.State == "replicate" && f.LagEntries == 0
	})
	if out := admin(t, bin, leader, "add", "4", p4.peer, p4.clientAddr); !strings.Contains(out, "promoted learner 4") {
		t.Fatalf("promotion printed %q", out)
	}

	// Remove the node being replaced; if it leads, move leadership first.
	old := procs[2]
	if leader == old {
		admin(t, bin, leader, "transfer", "1")
		leader = waitLeader(t, all, 0)
	}
	admin(t, bin, leader, "remove", "3")
	st, err := leader.status()
	if err != nil || !slices.Equal(st.Voters, []uint64{1, 2, 4}) || len(st.Learners) != 0 {
		t.Fatalf("membership after replace: voters %v learners %v (err %v)", st.Voters, st.Learners, err)
	}
	if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Node 3 usually learned of its removal (a member's notice) and exits
	// 3 by itself; a SIGTERM that beats the notice drains it and exits 0.
	if code := old.waitExit(t, procExitWait); code != exitOK && code != exitRemoved {
		t.Fatalf("removed node 3 exited %d after SIGTERM, want %d or %d", code, exitOK, exitRemoved)
	}

	// The new node can lead the reshaped cluster, and serves the old data.
	if out := admin(t, bin, leader, "transfer", "4"); !strings.Contains(out, "node 4 now leads") {
		t.Fatalf("transfer printed %q", out)
	}
	rest := []*proc{procs[0], procs[1], p4}
	if l := waitLeader(t, rest, 0); l != p4 {
		t.Fatalf("node %d leads, want 4", l.id)
	}
	if v, ok, err := cl.Get(ctx, []byte("r49")); err != nil || !ok || string(v) != "x" {
		t.Fatalf("get through the new leader = %q %v %v", v, ok, err)
	}
	cl.Close()
	stopProcCluster(t, rest)
}
