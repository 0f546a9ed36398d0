package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testClusterID = 42

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.ClusterID == 0 {
		cfg.ClusterID = testClusterID
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestNewValidates(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no addrs":          {},
		"empty addr":        {Addrs: []string{""}},
		"negative inflight": {Addrs: []string{"x:1"}, MaxInflight: -1},
		"bad wire":          {Addrs: []string{"x:1"}, Wire: wire.Options{MaxFrameBytes: -1}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestRoundTripEveryOp(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	c := newTestClient(t, Config{Addrs: []string{s.addr}})
	ctx := context.Background()

	if _, found, err := c.Get(ctx, []byte("k")); err != nil || found {
		t.Fatalf("Get missing: found=%v err=%v", found, err)
	}
	idx, err := c.Put(ctx, []byte("k"), []byte("v1"))
	if err != nil || idx != 1 {
		t.Fatalf("Put: idx=%d err=%v", idx, err)
	}
	if v, found, err := c.Get(ctx, []byte("k")); err != nil || !found || string(v) != "v1" {
		t.Fatalf("Get: %q %v %v", v, found, err)
	}
	if v, found, err := c.GetStale(ctx, []byte("k")); err != nil || !found || string(v) != "v1" {
		t.Fatalf("GetStale: %q %v %v", v, found, err)
	}
	swapped, cur, err := c.CAS(ctx, []byte("k"), []byte("wrong"), []byte("v2"), false)
	if err != nil || swapped || string(cur) != "v1" {
		t.Fatalf("CAS mismatch: swapped=%v cur=%q err=%v", swapped, cur, err)
	}
	swapped, _, err = c.CAS(ctx, []byte("k"), []byte("v1"), []byte("v2"), false)
	if err != nil || !swapped {
		t.Fatalf("CAS match: swapped=%v err=%v", swapped, err)
	}
	swapped, _, err = c.CAS(ctx, []byte("new"), nil, []byte("n"), true)
	if err != nil || !swapped {
		t.Fatalf("CAS absent: swapped=%v err=%v", swapped, err)
	}
	swapped, cur, err = c.CAS(ctx, []byte("new"), nil, []byte("n2"), true)
	if err != nil || swapped || string(cur) != "n" {
		t.Fatalf("CAS absent on present key: swapped=%v cur=%q err=%v", swapped, cur, err)
	}
	if err := c.Delete(ctx, []byte("k")); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.value("k"); ok {
		t.Fatal("Delete did not reach the server")
	}
	if err := c.Delete(ctx, []byte("k")); err != nil {
		t.Fatalf("Delete of missing key: %v", err)
	}
	if err := c.Noop(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(ctx, &wire.ClientRequest{Op: wire.OpGet, Key: []byte("new")})
	if err != nil || resp.Status != wire.StatusOK || string(resp.Value) != "n" || resp.ID == 0 {
		t.Fatalf("Do: %+v %v", resp, err)
	}
	resp, err = c.Do(ctx, &wire.ClientRequest{Op: 99})
	if !errors.Is(err, ErrBadRequest) || resp == nil || resp.Status != wire.StatusBadRequest {
		t.Fatalf("Do bad op: %+v %v", resp, err)
	}
	if got := c.Leader(); got != s.addr {
		t.Fatalf("Leader() = %q, want %q", got, s.addr)
	}
}

func TestValueIsCallersToKeep(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	c := newTestClient(t, Config{Addrs: []string{s.addr}})
	ctx := context.Background()
	big := bytes.Repeat([]byte("a"), 100<<10) // larger than the reader's reusable buffer
	if _, err := c.Put(ctx, []byte("a"), []byte("first")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, []byte("b"), big); err != nil {
		t.Fatal(err)
	}
	va, _, err := c.Get(ctx, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, []byte("c"), []byte("XXXXXXXXXXXXXXXX")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, _, err := c.Get(ctx, []byte("c")); err != nil {
			t.Fatal(err)
		}
	}
	vb, _, err := c.Get(ctx, []byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	if string(va) != "first" || !bytes.Equal(vb, big) {
		t.Fatalf("returned values were overwritten: %q", va)
	}
}

func TestPipeliningOutOfOrder(t *testing.T) {
	const callers, rounds = 64, 20
	s := newFakeServer(t, testClusterID)
	s.setReorder(callers) // answer each group of 64 in reverse order
	c := newTestClient(t, Config{Addrs: []string{s.addr}})

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for r := 0; r < rounds; r++ {
				key := []byte(fmt.Sprintf("g%d", g))
				want := fmt.Sprintf("g%d-r%d", g, r)
				if r%2 == 0 {
					if _, err := c.Put(ctx, key, []byte(want)); err != nil {
						errs <- err
						return
					}
					continue
				}
				// Odd rounds read back the previous round's write.
				v, found, err := c.Get(ctx, key)
				prev := fmt.Sprintf("g%d-r%d", g, r-1)
				if err != nil || !found || string(v) != prev {
					errs <- fmt.Errorf("caller %d round %d: got %q found=%v err=%v, want %q", g, r, v, found, err, prev)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s.mu.Lock()
	maxGroup := s.mu.maxGroupSeen
	s.mu.Unlock()
	if maxGroup != callers {
		t.Fatalf("server saw at most %d requests in flight together, want %d", maxGroup, callers)
	}
	if n := s.received.Load(); n != callers*rounds {
		t.Fatalf("server received %d requests, want %d (no retries expected)", n, callers*rounds)
	}
}

func TestLeaderRedirectViaHint(t *testing.T) {
	leader := newFakeServer(t, testClusterID)
	follower := newFakeServer(t, testClusterID)
	follower.setNotLeader(true, leader.addr)
	c := newTestClient(t, Config{Addrs: []string{follower.addr}}) // the leader is not configured
	ctx := context.Background()
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, ok := leader.value("k"); !ok {
		t.Fatal("write did not reach the leader")
	}
	if got := c.Leader(); got != leader.addr {
		t.Fatalf("Leader() = %q, want %q", got, leader.addr)
	}
	// Later requests go straight to the leader.
	before := follower.received.Load()
	for i := 0; i < 10; i++ {
		if _, _, err := c.Get(ctx, []byte("k")); err != nil {
			t.Fatal(err)
		}
	}
	if n := follower.received.Load() - before; n != 0 {
		t.Fatalf("follower got %d requests after the leader was found", n)
	}
}

func TestLeaderDiscoveryWithoutHint(t *testing.T) {
	a := newFakeServer(t, testClusterID)
	b := newFakeServer(t, testClusterID)
	a.setNotLeader(true, "") // no hint: the client must try the next address
	c := newTestClient(t, Config{Addrs: []string{a.addr, b.addr}})
	if _, err := c.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.value("k"); !ok {
		t.Fatal("write did not reach b")
	}
}

func TestNoLeaderGivesUp(t *testing.T) {
	a := newFakeServer(t, testClusterID)
	a.setNotLeader(true, "")
	c := newTestClient(t, Config{Addrs: []string{a.addr}, MaxRetries: 3})
	_, err := c.Put(context.Background(), []byte("k"), []byte("v"))
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("got %v, want ErrNotLeader", err)
	}
	if n := a.received.Load(); n != 4 {
		t.Fatalf("server received %d attempts, want 1+MaxRetries = 4", n)
	}
}

func TestBusyIsRetried(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	s.busyNext.Store(3)
	c := newTestClient(t, Config{Addrs: []string{s.addr}})
	if _, err := c.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if n := s.received.Load(); n != 4 {
		t.Fatalf("received %d, want 3 busy + 1", n)
	}
	s.busyNext.Store(100)
	c2 := newTestClient(t, Config{Addrs: []string{s.addr}, MaxRetries: 2})
	if _, err := c2.Put(context.Background(), []byte("k"), []byte("v")); !errors.Is(err, ErrBusy) {
		t.Fatalf("got %v, want ErrBusy", err)
	}
}

// deadAddr returns a loopback address with nothing listening.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestUnreachableAddressSkippedForWrites(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	c := newTestClient(t, Config{Addrs: []string{deadAddr(t), s.addr}})
	// The first attempt never reaches a connection, so even a write is retried.
	if _, err := c.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	c2 := newTestClient(t, Config{Addrs: []string{deadAddr(t)}, MaxRetries: 2})
	if _, err := c2.Put(context.Background(), []byte("k"), []byte("v")); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("got %v, want ErrUnavailable (not unknown outcome)", err)
	}
}

func TestHandshakeMismatchRefused(t *testing.T) {
	s := newFakeServer(t, testClusterID+1)
	c := newTestClient(t, Config{Addrs: []string{s.addr}, MaxRetries: 1})
	_, err := c.Put(context.Background(), []byte("k"), []byte("v"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if s.received.Load() != 0 {
		t.Fatal("server accepted a request from another cluster")
	}
}

func TestConnectionLossReadRetriedWriteUnknown(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	c := newTestClient(t, Config{Addrs: []string{s.addr}})
	ctx := context.Background()
	if _, err := c.Put(ctx, []byte("k"), []byte("v0")); err != nil {
		t.Fatal(err)
	}

	s.dropNext.Store(1)
	v, found, err := c.Get(ctx, []byte("k"))
	if err != nil || !found || string(v) != "v0" {
		t.Fatalf("Get across a dropped connection: %q %v %v", v, found, err)
	}
	if n := s.received.Load(); n != 3 {
		t.Fatalf("received %d, want put + dropped get + retried get = 3", n)
	}

	s.dropNext.Store(1)
	_, err = c.Put(ctx, []byte("k"), []byte("v1"))
	if !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Put across a dropped connection: got %v, want ErrUnknownOutcome", err)
	}
	if n := s.received.Load(); n != 4 {
		t.Fatalf("received %d, want 4: an unknown-outcome write must not be retried", n)
	}
	// The server did apply it: "unknown" was the honest answer.
	if v, _ := s.value("k"); string(v) != "v1" {
		t.Fatalf("server has %q", v)
	}

	s.dropNext.Store(1)
	if err := c.Noop(ctx); err != nil {
		t.Fatalf("Noop is idempotent and should be retried: %v", err)
	}
	s.dropNext.Store(1)
	if _, _, err := c.CAS(ctx, []byte("k"), []byte("v1"), []byte("v2"), false); !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("CAS: got %v, want ErrUnknownOutcome", err)
	}
	s.dropNext.Store(1)
	if err := c.Delete(ctx, []byte("k")); !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Delete: got %v, want ErrUnknownOutcome", err)
	}
	// The client reconnects for later requests.
	if _, err := c.Put(ctx, []byte("k"), []byte("v3")); err != nil {
		t.Fatal(err)
	}
}

func TestAttemptTimeout(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	s.setHold(true) // never answers
	c := newTestClient(t, Config{Addrs: []string{s.addr}, RequestTimeout: 20 * time.Millisecond, MaxRetries: 2})
	ctx := context.Background()

	_, err := c.Put(ctx, []byte("k"), []byte("v"))
	if !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("Put: got %v, want ErrUnknownOutcome wrapping ErrTimeout", err)
	}
	if n := s.received.Load(); n != 1 {
		t.Fatalf("timed-out write was sent %d times, want 1", n)
	}
	_, _, err = c.Get(ctx, []byte("k"))
	if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Get: got %v, want ErrTimeout", err)
	}
	if n := s.received.Load(); n != 1+3 {
		t.Fatalf("received %d, want the write plus 1+MaxRetries reads", n)
	}
}

func TestContextCancel(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	s.setHold(true)
	c := newTestClient(t, Config{Addrs: []string{s.addr}})

	ctx, cancel := context.WithCancel(context.Background())
	putErr := make(chan error, 1)
	getErr := make(chan error, 1)
	go func() { _, err := c.Put(ctx, []byte("k"), []byte("v")); putErr <- err }()
	go func() { _, _, err := c.Get(ctx, []byte("k")); getErr <- err }()
	testutil.Wait(t, "both requests at the server", func() bool { return s.received.Load() == 2 })
	cancel()
	if err := <-putErr; !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Put: got %v, want context.Canceled and ErrUnknownOutcome", err)
	}
	if err := <-getErr; !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Get: got %v, want context.Canceled only", err)
	}
	// Late answers to abandoned calls are dropped, and the connection
	// stays usable.
	s.release()
	if _, err := c.Put(context.Background(), []byte("k2"), []byte("v")); err != nil {
		t.Fatal(err)
	}

	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	if _, err := c.Put(dctx, []byte("k"), []byte("v")); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("expired context: got %v", err)
	}
}

