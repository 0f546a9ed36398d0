package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/raftpipe/raftpipe/internal/testutil"
	"sync/atomic"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// selfSignedTLS returns a server config with a certificate for 127.0.0.1
// from a throwaway CA and a client config that trusts that CA.
func selfSignedTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ca := testutil.NewCA(t, "raftpipe-test CA")
	server = &tls.Config{Certificates: []tls.Certificate{ca.KeyPair(t, "raftpipe-test")}}
	client = &tls.Config{RootCAs: ca.Pool()} // ServerName left empty: the client fills it from the address
	return server, client
}

func TestTLS(t *testing.T) {
	scfg, ccfg := selfSignedTLS(t)
	s := newFakeServerTLS(t, testClusterID, scfg)
	c := newTestClient(t, Config{Addrs: []string{s.addr}, TLS: ccfg})
	ctx := context.Background()
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, _, err := c.Get(ctx, []byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("Get over TLS: %q %v", v, err)
	}

	// A client that does not trust the certificate never gets through.
	untrusting := newTestClient(t, Config{Addrs: []string{s.addr}, TLS: &tls.Config{}, MaxRetries: 1})
	if _, err := untrusting.Put(ctx, []byte("k"), []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("untrusted certificate: got %v, want ErrUnavailable", err)
	}
	if v, _ := s.value("k"); string(v) != "v" {
		t.Fatalf("value changed to %q", v)
	}
}

func TestCompressionNegotiated(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	opts := wire.DefaultOptions()
	opts.Compression = wire.CompressionS2
	c := newTestClient(t, Config{Addrs: []string{s.addr}, Wire: opts})
	big := bytes.Repeat([]byte("compressible "), 2000) // above the threshold
	if _, err := c.Put(context.Background(), []byte("k"), big); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.value("k"); !bytes.Equal(v, big) {
		t.Fatal("server got a different value")
	}
	c.mu.Lock()
	cn := c.mu.conns[s.addr]
	c.mu.Unlock()
	if cn == nil || cn.opts.Compression != wire.CompressionS2 {
		t.Fatalf("negotiated compression is not S2")
	}
}

func TestFrameTooLargeNotSent(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	opts := wire.DefaultOptions()
	opts.MaxFrameBytes = 1024
	c := newTestClient(t, Config{Addrs: []string{s.addr}, Wire: opts})
	_, err := c.Put(context.Background(), []byte("k"), make([]byte, 2048))
	if !errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("got %v, want wire.ErrFrameTooLarge", err)
	}
	if n := s.received.Load(); n != 0 {
		t.Fatalf("server received %d requests", n)
	}
	// The connection is still good for requests that fit.
	if _, err := c.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
}

func TestLeaderMovesMidStream(t *testing.T) {
	a := newFakeServer(t, testClusterID)
	b := newFakeServer(t, testClusterID)
	c := newTestClient(t, Config{Addrs: []string{a.addr, b.addr}})
	ctx := context.Background()
	if _, err := c.Put(ctx, []byte("k"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if c.Leader() != a.addr {
		t.Fatalf("Leader() = %q, want a", c.Leader())
	}
	a.setNotLeader(true, b.addr)
	if _, err := c.Put(ctx, []byte("k"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if v, _ := b.value("k"); string(v) != "2" {
		t.Fatalf("b has %q", v)
	}
	if c.Leader() != b.addr {
		t.Fatalf("Leader() = %q, want b", c.Leader())
	}
	// A stale read is served by whichever node is the target and does not
	// change who is believed to be leader.
	if _, _, err := c.GetStale(ctx, []byte("k")); err != nil {
		t.Fatal(err)
	}
	if c.Leader() != b.addr {
		t.Fatalf("Leader() after stale read = %q, want b", c.Leader())
	}
}

// TestStressConnectionDrops runs concurrent callers while the server keeps
// dropping connections mid-request. Reads must always succeed (retried);
// writes either succeed or report ErrUnknownOutcome, never another error;
// and a read after a successful write by the same caller sees that write.
func TestStressConnectionDrops(t *testing.T) {
	const callers, ops = 16, 150
	s := newFakeServer(t, testClusterID)
	s.dropEvery.Store(37)
	c := newTestClient(t, Config{Addrs: []string{s.addr}, MaxRetries: 20})

	errc := make(chan error, callers)
	var unknown atomic.Int64
	for g := 0; g < callers; g++ {
		go func() {
			ctx := context.Background()
			key := []byte(fmt.Sprintf("key-%d", g))
			var last []byte // value of the last write known to have applied
			for i := 0; i < ops; i++ {
				switch i % 3 {
				case 0, 1:
					val := []byte(fmt.Sprintf("%d-%d", g, i))
					var err error
					swapped := true
					if i%3 == 0 {
						_, err = c.Put(ctx, key, val)
					} else {
						// last is nil after an unknown outcome, so this CAS
						// may fail; only a swap makes val known.
						swapped, _, err = c.CAS(ctx, key, last, val, false)
					}
					switch {
					case err == nil:
						last = nil
						if swapped {
							last = val
						}
					case errors.Is(err, ErrUnknownOutcome):
						unknown.Add(1)
						last = nil
					default:
						errc <- fmt.Errorf("caller %d op %d: write error %v", g, i, err)
						return
					}
				case 2:
					v, found, err := c.Get(ctx, key)
					if err != nil {
						errc <- fmt.Errorf("caller %d op %d: read error %v", g, i, err)
						return
					}
					if last != nil && (!found || !bytes.Equal(v, last)) {
						errc <- fmt.Errorf("caller %d op %d: read %q after acknowledged write %q", g, i, v, last)
						return
					}
				}
			}
			errc <- nil
		}()
	}
	for g := 0; g < callers; g++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if unknown.Load() == 0 {
		t.Fatal("no write saw a dropped connection; the test exercised nothing")
	}
	t.Logf("%d requests, %d writes with unknown outcome", s.received.Load(), unknown.Load())
}

// TestHintPingPongGivesUp: two nodes each naming the other as leader (as
// during an election) must not make the client spin; it backs off and
// gives up after 1+MaxRetries attempts in total.
func TestHintPingPongGivesUp(t *testing.T) {
	a := newFakeServer(t, testClusterID)
	b := newFakeServer(t, testClusterID)
	a.setNotLeader(true, b.addr)
	b.setNotLeader(true, a.addr)
	c := newTestClient(t, Config{Addrs: []string{a.addr}, MaxRetries: 5})
	if _, err := c.Put(context.Background(), []byte("k"), []byte("v")); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("got %v, want ErrNotLeader", err)
	}
	if n := a.received.Load() + b.received.Load(); n != 6 {
		t.Fatalf("%d attempts, want 6", n)
	}
	if c.Leader() != "" {
		t.Fatalf("Leader() = %q with no leader", c.Leader())
	}
	// Once b wins the election the same client finds it.
	b.setNotLeader(false, "")
	if _, err := c.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if c.Leader() != b.addr {
		t.Fatalf("Leader() = %q, want b", c.Leader())
	}
}
