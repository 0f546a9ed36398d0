package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/raft/client"
)

// runCmd runs the binary and returns its output and exit code.
func runCmd(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("raftnode %q: %v", args, err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// TestProcessBackupRestore follows docs/deploy.md's disaster recovery: a
// backup of a 3-process cluster is taken with `raftnode admin snapshot
// save` while a client keeps writing, `raftnode restore` seeds node 1 of a
// new cluster from it, the node starts alone and elects itself, every
// write acknowledged before the backup started is there, and a second
// node is added to it. Damaged backups and occupied data dirs are refused.
func TestProcessBackupRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	bin := raftnodeBinary(t)
	procs := startProcCluster(t, bin, nil)
	leader := waitLeader(t, procs, 0)
	cl := procClient(t, procs)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The load: one writer, recording each acknowledged write in order.
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			k := fmt.Sprintf("w%06d", i)
			if _, err := cl.Put(ctx, []byte(k), []byte("v-"+k)); err != nil {
				if errors.Is(err, client.ErrUnknownOutcome) {
					continue
				}
				writerDone <- err
				return
			}
			mu.Lock()
			acked = append(acked, k)
			mu.Unlock()
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testutil.WaitFor(t, procCatchUpWait, "300 acknowledged writes", func() bool { return count() >= 300 })

	dir := t.TempDir()
	backup := filepath.Join(dir, "cluster.rpbackup")
	mu.Lock()
	before := append([]string(nil), acked...)
	mu.Unlock()
	out, code := runCmd(t, bin, append(append([]string{"admin", "-addr", leader.admin, "-timeout", "30s"}, leader.adminArgs...), "snapshot", "save", backup)...)
	if code != exitOK || !strings.Contains(out, "saved snapshot at index") {
		t.Fatalf("snapshot save: exit %d: %s", code, out)
	}
	during := count() - len(before)
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}
	t.Logf("backup taken after %d acknowledged writes; %d more were acknowledged while it was taken: %s", len(before), during, strings.TrimSpace(out))

	// What is refused: overwriting a backup, a snapshot from a follower,
	// damaged or truncated files, occupied data dirs, other members.
	if out, code := runCmd(t, bin, append(append([]string{"admin", "-addr", leader.admin}, leader.adminArgs...), "snapshot", "save", backup)...); code != exitUsage || !strings.Contains(out, "already exists") {
		t.Fatalf("snapshot save over an existing file: exit %d: %s", code, out)
	}
	for _, p := range procs {
		if p != leader {
			if out, code := runCmd(t, bin, append(append([]string{"admin", "-addr", p.admin}, p.adminArgs...), "snapshot", "save", filepath.Join(dir, "f"))...); code != exitFailure || !strings.Contains(out, "not the leader") {
				t.Fatalf("snapshot save from a follower: exit %d: %s", code, out)
			}
			break
		}
	}
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(data)
	flipped[len(flipped)/2] ^= 0x01
	truncated := data[:len(data)-1000]
	r1 := &proc{id: 1, peer: testutil.ReserveAddr(t), clientAddr: testutil.ReserveAddr(t), admin: testutil.ReserveAddr(t), logPath: filepath.Join(dir, "r1.log")}
	self := fmt.Sprintf("1=%s/%s", r1.peer, r1.clientAddr)
	newDir := filepath.Join(dir, "restored1")
	restore := func(from, dataDir, members string) (string, int) {
		return runCmd(t, bin, "restore", "-from", from, "-data-dir", dataDir, "-id", "1", "-cluster-id", "8", "-members", members)
	}
	for _, tc := range []struct {
		name    string
		content []byte
		want    string
	}{{"flipped", flipped, "SHA-256 mismatch"}, {"truncated", truncated, "truncated or joined"}} {
		bad := filepath.Join(dir, tc.name)
		if err := os.WriteFile(bad, tc.content, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, code := restore(bad, newDir, self); code != exitFailure || !strings.Contains(out, tc.want) {
			t.Fatalf("restore from a %s backup: exit %d: %s", tc.name, code, out)
		}
		if _, err := os.Stat(newDir); !os.IsNotExist(err) {
			t.Fatalf("restore from a %s backup created %s", tc.name, newDir)
		}
	}
	occupied := procs[0].args[slices.Index(procs[0].args, "-data-dir")+1]
	if out, code := restore(backup, occupied, self); code != exitUsage || !strings.Contains(out, "refusing to restore into") {
		t.Fatalf("restore into a live node's data dir: exit %d: %s", code, out)
	}
	if out, code := restore(backup, newDir, self+",2=127.0.0.1:9/127.0.0.1:10"); code != exitUsage || !strings.Contains(out, "nothing else") {
		t.Fatalf("restore with two members: exit %d: %s", code, out)
	}

	// The real restore, then a second one into the same dir is refused.
	if out, code := restore(backup, newDir, self); code != exitOK || !strings.Contains(out, "next: raftnode run") {
		t.Fatalf("restore: exit %d: %s", code, out)
	}
	if out, code := restore(backup, newDir, self); code != exitUsage || !strings.Contains(out, "refusing to restore into") {
		t.Fatalf("second restore into the same dir: exit %d: %s", code, out)
	}
	cl.Close()
	stopProcCluster(t, procs) // the old cluster is gone: a disaster

	// The new cluster: node 1 alone, started on the restored dir.
	token := writeAdminToken(t, dir)
	r1.adminArgs = []string{"-admin-token-file", token}
	r1.args = append([]string{"run", "-id", "1", "-cluster-id", "8", "-data-dir", newDir, "-peer-addr", r1.peer,
		"-client-addr", r1.clientAddr, "-admin-addr", r1.admin, "-members", self, "-tick", "20ms"}, r1.adminArgs...)
	r2 := &proc{id: 2, peer: testutil.ReserveAddr(t), clientAddr: testutil.ReserveAddr(t), admin: testutil.ReserveAddr(t), logPath: filepath.Join(dir, "r2.log"), adminArgs: r1.adminArgs}
	r2.args = append([]string{"run", "-id", "2", "-cluster-id", "8", "-data-dir", filepath.Join(dir, "new2"), "-peer-addr", r2.peer,
		"-client-addr", r2.clientAddr, "-admin-addr", r2.admin, "-members", self, "-tick", "20ms"}, r2.adminArgs...)
	fresh := []*proc{r1, r2}
	t.Cleanup(func() {
		for _, p := range fresh {
			if p.running() {
				p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			for _, p := range fresh {
				b, _ := os.ReadFile(p.logPath)
				t.Logf("--- restored-cluster node %d log ---\n%s", p.id, b)
			}
		}
	})
	r1.start(t, bin)
	waitLeader(t, fresh[:1], 0)
	ncl, err := client.New(client.Config{Addrs: []string{r1.clientAddr}, ClusterID: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer ncl.Close()
	for _, k := range before {
		v, ok, err := ncl.Get(ctx, []byte(k))
		if err != nil || !ok || string(v) != "v-"+k {
			t.Fatalf("write %s, acknowledged before the backup, after restore: %q found=%v err=%v", k, v, ok, err)
		}
	}
	if _, err := ncl.Put(ctx, []byte("after-restore"), []byte("yes")); err != nil {
		t.Fatal(err)
	}

	// A second node joins the restored cluster the usual way.
	r2.start(t, bin)
	admin(t, bin, r1, "add-learner", "2", r2.peer, r2.clientAddr)
	testutil.WaitFor(t, procCatchUpWait, "learner 2 to catch up", func() bool {
		st, err := r1.status()
		f, ok := st.Followers[2]
		return err == nil && ok && f.State == "replicate" && f.LagEntries == 0
	})
	admin(t, bin, r1, "add", "2", r2.peer, r2.clientAddr)
	st, err := r1.status()
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, procCatchUpWait, "node 2 to apply the leader's commit", func() bool {
		s, err := r2.status()
		return err == nil && s.Applied >= st.Commit && len(s.Voters) == 2
	})
	solo, err := client.New(client.Config{Addrs: []string{r2.clientAddr}, ClusterID: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer solo.Close()
	for _, k := range append([]string{before[0], before[len(before)-1]}, "after-restore") {
		if _, ok, err := solo.GetStale(ctx, []byte(k)); err != nil || !ok {
			t.Fatalf("node 2 of the restored cluster lacks %s (found=%v err=%v)", k, ok, err)
		}
	}
	ncl.Close()
	solo.Close()
	stopProcCluster(t, fresh)
}
