package transport

import (
	"runtime"
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

// testDeadline bounds every wait in these tests. It is a safety net against
// hangs, not a performance assertion: conditions are normally met in
// milliseconds.
const testDeadline = 30 * time.Second

// testClusterID is the cluster all test transports belong to.
const testClusterID = 0xC1

// inbox records what a transport's Handler received, per sender.
type inbox struct {
	mu sync.Mutex
	// seqs holds, per sender, the Commit of every message received, in
	// order: tests put a sequence number there (every type that the tests
	// send encodes Commit).
	seqs map[uint64][]uint64
}

func newInbox() *inbox {
	return &inbox{seqs: map[uint64][]uint64{}}
}

func (b *inbox) handle(m *wire.Message) {
	b.mu.Lock()
	b.seqs[m.From] = append(b.seqs[m.From], m.Commit)
	b.mu.Unlock()
}

func (b *inbox) count(from uint64) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.seqs[from])
}

func (b *inbox) last(from uint64) (uint64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.seqs[from]
	if len(s) == 0 {
		return 0, false
	}
	return s[len(s)-1], true
}

func (b *inbox) copySeqs(from uint64) []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]uint64(nil), b.seqs[from]...)
}

// testConfig returns a config for node id with fast reconnects.
func testConfig(id uint64, h func(*wire.Message)) Config {
	return Config{
		ClusterID:   testClusterID,
		NodeID:      id,
		ListenAddr:  "127.0.0.1:0",
		Handler:     h,
		DialTimeout: 2 * time.Second,
		BackoffMin:  5 * time.Millisecond,
		BackoffMax:  50 * time.Millisecond,
	}
}

// newNode starts a transport for cfg and closes it at the end of the test.
func newNode(t testing.TB, cfg Config) *Transport {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("New(node %d): %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// connect makes from a peer of to and waits until the link is up.
func connect(t testing.TB, from, to *Transport) {
	t.Helper()
	from.AddPeer(to.cfg.NodeID, to.Addr().String())
	testutil.Wait(t, "link to come up", func() bool { return from.PeerStats(to.cfg.NodeID).Connected })
}

// sendRetry sends m, retrying while the queue is full or the link is down.
// Between retries it yields, and after many failures it pauses briefly so
// that a link being redialed does not burn a shared CPU. It reports failure
// with t.Errorf (safe from any goroutine) and returns false at testDeadline.
func sendRetry(t testing.TB, tr *Transport, m *wire.Message) bool {
	deadline := time.Now().Add(testDeadline)
	for i := 0; !tr.Send(m); i++ {
		if i < 100 {
			runtime.Gosched()
			continue
		}
		if time.Now().After(deadline) {
			t.Errorf("Send to %d kept failing for %v: %+v", m.To, testDeadline, tr.PeerStats(m.To))
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}

// checkContiguous fails unless seqs is first, first+1, ..., last.
func checkContiguous(t testing.TB, seqs []uint64, first, last uint64) {
	t.Helper()
	if want := int(last - first + 1); len(seqs) != want {
		t.Errorf("got %d messages, want %d (%d..%d)", len(seqs), want, first, last)
	}
	for i, s := range seqs {
		if s != first+uint64(i) {
			t.Fatalf("message %d has sequence %d, want %d (out of order or lost)", i, s, first+uint64(i))
		}
	}
}
