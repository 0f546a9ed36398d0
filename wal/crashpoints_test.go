package wal

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/raftpipe/raftpipe/internal/crashfs"
	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/wire"
)

// clone returns a deep copy of m.
func (m *model) clone() *model {
	c := *m
	c.ents = slices.Clone(m.ents)
	c.base = bytes.Clone(m.base)
	return &c
}

// pointData is the data of entry (i, t) in TestCrashPoints: 50-700 bytes,
// so that batches straddle 4 KiB blocks and 512-byte sectors.
func pointData(i, t uint64) []byte {
	n := 50 + int((i*131+t*17)%650)
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(i) ^ byte(t<<4) ^ byte(k) | 1
	}
	return b
}

// TestCrashPoints runs a workload that appends (with conflicts and hard
// states that commit up to the batch's last entry), rolls segments,
// truncates, compacts and resets, on internal/crashfs, and at every sync
// and rename point takes two crash images: strict (only synced data) and
// torn (a random half of the unsynced 4 KiB blocks and directory entries
// too). Every image must Open; what it recovers must be the state after
// every operation whose completion fired before the point, possibly with
// a prefix of the one in flight (its records in order); and Commit <=
// LastIndex. The torn images prove that out-of-order persistence of an
// unsynced write reads as a torn tail, not as corruption.
//
// Two scenarios: every roll takes a prepared (zero-filled, renamed) segment
// (the test waits for one between operations), or preparation fails and
// every roll falls back to a fallocated segment.
func TestCrashPoints(t *testing.T) {
	for _, prepared := range []bool{true, false} {
		name := "fallocated"
		if prepared {
			name = "prepared"
		}
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s/seed=%d", name, seed), func(t *testing.T) {
				n := runCrashPoints(t, prepared, seed)
				t.Logf("%s seed %d: %d crash points, each checked strict and torn", name, seed, n)
			})
		}
	}
}

func runCrashPoints(t *testing.T, prepared bool, seed uint64) int {
	rng := rand.New(rand.NewPCG(seed, 0xc4a54))
	cfs := crashfs.New()
	in := &injector{}
	if !prepared {
		in.set(failPrep)
	}
	o := Options{SegmentBytes: 16 << 10, CacheBytes: 4 << 10, FS: errorfs.Wrap(cfs, in), Logger: quietLogger}

	// allowed are the states a crash now may recover: the state after every
	// completed operation, then the prefix states of the one in flight.
	var mu sync.Mutex
	allowed := []*model{{}}
	setAllowed := func(ms ...*model) { mu.Lock(); allowed = ms; mu.Unlock() }
	var failures []string
	points := 0
	cfs.OnPoint(func(p crashfs.Point) {
		mu.Lock()
		states := allowed
		points++
		mu.Unlock()
		for _, torn := range []bool{false, true} {
			if msg := checkCrashImage(cfs.Image(torn, uint64(p.N)), o.SegmentBytes, states); msg != "" {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("crash at %v (torn %v): %s", p, torn, msg))
				mu.Unlock()
			}
		}
	})

	l := mustOpen(t, testDir, o)
	defer func() { l.Close() }()
	waitPrepared := func() {
		if prepared {
			testutil.WaitFor(t, walWait, "a prepared segment", l.prep.isReady)
		}
	}
	waitPrepared()
	m := &model{}
	term := uint64(1)
	for step := 0; step < 150; step++ {
		switch p := rng.IntN(100); {
		case p < 75: // a batch, sometimes conflicting above the commit
			start := m.last() + 1
			if rng.IntN(6) == 0 && m.last() > m.hs.Commit && m.last() >= m.first() {
				lo := max(m.hs.Commit+1, m.first())
				start = lo + rng.Uint64N(m.last()-lo+1)
				term++
			}
			es := make([]wire.Entry, 1+rng.IntN(5))
			for i := range es {
				idx := start + uint64(i)
				es[i] = wire.Entry{Index: idx, Term: term, Data: pointData(idx, term)}
			}
			hs := wire.HardState{Term: term, Vote: 1, Commit: es[len(es)-1].Index}
			states := []*model{m}
			cur := m.clone()
			if start <= cur.last() {
				cur.ents = cur.ents[:start-cur.first()]
				states = append(states, cur.clone())
			}
			for _, e := range es {
				cur.append([]wire.Entry{e})
				states = append(states, cur.clone())
			}
			cur.hs = hs
			final := cur.clone()
			states = append(states, final)
			setAllowed(states...)
			done := make(chan error, 1)
			l.AppendAsync(es, &hs, func(err error) {
				if err == nil {
					setAllowed(final) // fired: from now on the batch must be there
				}
				done <- err
			})
			if err := <-done; err != nil {
				t.Fatalf("step %d: append: %v", step, err)
			}
			m = final
		case p < 82: // truncate above the commit
			if m.last() <= max(m.hs.Commit, m.markerIndex) {
				continue
			}
			lo := max(m.hs.Commit+1, m.first())
			from := lo + rng.Uint64N(m.last()-lo+1)
			next := m.clone()
			next.ents = next.ents[:from-next.first()]
			setAllowed(m, next)
			if err := l.TruncateSuffix(from); err != nil {
				t.Fatalf("step %d: truncate from %d: %v", step, from, err)
			}
			m = next
		case p < 96: // compact up to the commit, with a base
			hi := min(m.hs.Commit, m.last())
			if hi <= m.markerIndex {
				continue
			}
			upTo := m.markerIndex + 1 + rng.Uint64N(hi-m.markerIndex)
			base := []byte(fmt.Sprintf("members at %d", upTo))
			next := m.clone()
			next.markerTerm = next.ents[upTo-next.first()].Term
			next.ents = next.ents[upTo-next.markerIndex:]
			next.markerIndex, next.base = upTo, base
			setAllowed(m, next)
			if err := l.CompactPrefix(upTo, base); err != nil {
				t.Fatalf("step %d: compact to %d: %v", step, upTo, err)
			}
			m = next
		default: // a snapshot beyond the log
			term++
			idx := m.last() + uint64(rng.IntN(10))
			base := []byte(fmt.Sprintf("snapshot members at %d", idx))
			next := m.clone()
			next.markerIndex, next.markerTerm, next.ents, next.base = idx, term, nil, base
			setAllowed(m, next)
			if err := l.Reset(idx, term, base); err != nil {
				t.Fatalf("step %d: reset to %d: %v", step, idx, err)
			}
			m = next
		}
		setAllowed(m)
		waitPrepared()
	}
	st := l.Stats()
	if prepared && (st.SegmentsFallocated != 0 || st.SegmentsZeroFilled < 5) {
		t.Fatalf("stats %+v: want only prepared segments, at least 5", st)
	}
	if !prepared && (st.SegmentsZeroFilled != 0 || st.SegmentsFallocated < 5) {
		t.Fatalf("stats %+v: want only fallocated segments, at least 5", st)
	}
	cfs.OnPoint(nil)
	mu.Lock()
	defer mu.Unlock()
	for i, f := range failures {
		if i == 10 {
			t.Errorf("... and %d more", len(failures)-i)
			break
		}
		t.Error(f)
	}
	return points
}

// checkCrashImage opens the log on a crash image and returns why it is
// wrong, or "": it must open, have Commit <= LastIndex, and match one of
// the allowed states exactly.
func checkCrashImage(img vfs.FS, segBytes int64, allowed []*model) string {
	l, err := Open(testDir, Options{SegmentBytes: segBytes, FS: img, Logger: quietLogger})
	if err != nil {
		return fmt.Sprintf("Open: %v", err)
	}
	defer l.Close()
	return matchAllowed(l, allowed)
}
