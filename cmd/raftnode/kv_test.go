package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/wire"
)

// kvResult is one run of `raftnode kv`.
type kvResult struct {
	stdout, stderr string
	code           int
}

func (r kvResult) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// runKVProc runs the raftnode binary's kv subcommand with stdin.
func runKVProc(t *testing.T, bin string, stdin []byte, args ...string) kvResult {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"kv"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("raftnode kv %q: %v", args, err)
	}
	return kvResult{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// runKVInProc runs kvCommand in this process.
func runKVInProc(stdin []byte, args ...string) kvResult {
	var stdout, stderr bytes.Buffer
	code := kvCommand(args, bytes.NewReader(stdin), &stdout, &stderr)
	return kvResult{stdout.String(), stderr.String(), code}
}

// TestProcessKV drives the kv subcommand of the real binary against a
// three-process cluster: put, get (linearizable, -stale, -json), del, cas
// (match, mismatch, -absent), not found, binary values through stdin, and
// a cluster that cannot be reached.
func TestProcessKV(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	bin := raftnodeBinary(t)
	procs := startProcCluster(t, bin, nil)
	waitLeader(t, procs, 0)
	var addrs []string
	for _, p := range procs {
		addrs = append(addrs, p.clientAddr)
	}
	common := []string{"-cluster", strings.Join(addrs, ","), "-cluster-id", fmt.Sprint(procClusterID), "-timeout", "20s"}
	kvOK := func(stdin []byte, wantOut string, args ...string) {
		t.Helper()
		r := runKVProc(t, bin, stdin, append(common, args...)...)
		if r.code != exitOK || r.stdout != wantOut {
			t.Fatalf("kv %q: %v; want exit 0 and stdout %q", args, r, wantOut)
		}
	}
	kvMiss := func(wantOut, wantErr string, args ...string) {
		t.Helper()
		r := runKVProc(t, bin, nil, append(common, args...)...)
		if r.code != kvExitMiss || r.stdout != wantOut || !strings.Contains(r.stderr, wantErr) {
			t.Fatalf("kv %q: %v; want exit %d, stdout %q, stderr mentioning %q", args, r, kvExitMiss, wantOut, wantErr)
		}
	}
	kvJSON := func(wantCode int, args ...string) map[string]any {
		t.Helper()
		r := runKVProc(t, bin, nil, append(append(common, "-json"), args...)...)
		var m map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &m); r.code != wantCode || err != nil || !strings.HasSuffix(r.stdout, "}\n") {
			t.Fatalf("kv -json %q: %v (decode: %v); want exit %d and one JSON object", args, r, err, wantCode)
		}
		return m
	}

	// put, get, del, not found.
	kvOK(nil, "OK\n", "put", "greeting", "hello world")
	kvOK(nil, "hello world", "get", "greeting")
	kvMiss("", "not found", "get", "missing")
	kvOK(nil, "OK\n", "del", "greeting")
	kvMiss("", "not found", "get", "greeting")
	kvOK(nil, "OK\n", "del", "greeting") // deleting a missing key succeeds
	kvOK(nil, "OK\n", "put", "--", "dash", "-5")
	kvOK(nil, "-5", "get", "dash")

	// A stale read is served by whichever node is reached and may trail;
	// once it has applied the write it returns it. Flags may follow the
	// command.
	testutil.WaitFor(t, procCatchUpWait, "a stale read to see the put", func() bool {
		r := runKVProc(t, bin, nil, append(common, "get", "-stale", "dash")...)
		return r.code == exitOK && r.stdout == "-5"
	})

	// cas: match, mismatch (the current value on stdout), expect-absent.
	kvOK(nil, "OK\n", "put", "c", "one")
	kvMiss("one", "current value differs", "cas", "c", "zero", "two")
	kvOK(nil, "OK\n", "cas", "c", "one", "two")
	kvOK(nil, "two", "get", "c")
	kvMiss("two", "the key exists", "cas", "-absent", "c", "three")
	kvOK(nil, "OK\n", "cas", "-absent", "fresh", "new")
	kvOK(nil, "new", "get", "fresh")
	kvMiss("", "current value differs", "cas", "nothing-here", "x", "y")

	// Binary values through stdin, written back raw.
	bin1 := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0x80, 0}
	bin2 := []byte{0xc3, 0x28, 0, 0, 0xff}
	kvOK(bin1, "OK\n", "put", "blob", "-")
	kvOK(nil, string(bin1), "get", "blob")
	kvOK(bin1, "OK\n", "cas", "blob", "-", "text")
	kvOK(nil, "text", "get", "blob")
	kvOK(bin2, "OK\n", "cas", "blob", "text", "-")
	kvOK(nil, string(bin2), "get", "blob")
	kvOK(nil, "OK\n", "put", "empty", "")
	kvOK(nil, "", "get", "empty")

	// -json: values that are not UTF-8 come base64-encoded.
	if m := kvJSON(exitOK, "put", "j", "ünïcode"); m["op"] != "put" || m["key"] != "j" || m["index"].(float64) <= 0 {
		t.Fatalf("put -json = %v", m)
	}
	if m := kvJSON(exitOK, "get", "j"); m["found"] != true || m["value"] != "ünïcode" {
		t.Fatalf("get -json = %v", m)
	}
	m := kvJSON(exitOK, "get", "blob")
	if got, err := base64.StdEncoding.DecodeString(fmt.Sprint(m["value_base64"])); err != nil || !bytes.Equal(got, bin2) || m["value"] != nil {
		t.Fatalf("get -json of a binary value = %v (decoded %q, %v)", m, got, err)
	}
	if m := kvJSON(kvExitMiss, "get", "missing"); m["found"] != false || m["value"] != nil {
		t.Fatalf("get -json of a missing key = %v", m)
	}
	if m := kvJSON(kvExitMiss, "cas", "c", "zero", "x"); m["swapped"] != false || m["current"] != "two" {
		t.Fatalf("failed cas -json = %v", m)
	}
	if m := kvJSON(exitOK, "cas", "c", "two", "three"); m["swapped"] != true {
		t.Fatalf("cas -json = %v", m)
	}
	if m := kvJSON(exitOK, "del", "c"); m["op"] != "del" || m["key"] != "c" {
		t.Fatalf("del -json = %v", m)
	}

	// Nothing listens: the request was never sent (exit 4, not 3).
	dead := testutil.ReserveAddr(t)
	r := runKVProc(t, bin, nil, "-cluster", dead, "-cluster-id", fmt.Sprint(procClusterID), "-timeout", "2s", "put", "k", "v")
	if r.code != kvExitFailed || !strings.Contains(r.stderr, "not applied") {
		t.Fatalf("put to a dead address: %v; want exit %d", r, kvExitFailed)
	}
	// A wrong cluster ID is refused in the handshake: also exit 4.
	r = runKVProc(t, bin, nil, "-cluster", addrs[0], "-cluster-id", "999", "-timeout", "2s", "get", "k")
	if r.code != kvExitFailed {
		t.Fatalf("get with the wrong cluster ID: %v; want exit %d", r, kvExitFailed)
	}

	// A usage error from the real binary exits 2.
	if r := runKVProc(t, bin, nil, append(common, "put", "k")...); r.code != exitUsage || !strings.Contains(r.stderr, "put takes 2 argument(s)") {
		t.Fatalf("put with one argument: %v", r)
	}
	stopProcCluster(t, procs)
}

