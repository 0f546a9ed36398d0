package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTarget is an in-memory Target for tests. It counts calls, tracks
// peak concurrency, can fail ops, and can stall every call that arrives
// during a window.
type fakeTarget struct {
	// delay is how long each successful op takes (0 = return at once).
	delay time.Duration
	// fail, if set, decides per call number (from 0) whether to fail and how.
	fail func(n uint64) error
	// stallAfter > 0: the call with this number opens a stall of stallFor;
	// every call arriving before the stall ends waits until it ends.
	stallAfter uint64
	stallFor   time.Duration
	// barrier > 0: the first barrier calls wait until all barrier are
	// inside Do at once, proving that many requests are outstanding.
	barrier int

	calls   atomic.Uint64
	inside  atomic.Int64
	peak    atomic.Int64
	clients sync.Map // client index -> struct{}

	mu        sync.Mutex
	stallEnd  time.Time
	arrived   int
	barrierCh chan struct{}
}

func (f *fakeTarget) Do(ctx context.Context, op *Op) error {
	n := f.calls.Add(1) - 1
	in := f.inside.Add(1)
	defer f.inside.Add(-1)
	for {
		p := f.peak.Load()
		if in <= p || f.peak.CompareAndSwap(p, in) {
			break
		}
	}
	f.clients.Store(op.Client, struct{}{})
	if len(op.Key) != keyBytes || (op.Write && op.Value == nil) {
		panic("fakeTarget: malformed op")
	}
	if f.barrier > 0 {
		f.mu.Lock()
		if f.barrierCh == nil {
			f.barrierCh = make(chan struct{})
		}
		ch := f.barrierCh
		wait := f.arrived < f.barrier
		if wait {
			f.arrived++
			if f.arrived == f.barrier {
				close(ch)
			}
		}
		f.mu.Unlock()
		if wait {
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if f.stallAfter > 0 {
		f.mu.Lock()
		if n == f.stallAfter {
			f.stallEnd = time.Now().Add(f.stallFor)
		}
		end := f.stallEnd
		f.mu.Unlock()
		if d := time.Until(end); d > 0 {
			if err := sleepCtx(ctx, d); err != nil {
				return err
			}
		}
	}
	if f.fail != nil {
		if err := f.fail(n); err != nil {
			return err
		}
	}
	if f.delay > 0 {
		return sleepCtx(ctx, f.delay)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fakeLag is a LagSource whose leader index grows with each call; follower
// i is behind[i] entries behind the leader's last index, and the commit
// index is commitBehind entries behind last.
type fakeLag struct {
	perCall      uint64
	commitBehind uint64
	behind       map[uint64]uint64
	last         atomic.Uint64
	calls        atomic.Int64
}

func (f *fakeLag) SampleLag(ctx context.Context) (LagSample, error) {
	f.calls.Add(1)
	last := f.last.Add(f.perCall) + 1000
	s := LagSample{LeaderLast: last, LeaderCommit: last - f.commitBehind, Followers: map[uint64]uint64{}}
	for id, b := range f.behind {
		s.Followers[id] = last - b
	}
	return s, nil
}

// shortCfg is a quick closed-loop config for tests.
func shortCfg() Config {
	return Config{
		Clients: 4, Inflight: 2, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond,
		WriteFraction: 1, PayloadBytes: 64, Keys: 1000, Seed: 7, System: "fake", Version: "test", Mode: "mem", Nodes: 3,
	}
}
