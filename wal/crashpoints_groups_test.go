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

// groupPointData is pointData for group g: 50-700 bytes that name the group.
func groupPointData(g, i, t uint64) []byte {
	return groupData(g, i, t, 50+int((i*131+t*17+g*29)%650))
}

// TestCrashPointsGroups is TestCrashPoints with several groups sharing the
// log: each step queues batches of several groups together (so that one
// write and one fsync carry them), sometimes while another group
// truncates, compacts or resets, and the groups compact at different paces
// (so that segments stay for a lagging group and then go). At every sync
// and rename point a strict and a torn crash image are opened, and every
// group must recover a state allowed for it: everything acknowledged to it
// (done fired with nil, or the call returned), possibly with a prefix of
// what was in flight for it, and only its own entries; no other groups
// appear.
func TestCrashPointsGroups(t *testing.T) {
	for _, prepared := range []bool{true, false} {
		name := "fallocated"
		if prepared {
			name = "prepared"
		}
		for seed := uint64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("%s/seed=%d", name, seed), func(t *testing.T) {
				n := runCrashPointsGroups(t, prepared, seed)
				t.Logf("%s seed %d: %d crash points, each checked strict and torn", name, seed, n)
			})
		}
	}
}

// groupAllowed tracks, per group, the states a crash now may recover.
type groupAllowed struct {
	mu sync.Mutex
	// states[g] are the states after every completed operation of group
	// g, then the prefix states of the one in flight.
	states map[uint64][]*model
}

func (a *groupAllowed) set(g uint64, ms ...*model) {
	a.mu.Lock()
	a.states[g] = ms
	a.mu.Unlock()
}

// snapshot copies the current allowed states of every group.
func (a *groupAllowed) snapshot() map[uint64][]*model {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := make(map[uint64][]*model, len(a.states))
	for g, ms := range a.states {
		c[g] = slices.Clone(ms)
	}
	return c
}