// TestKVUsageErrors: each malformed command exits 2 with a message naming
// the problem, before anything is dialled (nothing listens on the address).
func TestKVUsageErrors(t *testing.T) {
	base := []string{"-cluster", "127.0.0.1:1", "-cluster-id", "7"}
	for _, tc := range []struct {
		args  []string
		stdin []byte
		want  string
	}{
		{base, nil, "missing command"},
		{append(base, "frob", "k"), nil, `unknown command "frob"`},
		{append(base, "put", "k"), nil, "put takes 2 argument(s), got 1: put KEY VALUE"},
		{append(base, "get"), nil, "get takes 1 argument(s), got 0"},
		{append(base, "del", "a", "b"), nil, "del takes 1 argument(s), got 2"},
		{append(base, "cas", "k", "new"), nil, "cas takes 3 argument(s), got 2: cas KEY OLD NEW"},
		{append(base, "cas", "-absent", "k", "old", "new"), nil, "cas takes 2 argument(s), got 3: cas -absent KEY NEW"},
		{append(base, "put", "-stale", "k", "v"), nil, "-stale applies to get only"},
		{append(base, "-absent", "get", "k"), nil, "-absent applies to cas only"},
		{append(base, "get", ""), nil, "the key is empty"},
		{append(base, "get", strings.Repeat("k", kv.MaxKeyBytes+1)), nil, "key of 65537 bytes is over the 65536-byte limit"},
		{append(base, "cas", "k", "-", "-"), []byte("x"), "only one argument can be read from stdin"},
		{append(base, "put", "k", "-"), make([]byte, kv.MaxValueBytes+1), "VALUE on stdin is over the 4194304-byte limit"},
		{[]string{"-cluster-id", "7", "-cluster", "127.0.0.1:1,:7101", "get", "k"}, nil, "-cluster:"},
		{[]string{"-cluster", "127.0.0.1:1", "get", "k"}, nil, "-cluster-id is required"},
		{append(base, "-timeout", "0s", "get", "k"), nil, "-timeout 0s: must be in (0s, 1h0m0s]"},
		{append(base, "-tls-cert", "x.crt", "get", "k"), nil, "-tls-cert, -tls-key and -tls-ca go together"},
		{append(base, "-bogus", "get", "k"), nil, "flag provided but not defined: -bogus"},
	} {
		r := runKVInProc(tc.stdin, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
			t.Errorf("kv %q: %v; want exit %d and stderr mentioning %q", tc.args, r, exitUsage, tc.want)
		}
	}
	if r := runKVInProc(nil, "-help"); r.code != exitOK || !strings.Contains(r.stderr, "Exit status: 0 done") {
		t.Errorf("kv -help: %v", r)
	}
}