func TestMaxInflightBlocks(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	s.setHold(true)
	c := newTestClient(t, Config{Addrs: []string{s.addr}, MaxInflight: 2})

	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { _, err := c.Put(context.Background(), []byte("k"), []byte("v")); errs <- err }()
	}
	testutil.Wait(t, "two requests in flight", func() bool { return s.received.Load() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := c.Put(ctx, []byte("k"), []byte("v"))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("third request: got %v, want a plain deadline error (it must not have been sent)", err)
	}
	s.release()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := s.received.Load(); n != 2 {
		t.Fatalf("server received %d requests, want 2", n)
	}
}

func TestCloseFailsOutstandingCalls(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	s.setHold(true)
	c, err := New(Config{Addrs: []string{s.addr}, ClusterID: testClusterID})
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	putErrs := make(chan error, n)
	getErrs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() { _, err := c.Put(context.Background(), []byte("k"), []byte("v")); putErrs <- err }()
		go func() { _, _, err := c.Get(context.Background(), []byte("k")); getErrs <- err }()
	}
	testutil.Wait(t, "all requests at the server", func() bool { return s.received.Load() == 2*n })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := <-putErrs; !errors.Is(err, ErrClosed) || !errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("Put: got %v, want ErrClosed and ErrUnknownOutcome", err)
		}
		if err := <-getErrs; !errors.Is(err, ErrClosed) || errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("Get: got %v, want ErrClosed", err)
		}
	}
	if _, err := c.Put(context.Background(), []byte("k"), []byte("v")); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	testutil.Wait(t, "server to see the connection closed", func() bool { return s.openConns() == 0 })
}

func TestCloseDuringDial(t *testing.T) {
	// A listener that never accepts: the TCP connect succeeds (backlog) but
	// the handshake never completes until Close interrupts it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := New(Config{Addrs: []string{ln.Addr().String()}, ClusterID: testClusterID})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := c.Put(context.Background(), []byte("k"), []byte("v")); errc <- err }()
	testutil.Wait(t, "dial to start", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.mu.conns) == 1
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}
