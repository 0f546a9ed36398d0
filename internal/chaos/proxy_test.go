package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftpipe/raftpipe/internal/testutil"
)

// pump writes data to c in random-sized pieces and reads the echo back
// concurrently, failing unless every byte comes back in order.
func pump(t testing.TB, c net.Conn, data []byte, seed uint64) {
	t.Helper()
	werr := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, 0))
		rest := data
		for len(rest) > 0 {
			n := min(len(rest), 1+rng.IntN(64<<10))
			if _, err := c.Write(rest[:n]); err != nil {
				werr <- err
				return
			}
			rest = rest[n:]
		}
		werr <- nil
	}()
	_ = c.SetReadDeadline(time.Now().Add(waitDeadline))
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, data) {
		i := 0
		for i < len(got) && got[i] == data[i] {
			i++
		}
		t.Fatalf("echo differs from what was sent, first at byte %d of %d", i, len(data))
	}
}

// randomBytes returns n seeded pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestProxyForwardsFaithfully(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ProxyConfig
	}{
		{"defaults", ProxyConfig{}},
		// A tiny buffer and odd chunk size exercise backpressure and
		// chunk boundaries that cut through everything.
		{"tiny-buffer", ProxyConfig{MaxBufferedBytes: 4096, ReadChunkBytes: 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newEchoServer(t)
			tc.cfg.Target = srv.addr()
			p := newTestProxy(t, tc.cfg)
			c := dial(t, p.Addr())
			data := randomBytes(2<<20, 7)
			pump(t, c, data, 7)
			// The proxy counts a chunk after its Write returns, so the
			// echo can reach the client a moment before the last chunk is
			// counted (seen: Backward 2075090 of 2097152, HeldBytes 22062):
			// wait for the counters to settle.
			var st Stats
			testutil.Poll(5*time.Second, func() bool {
				st = p.Stats()
				return st.HeldBytes == 0 && st.Backward.ForwardedBytes == int64(len(data))
			})
			if st.Forward.ForwardedBytes != int64(len(data)) || st.Backward.ForwardedBytes != int64(len(data)) {
				t.Fatalf("stats %+v, want %d bytes each way", st, len(data))
			}
			if st.Forward.DroppedBytes != 0 || st.Backward.DroppedBytes != 0 {
				t.Fatalf("dropped bytes on a healthy link: %+v", st)
			}
		})
	}
}

func TestProxyHalfCloseIsForwarded(t *testing.T) {
	srv := newEchoServer(t)
	p := newTestProxy(t, ProxyConfig{Target: srv.addr()})
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(waitDeadline))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if string(got) != "last words" {
		t.Fatalf("got %q", got)
	}
	testutil.Wait(t, "the proxy to drop the finished connection", func() bool { return p.Stats().Open == 0 })
}

func TestProxyDropBothWaysAndHeal(t *testing.T) {
	srv := newEchoServer(t)
	p := newTestProxy(t, ProxyConfig{Target: srv.addr()})
	c := dial(t, p.Addr())
	roundTrip(t, c, "before")

	p.Drop(Both)
	msg := "into the void"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	testutil.Wait(t, "the proxy to discard the message", func() bool {
		return p.Stats().Forward.DroppedBytes == int64(len(msg))
	})
	expectSilence(t, c)
	if got := srv.received.Load(); got != int64(len("before")) {
		t.Fatalf("server received %d bytes, want only the %d sent before the drop", got, len("before"))
	}

	// The stream lost bytes, so healing must not resume it with a hole:
	// the old connection is closed and a new one works.
	p.Heal()
	expectClosed(t, c)
	testutil.Wait(t, "exactly one connection closed for lost bytes", func() bool { return p.Stats().TaintClosed == 1 })
	c2 := dial(t, p.Addr())
	roundTrip(t, c2, "after heal")
}

func TestProxyDropOneWay(t *testing.T) {
	srv := newEchoServer(t)
	p := newTestProxy(t, ProxyConfig{Target: srv.addr()})
	c := dial(t, p.Addr())
	roundTrip(t, c, "hi")

	p.Drop(Backward)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	// Forward still flows: the server gets the bytes; its echo is lost.
	testutil.Wait(t, "the server to receive through the open direction", func() bool {
		return srv.received.Load() == int64(len("hi")+len("ping"))
	})
	testutil.Wait(t, "the echo to be discarded", func() bool {
		return p.Stats().Backward.DroppedBytes == int64(len("ping"))
	})
	expectSilence(t, c)
	p.Pass(Backward)
	expectClosed(t, c)
}

func TestProxyStallHoldsThenDelivers(t *testing.T) {
	srv := newEchoServer(t)
	const limit = 4096
	p := newTestProxy(t, ProxyConfig{Target: srv.addr(), MaxBufferedBytes: limit})
	c := dial(t, p.Addr())
	roundTrip(t, c, "warm")

	p.Stall(Forward)
	data := randomBytes(1<<20, 3)
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		done <- err
	}()
	// The proxy fills its bounded buffer and then stops reading.
	testutil.Wait(t, "the stalled direction to fill its buffer", func() bool {
		return p.Stats().HeldBytes == limit
	})
	if got := srv.received.Load(); got != int64(len("warm")) {
		t.Fatalf("server received %d bytes through a stall", got)
	}
	if held := p.Stats().HeldBytes; held > limit {
		t.Fatalf("held %d bytes, limit %d", held, limit)
	}
	p.Pass(Forward)
	_ = c.SetReadDeadline(time.Now().Add(waitDeadline))
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read after stall: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("bytes held by a stall arrived altered")
	}
}

