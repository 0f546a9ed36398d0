package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunSignalShutdown runs a one-node cluster in-process (so the race
// detector sees the run/shutdown code) and checks that a signal stops it
// with exit 0 after it has led.
func TestRunSignalShutdown(t *testing.T) {
	peer, cl, admin := testutil.ReserveAddr(t), testutil.ReserveAddr(t), testutil.ReserveAddr(t)
	sigc := make(chan os.Signal, 2)
	var logs syncBuffer
	args := []string{"run", "-id", "1", "-cluster-id", "3", "-data-dir", t.TempDir(),
		"-peer-addr", peer, "-client-addr", cl, "-admin-addr", admin,
		"-members", fmt.Sprintf("1=%s/%s", peer, cl), "-bootstrap", "-tick", "10ms", "-log-format", "json"}
	codec := make(chan int, 1)
	go func() { codec <- realMain(args, &logs, &logs, func() <-chan os.Signal { return sigc }) }()
	p := &proc{id: 1, admin: admin}
	testutil.WaitFor(t, procLeaderWait, "the single node to lead", func() bool {
		st, err := p.status()
		return err == nil && st.Role == "leader"
	})
	sigc <- syscall.SIGTERM
	select {
	case code := <-codec:
		if code != exitOK {
			t.Fatalf("exit %d after SIGTERM; logs:\n%s", code, logs.String())
		}
	case <-time.After(procExitWait):
		t.Fatalf("no exit within %v after SIGTERM; logs:\n%s", procExitWait, logs.String())
	}
	if out := logs.String(); !strings.Contains(out, `"msg":"shutdown complete"`) {
		t.Fatalf("no clean-shutdown line in JSON logs:\n%s", out)
	}
}

// TestRunStartFailure checks that a node that cannot start exits 1 (not 2:
// the flags were valid) and logs why.
func TestRunStartFailure(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	peer := testutil.ReserveAddr(t)
	var logs syncBuffer
	code := realMain([]string{"-id", "1", "-cluster-id", "3", "-data-dir", file, "-peer-addr", peer,
		"-client-addr", testutil.ReserveAddr(t), "-admin-addr", "", "-members", "1=" + peer, "-bootstrap"},
		&logs, &logs, func() <-chan os.Signal { return make(chan os.Signal) })
	if code != exitFailure || !strings.Contains(logs.String(), "node failed to start") {
		t.Fatalf("exit %d, logs:\n%s", code, logs.String())
	}
}
