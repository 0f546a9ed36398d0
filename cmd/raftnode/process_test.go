package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// Bounds of the multi-process test. The whole test must stay well under a
// minute on a loaded 2-core machine; each wait is a poll with a deadline.
const (
	procLeaderWait  = 20 * time.Second
	procCatchUpWait = 20 * time.Second
	procExitWait    = 20 * time.Second
	procClusterID   = 7
)

// The raftnode binary is built once per test binary (linking dominates the
// test's time on a loaded machine) into a temp directory that TestMain
// removes.
var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildSkip string
)

// raftnodeBinary builds this command, once. It skips the calling test only
// when no go tool can be found; any other build failure fails it. Debug
// info is left out (-s -w): linking is most of the build time, and the
// test never debugs the binary.
func raftnodeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		// go test puts the GOROOT/bin of the go that runs it first on
		// PATH, so this finds that go (runtime.GOROOT is deprecated).
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildSkip = fmt.Sprintf("cannot build raftnode: no go tool on PATH (%v)", err)
			return
		}
		dir, err := os.MkdirTemp("", "raftnode-test-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "raftnode")
		if out, err := exec.Command(goTool, "build", "-ldflags=-s -w", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildSkip != "" {
		t.Skip(buildSkip)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// proc is one raftnode process of the test cluster.
type proc struct {
	id                      uint64
	peer, clientAddr, admin string
	args                    []string
	logPath                 string
	// adminArgs are the credentials flags `raftnode admin` needs for this
	// node (a token file, or TLS flags); adminHTTPS says its admin port
	// serves HTTPS, and adminTLS is then the client's configuration.
	adminArgs  []string
	adminHTTPS bool
	adminTLS   *tls.Config
	cmd        *exec.Cmd
	// exited is closed when the process has been reaped; waitErr is then
	// its exit status.
	exited  chan struct{}
	waitErr error
}

func (p *proc) start(t *testing.T, bin string) {
	t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start node %d: %v", p.id, err)
	}
	p.exited = make(chan struct{})
	go func() {
		p.waitErr = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
}

func (p *proc) running() bool {
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

// waitExit waits for the process to end and returns its exit code.
func (p *proc) waitExit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("node %d did not exit within %v", p.id, d)
		return -1
	}
}

// status reads the node's /status from its admin port.
func (p *proc) status() (node.Status, error) {
	var st node.Status
	hc := http.Client{Timeout: 2 * time.Second}
	scheme := "http://"
	if p.adminHTTPS {
		scheme = "https://"
		hc.Transport = &http.Transport{TLSClientConfig: p.adminTLS}
		defer hc.CloseIdleConnections()
	}
	resp, err := hc.Get(scheme + p.admin + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitLeader waits until every running process reports the same leader,
// which is itself running and says it leads. It returns that process.
func waitLeader(t *testing.T, procs []*proc, notID uint64) *proc {
	t.Helper()
	var leader *proc
	testutil.WaitFor(t, procLeaderWait, "an agreed leader", func() bool {
		leader = nil
		var lead uint64
		for _, p := range procs {
			if !p.running() {
				continue
			}
			st, err := p.status()
			if err != nil || st.Leader == 0 || st.Leader == notID || (lead != 0 && st.Leader != lead) {
				return false
			}
			lead = st.Leader
			if st.ID == lead {
				if st.Role != "leader" {
					return false
				}
				leader = p
			}
		}
		return leader != nil
	})
	return leader
}

// procAdminToken is the admin token of the test clusters without TLS.
const procAdminToken = "test-admin-token-0123456789abcdef"

// writeAdminToken writes procAdminToken into dir and returns the file.
func writeAdminToken(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(path, []byte(procAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startProcCluster starts three bootstrapping raftnode processes on
// loopback ports; extra, if set, adds flags per process. Unless extra sets
// p.adminArgs (e.g. to TLS flags), every node takes the bearer token of
// writeAdminToken and p.adminArgs passes it to `raftnode admin`. The
// processes are SIGKILLed in t.Cleanup if still running, and their logs
// printed if the test failed.
func startProcCluster(t *testing.T, bin string, extra func(p *proc) []string) []*proc {
	t.Helper()
	base := t.TempDir()
	tokenFile := writeAdminToken(t, base)
	procs := make([]*proc, 3)
	var members []string
	for i := range procs {
		p := &proc{id: uint64(i + 1), peer: testutil.ReserveAddr(t), clientAddr: testutil.ReserveAddr(t), admin: testutil.ReserveAddr(t)}
		p.logPath = filepath.Join(base, fmt.Sprintf("node%d.log", p.id))
		procs[i] = p
		members = append(members, fmt.Sprintf("%d=%s/%s", p.id, p.peer, p.clientAddr))
	}
	for _, p := range procs {
		p.args = []string{"run", "-id", fmt.Sprint(p.id), "-cluster-id", fmt.Sprint(procClusterID),
			"-data-dir", filepath.Join(base, fmt.Sprintf("data%d", p.id)),
			"-peer-addr", p.peer, "-client-addr", p.clientAddr, "-admin-addr", p.admin,
			"-members", strings.Join(members, ","), "-bootstrap", "-tick", "20ms", "-log-level", "debug"}
		if extra != nil {
			p.args = append(p.args, extra(p)...)
		}
		if p.adminArgs == nil {
			p.adminArgs = []string{"-admin-token-file", tokenFile}
			p.args = append(p.args, p.adminArgs...)
		}
	}
	t.Cleanup(func() {
		for _, p := range procs {
			if p.running() {
				p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			for _, p := range procs {
				b, _ := os.ReadFile(p.logPath)
				if len(b) > 8000 {
					b = b[len(b)-8000:]
				}
				t.Logf("--- node %d log (tail) ---\n%s", p.id, b)
			}
		}
	})
	for _, p := range procs {
		p.start(t, bin)
	}
	return procs
}

// stopProcCluster SIGTERMs every process and checks each exits 0 after a
// clean shutdown.
func stopProcCluster(t *testing.T, procs []*proc) {
	t.Helper()
	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs {
		if code := p.waitExit(t, procExitWait); code != 0 {
			t.Errorf("node %d exited %d after SIGTERM (%v)", p.id, code, p.waitErr)
		}
	}
	for _, p := range procs {
		b, _ := os.ReadFile(p.logPath)
		if !bytes.Contains(b, []byte("shutdown complete")) {
			t.Errorf("node %d log lacks the clean-shutdown line", p.id)
		}
	}
}

// TestProcessCluster runs three raftnode processes, drives them with the
// Go client, SIGKILLs the leader, checks that acknowledged writes survive,
// restarts the killed node and checks it catches up, and finally SIGTERMs
// everything and checks for clean exits.
func TestProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	bin := raftnodeBinary(t)
	procs := startProcCluster(t, bin, nil)
	leader := waitLeader(t, procs, 0)
	t.Logf("leader is node %d", leader.id)

	cl := procClient(t, procs)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	acked := map[string]string{}
	put := func(prefix string, n int) {
		for i := 0; i < n; i++ {
			k, v := fmt.Sprintf("%s%03d", prefix, i), fmt.Sprintf("value-%s-%d", prefix, i)
			if _, err := cl.Put(ctx, []byte(k), []byte(v)); err != nil {
				if errors.Is(err, client.ErrUnknownOutcome) && ctx.Err() == nil {
					continue // may or may not have applied: not counted as acknowledged
				}
				t.Fatalf("put %s: %v", k, err)
			}
			acked[k] = v
		}
	}
	checkAcked := func() {
		t.Helper()
		for k, v := range acked {
			got, ok, err := cl.Get(ctx, []byte(k))
			if err != nil || !ok || string(got) != v {
				t.Fatalf("acknowledged write %s=%s: linearizable get = %q found=%v err=%v", k, v, got, ok, err)
			}
		}
	}

	put("a", 100)
	checkAcked()
	if swapped, _, err := cl.CAS(ctx, []byte("a000"), []byte(acked["a000"]), []byte("swapped"), false); err != nil || !swapped {
		t.Fatalf("CAS with the right expectation: swapped=%v err=%v", swapped, err)
	}
	acked["a000"] = "swapped"
	if swapped, cur, err := cl.CAS(ctx, []byte("a000"), []byte("stale"), []byte("nope"), false); err != nil || swapped || string(cur) != "swapped" {
		t.Fatalf("CAS with a stale expectation: swapped=%v current=%q err=%v", swapped, cur, err)
	}

	// The admin subcommand against live nodes.
	out, err := exec.Command(bin, "admin", "-addr", leader.admin, "status").Output() // no token: status is an open read
	if err != nil {
		t.Fatalf("raftnode admin status: %v", err)
	}
	var st node.Status
	if err := json.Unmarshal(out, &st); err != nil || st.ID != leader.id || st.Role != "leader" || len(st.Voters) != 3 {
		t.Fatalf("raftnode admin status printed %s (decode err %v)", out, err)
	}
	var follower *proc
	for _, p := range procs {
		if p != leader {
			follower = p
			break
		}
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append(append([]string{"admin", "-addr", follower.admin, "-timeout", "10s"}, follower.adminArgs...), "add", "9", "127.0.0.1:1", "127.0.0.1:2")...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != exitFailure ||
		!strings.Contains(stderr.String(), "not the leader") || !strings.Contains(stderr.String(), fmt.Sprintf("node %d leads", leader.id)) {
		t.Fatalf("admin add against a follower: err=%v stderr=%q; want exit 1 naming leader %d", err, stderr.String(), leader.id)
	}

	// Without the token, or with a wrong one, a change is refused (401)
	// and counted; the correct one was used above.
	wrong := filepath.Join(t.TempDir(), "wrong.token")
	if err := os.WriteFile(wrong, []byte("not-the-admin-token-at-all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		creds []string
		want  string
	}{
		{nil, "the bearer token is required"},
		{[]string{"-admin-token-file", wrong}, "wrong bearer token"},
	} {
		stderr.Reset()
		cmd := exec.Command(bin, append(append([]string{"admin", "-addr", leader.admin, "-timeout", "10s"}, tc.creds...), "add-learner", "9", "127.0.0.1:1", "127.0.0.1:2")...)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != exitFailure ||
			!strings.Contains(stderr.String(), "401 Unauthorized") || !strings.Contains(stderr.String(), tc.want) {
			t.Fatalf("admin add-learner with credentials %q: err=%v stderr=%q; want exit 1, 401 and %q", tc.creds, err, stderr.String(), tc.want)
		}
	}
	resp, err := http.Get("http://" + leader.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{`raftpipe_admin_refused_total{reason="no_credentials"} 1`, `raftpipe_admin_refused_total{reason="bad_token"} 1`} {
		if err != nil || !bytes.Contains(metrics, []byte(line+"\n")) {
			t.Fatalf("leader /metrics lacks %q (err %v)", line, err)
		}
	}
	if st, err := leader.status(); err != nil || len(st.Learners) != 0 {
		t.Fatalf("refused add-learner changed the membership: learners %v (err %v)", st.Learners, err)
	}

	// SIGKILL the leader: a new one takes over and nothing acknowledged is lost.
	killed := leader
	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-killed.exited
	leader = waitLeader(t, procs, killed.id)
	t.Logf("after killing node %d, node %d leads", killed.id, leader.id)
	put("b", 50)
	checkAcked()

	// Restart the killed node (with the same flags: -bootstrap is ignored
	// once there is state) and wait for it to apply the leader's commit.
	killed.start(t, bin)
	st, err = leader.status()
	if err != nil {
		t.Fatal(err)
	}
	target := st.Commit
	testutil.WaitFor(t, procCatchUpWait, fmt.Sprintf("node %d to apply index %d", killed.id, target), func() bool {
		s, err := killed.status()
		return err == nil && s.Applied >= target
	})
	// Its own state machine holds the writes: stale reads served by it alone.
	solo, err := client.New(client.Config{Addrs: []string{killed.clientAddr}, ClusterID: procClusterID})
	if err != nil {
		t.Fatal(err)
	}
	defer solo.Close()
	for k, v := range acked {
		got, ok, err := solo.GetStale(ctx, []byte(k))
		if err != nil || !ok || string(got) != v {
			t.Fatalf("restarted node %d: stale get %s = %q found=%v err=%v, want %q", killed.id, k, got, ok, err, v)
		}
	}
	cl.Close()
	solo.Close()

	// SIGTERM everything: each process shuts down cleanly and exits 0.
	stopProcCluster(t, procs)
}

// procClient is a client of every process's client port; closed when the
// test ends.
func procClient(t *testing.T, procs []*proc) *client.Client {
	t.Helper()
	var addrs []string
	for _, p := range procs {
		addrs = append(addrs, p.clientAddr)
	}
	cl, err := client.New(client.Config{Addrs: addrs, ClusterID: procClusterID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}