// silentNode accepts client connections on 127.0.0.1, answers the
// handshake as a node of clusterID, then reads every request and answers
// none: a node that dies (or stalls) after a write reached it.
func silentNode(t *testing.T, clusterID uint64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := wire.NewReader(c, wire.DefaultOptions()).Next(nil)
				if err != nil || f.Type != wire.MsgHandshake {
					c.Close()
					return
				}
				hs := wire.Handshake{ClusterID: clusterID, NodeID: 1, Version: wire.ProtocolVersion, Kind: wire.ConnClient}
				if _, err := c.Write(wire.AppendHandshake(nil, &hs)); err != nil {
					return
				}
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestKVUnknownOutcome: a write that reached a node and got no answer
// exits 3 and says the outcome is unknown; a read in the same situation
// is simply a failure (exit 4): it changed nothing.
func TestKVUnknownOutcome(t *testing.T) {
	addr := silentNode(t, 7)
	for _, args := range [][]string{{"put", "k", "v"}, {"del", "k"}, {"cas", "k", "a", "b"}} {
		r := runKVInProc(nil, append([]string{"-cluster", addr, "-cluster-id", "7", "-timeout", "300ms"}, args...)...)
		if r.code != kvExitUnknown || !strings.Contains(r.stderr, "OUTCOME UNKNOWN: the write may or may not have applied") {
			t.Errorf("kv %q against a silent node: %v; want exit %d", args, r, kvExitUnknown)
		}
	}
	r := runKVInProc(nil, "-cluster", addr, "-cluster-id", "7", "-timeout", "300ms", "get", "k")
	if r.code != kvExitFailed || strings.Contains(r.stderr, "UNKNOWN") {
		t.Errorf("get against a silent node: %v; want exit %d", r, kvExitFailed)
	}
}

// TestProcessKVGroups runs three raftnode processes with -groups 4 and
// writes and reads keys of every group with `raftnode kv`, whose client
// learns the shard map and routes each key to its group's leader.
func TestProcessKVGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	const G = 4
	bin := raftnodeBinary(t)
	procs := startProcCluster(t, bin, func(*proc) []string { return []string{"-groups", fmt.Sprint(G)} })
	waitLeader(t, procs, 0)
	var addrs []string
	for _, p := range procs {
		addrs = append(addrs, p.clientAddr)
	}
	common := []string{"-cluster", strings.Join(addrs, ","), "-cluster-id", fmt.Sprint(procClusterID), "-timeout", "20s"}
	seen := map[uint32]bool{}
	for i := 0; len(seen) < G || i < 8; i++ {
		k, v := fmt.Sprintf("gkey-%d", i), fmt.Sprintf("gval-%d", i)
		seen[wire.GroupOf([]byte(k), G)] = true
		if r := runKVProc(t, bin, nil, append(common, "put", k, v)...); r.code != exitOK {
			t.Fatalf("kv put %s: %v", k, r)
		}
		if r := runKVProc(t, bin, nil, append(common, "get", k)...); r.code != exitOK || strings.TrimSpace(r.stdout) != v {
			t.Fatalf("kv get %s: %v; want %q", k, r, v)
		}
	}
}
