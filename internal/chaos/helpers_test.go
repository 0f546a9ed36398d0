package chaos

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// proxy, connection and flapper must be stopped by Close or Heal.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitDeadline bounds every wait-for-condition in these tests. It is
// generous because the machine is shared; a correct run never comes near.
const waitDeadline = 10 * time.Second

// silenceWindow is how long a test reads to confirm that bytes the proxy
// has already discarded (or holds) do not arrive. It is not a wait for an
// event: the event it would catch is known to be impossible by then.
const silenceWindow = 50 * time.Millisecond

// echoServer is a loopback TCP server that echoes every byte and counts
// what it received, standing in for a Raft node.
type echoServer struct {
	ln       net.Listener
	received atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

// newEchoServer starts an echo server; t.Cleanup closes it.
func newEchoServer(t testing.TB) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				buf := make([]byte, 16<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						s.received.Add(int64(n))
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

// addr is the server's real address (the proxies' target).
func (s *echoServer) addr() string { return s.ln.Addr().String() }

// close stops the server and waits for its goroutines.
func (s *echoServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// dial connects to addr; t.Cleanup closes the connection.
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitDeadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes msg and reads the echo, failing on a mismatch.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(waitDeadline))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// expectSilence reads for silenceWindow and fails if anything arrives.
func expectSilence(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(silenceWindow))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if n > 0 {
		t.Fatalf("got %q through a cut link", buf[:n])
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a cut link: %v, want a timeout (connection must stay open)", err)
	}
}

// expectClosed reads until the connection reports EOF or a reset, failing
// if it stays open past waitDeadline.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitDeadline))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection still open after %v", waitDeadline)
		}
		return
	}
}

// newTestProxy starts a proxy to target; t.Cleanup closes it.
func newTestProxy(t testing.TB, cfg ProxyConfig) *Proxy {
	t.Helper()
	p, err := NewProxyConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}