func runCrashPointsGroups(t *testing.T, prepared bool, seed uint64) int {
	rng := rand.New(rand.NewPCG(seed, 0x6a0c4))
	cfs := crashfs.New()
	in := &injector{}
	if !prepared {
		in.set(failPrep)
	}
	o := Options{SegmentBytes: 16 << 10, CacheBytes: 4 << 10, FS: errorfs.Wrap(cfs, in), Logger: quietLogger}

	allowed := &groupAllowed{states: map[uint64][]*model{}}
	ms := map[uint64]*model{}
	for _, g := range testGroupIDs {
		ms[g] = &model{}
		allowed.set(g, ms[g])
	}
	var fmu sync.Mutex
	var failures []string
	points := 0
	cfs.OnPoint(func(p crashfs.Point) {
		states := allowed.snapshot()
		fmu.Lock()
		points++
		fmu.Unlock()
		for _, torn := range []bool{false, true} {
			if msg := checkGroupsImage(cfs.Image(torn, uint64(p.N)), o.SegmentBytes, states); msg != "" {
				fmu.Lock()
				failures = append(failures, fmt.Sprintf("crash at %v (torn %v): %s", p, torn, msg))
				fmu.Unlock()
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
	term := uint64(1)
	for step := 0; step < 90; step++ {
		order := slices.Clone(testGroupIDs)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		writers := order[:1+rng.IntN(len(order)-1)]
		var wg sync.WaitGroup
		errs := make(chan error, len(order))
		for _, g := range writers {
			m := ms[g]
			start := m.last() + 1
			if rng.IntN(6) == 0 && m.last() > m.hs.Commit && m.last() >= m.first() {
				lo := max(m.hs.Commit+1, m.first())
				start = lo + rng.Uint64N(m.last()-lo+1)
				term++
			}
			es := make([]wire.Entry, 1+rng.IntN(4))
			for i := range es {
				idx := start + uint64(i)
				es[i] = wire.Entry{Index: idx, Term: term, Data: groupPointData(g, idx, term)}
			}
			hs := wire.HardState{Term: term, Vote: g % 3, Commit: es[len(es)-1].Index}
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
			allowed.set(g, append(states, final)...)
			ms[g] = final
			wg.Add(1)
			l.Group(g).AppendAsync(es, &hs, func(err error) {
				if err == nil {
					allowed.set(g, final) // acknowledged: from now on it must be there
				}
				errs <- err
				wg.Done()
			})
		}
		// Sometimes another group truncates, compacts or resets meanwhile.
		if other := order[len(writers):]; len(other) > 0 && rng.IntN(3) > 0 {
			g := other[0]
			m := ms[g]
			next, op := groupSyncOp(rng, g, m, &term)
			if op != nil {
				allowed.set(g, m, next)
				ms[g] = next
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := op(l.Group(g))
					if err == nil {
						allowed.set(g, next)
					}
					errs <- err
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		}
		waitPrepared()
	}
	if st := l.Stats(); st.SegmentsZeroFilled+st.SegmentsFallocated < 5 || st.Groups != len(testGroupIDs) {
		t.Fatalf("stats %+v: want at least 5 segments and %d groups", st, len(testGroupIDs))
	}
	cfs.OnPoint(nil)
	fmu.Lock()
	defer fmu.Unlock()
	for i, f := range failures {
		if i == 10 {
			t.Errorf("... and %d more", len(failures)-i)
			break
		}
		t.Error(f)
	}
	return points
}

// groupSyncOp picks a truncation, compaction or reset for a group in state
// m: the state after it and the call, or a nil call if there is nothing to
// do. Group 1<<40 compacts rarely, so that it lags and holds segments.
func groupSyncOp(rng *rand.Rand, gid uint64, m *model, term *uint64) (*model, func(*Group) error) {
	switch p := rng.IntN(100); {
	case p < 30: // truncate above the commit
		if m.last() <= max(m.hs.Commit, m.markerIndex) {
			return nil, nil
		}
		lo := max(m.hs.Commit+1, m.first())
		from := lo + rng.Uint64N(m.last()-lo+1)
		next := m.clone()
		next.ents = next.ents[:from-next.first()]
		return next, func(g *Group) error { return g.TruncateSuffix(from) }
	case p < 85: // compact up to the commit, with a base
		hi := min(m.hs.Commit, m.last())
		if hi <= m.markerIndex || (gid == 1<<40 && rng.IntN(4) > 0) {
			return nil, nil
		}
		upTo := m.markerIndex + 1 + rng.Uint64N(hi-m.markerIndex)
		base := []byte(fmt.Sprintf("members at %d", upTo))
		next := m.clone()
		next.markerTerm = next.ents[upTo-next.first()].Term
		next.ents = next.ents[upTo-next.markerIndex:]
		next.markerIndex, next.base = upTo, base
		return next, func(g *Group) error { return g.CompactPrefix(upTo, base) }
	default: // a snapshot beyond the log
		*term++
		idx := m.last() + uint64(rng.IntN(10))
		t := *term
		base := []byte(fmt.Sprintf("snapshot members at %d", idx))
		next := m.clone()
		next.markerIndex, next.markerTerm, next.ents, next.base = idx, t, nil, base
		return next, func(g *Group) error { return g.Reset(idx, t, base) }
	}
}

// checkGroupsImage opens the log on a crash image and returns why it is
// wrong, or "": it must open, hold no group beyond those allowed, and every
// group must match one of its allowed states.
func checkGroupsImage(img vfs.FS, segBytes int64, allowed map[uint64][]*model) string {
	l, err := Open(testDir, Options{SegmentBytes: segBytes, FS: img, Logger: quietLogger})
	if err != nil {
		return fmt.Sprintf("Open: %v", err)
	}
	defer l.Close()
	for _, g := range l.Groups() {
		if _, ok := allowed[g]; !ok {
			return fmt.Sprintf("recovered group %d, which never wrote", g)
		}
	}
	for g, states := range allowed {
		if msg := matchAllowed(l.Group(g), states); msg != "" {
			return fmt.Sprintf("group %d: %s", g, msg)
		}
	}
	return ""
}

// matchAllowed returns "" if v is exactly one of the allowed states.
func matchAllowed(v View, allowed []*model) string {
	first, last, hs := v.FirstIndex(), v.LastIndex(), v.HardState()
	if hs.Commit > last {
		return fmt.Sprintf("hard state %+v commits beyond LastIndex %d", hs, last)
	}
	mt, err := v.Term(first - 1)
	if err != nil {
		return fmt.Sprintf("marker term: %v", err)
	}
	ents, err := v.Entries(first, last+1, 1<<30)
	if err != nil {
		return fmt.Sprintf("Entries: %v", err)
	}
	base := v.Base()
	for _, m := range allowed {
		if m.first() != first || m.last() != last || m.markerTerm != mt || m.hs != hs || !bytes.Equal(m.base, base) {
			continue
		}
		same := true
		for i, e := range ents {
			w := m.ents[i]
			if e.Index != w.Index || e.Term != w.Term || !bytes.Equal(e.Data, w.Data) {
				same = false
				break
			}
		}
		if same {
			return ""
		}
	}
	return fmt.Sprintf("recovered [%d, %d] marker term %d base %q hard state %+v matches none of %d allowed states (acknowledged: [%d, %d] hard state %+v)",
		first, last, mt, base, hs, len(allowed), allowed[0].first(), allowed[0].last(), allowed[0].hs)
}