func TestProxyDelayAddsLatencyAndKeepsOrder(t *testing.T) {
	srv := newEchoServer(t)
	p := newTestProxy(t, ProxyConfig{Target: srv.addr(), Seed: 42})
	c := dial(t, p.Addr())
	roundTrip(t, c, "warm")

	const delay = 80 * time.Millisecond
	p.Delay(Forward, delay, 0)
	start := time.Now()
	roundTrip(t, c, "slowly")
	if rtt := time.Since(start); rtt < delay {
		t.Fatalf("round trip %v, want >= configured delay %v", rtt, delay)
	}

	// With jitter larger than the gap between writes, order must still hold.
	p.Delay(Both, time.Millisecond, 20*time.Millisecond)
	var want bytes.Buffer
	for i := range 40 {
		msg := fmt.Sprintf("<%03d>", i)
		want.WriteString(msg)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, want.Len())
	_ = c.SetReadDeadline(time.Now().Add(waitDeadline))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("jittered stream reordered:\n got %s\nwant %s", got, want.Bytes())
	}
}

func TestProxySlowLimitsBandwidth(t *testing.T) {
	srv := newEchoServer(t)
	p := newTestProxy(t, ProxyConfig{Target: srv.addr()})
	c := dial(t, p.Addr())
	roundTrip(t, c, "warm")

	const bw = 64 << 10 // bytes per second
	const size = 32 << 10
	p.Slow(Forward, bw)
	start := time.Now()
	pump(t, c, randomBytes(size, 5), 5)
	elapsed := time.Since(start)
	// The first pacing slice goes out at once; the rest waits its turn.
	minimum := time.Duration(size-bw/paceSlicesPerSec) * time.Second / bw
	if elapsed < minimum {
		t.Fatalf("%d bytes at %d B/s took %v, want >= %v", size, bw, elapsed, minimum)
	}
}

func TestProxySeverAndHeal(t *testing.T) {
	srv := newEchoServer(t)
	p := newTestProxy(t, ProxyConfig{Target: srv.addr()})
	c := dial(t, p.Addr())
	roundTrip(t, c, "up")

	p.Sever()
	expectClosed(t, c)
	testutil.Wait(t, "exactly one severed connection", func() bool { return p.Stats().Severed == 1 })
	// New connections are accepted by the kernel and closed at once.
	c2 := dial(t, p.Addr())
	expectClosed(t, c2)
	testutil.Wait(t, "the refusal to be counted", func() bool { return p.Stats().Refused >= 1 })

	p.Heal()
	c3 := dial(t, p.Addr())
	roundTrip(t, c3, "back")
}

func TestProxyTargetDownClosesClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	p := newTestProxy(t, ProxyConfig{Target: target})
	c := dial(t, p.Addr())
	expectClosed(t, c)
	testutil.Wait(t, "the failed dial to be counted", func() bool { return p.Stats().Refused == 1 })
}

func TestProxyRefusesNonLoopbackTargets(t *testing.T) {
	for _, target := range []string{"10.0.0.1:80", "localhost:80", "[::1]:80", "0.0.0.0:80", "127.0.0.1"} {
		p, err := NewProxy(target)
		if !errors.Is(err, ErrNotLoopback) {
			if p != nil {
				_ = p.Close()
			}
			t.Errorf("NewProxy(%q) error = %v, want ErrNotLoopback", target, err)
		}
	}
}

func TestProxyCloseStopsEverything(t *testing.T) {
	srv := newEchoServer(t)
	before := goleak.IgnoreCurrent()
	p, err := NewProxy(srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	// Leave goroutines in every kind of wait: stalled, delayed, paced,
	// blocked on a full buffer, idle.
	stalled := dial(t, p.Addr())
	delayed := dial(t, p.Addr())
	idle := dial(t, p.Addr())
	testutil.Wait(t, "three connections", func() bool { return p.Stats().Open == 3 })
	p.Set(Backward, Faults{Delay: time.Hour, BandwidthBytesPerSec: 1})
	msg := []byte("echo me in an hour")
	if _, err := delayed.Write(msg); err != nil {
		t.Fatal(err)
	}
	testutil.Wait(t, "the echo to be held by the delay", func() bool { return p.Stats().HeldBytes == len(msg) })
	p.Stall(Forward)
	go func() { _, _ = stalled.Write(randomBytes(4<<20, 1)) }()
	testutil.Wait(t, "the stall buffer to fill", func() bool {
		return p.Stats().HeldBytes == len(msg)+DefaultMaxBufferedBytes
	})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	expectClosed(t, idle)
	expectClosed(t, delayed)
	goleak.VerifyNone(t, before)
}

func TestProxyFaultChangeAppliesToQueuedBytes(t *testing.T) {
	srv := newEchoServer(t)
	p := newTestProxy(t, ProxyConfig{Target: srv.addr()})
	c := dial(t, p.Addr())
	roundTrip(t, c, "warm")

	// Bytes queued under an hour's delay are released by Pass at once.
	p.Delay(Forward, time.Hour, 0)
	msg := "released early"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	testutil.Wait(t, "the bytes to be held", func() bool { return p.Stats().HeldBytes == len(msg) })
	p.Pass(Forward)
	roundTripRead(t, c, msg)

	// Bytes queued under a stall are lost if the link then drops.
	p.Stall(Forward)
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	testutil.Wait(t, "the bytes to be held", func() bool { return p.Stats().HeldBytes == len(msg) })
	p.Drop(Forward)
	testutil.Wait(t, "the held bytes to be dropped", func() bool {
		return p.Stats().Forward.DroppedBytes == int64(len(msg))
	})
	expectSilence(t, c)
}
