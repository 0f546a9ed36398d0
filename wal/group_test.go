package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/wire"
)

// groupData is the data of entry (i, t) of group g: the group is in the
// bytes, so that a group reading another's entry is caught.
func groupData(g, i, t uint64, n int) []byte {
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(g*37) ^ byte(i) ^ byte(t<<4) ^ byte(k) | 1
	}
	return append(b, fmt.Sprintf("g%d/i%d/t%d", g, i, t)...)
}

// testGroupIDs are the groups the multi-group tests use: 0, small and huge
// IDs, in an order that is not sorted.
var testGroupIDs = []uint64{0, 7, 1, 1 << 40}

// TestGroupsModel drives random appends (bursts that interleave groups in
// one round), hard states, truncations, compactions, resets and reopens
// over several groups of one log, and compares every group with its own
// model after every step: each group behaves as a log of its own.
func TestGroupsModel(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("seed %d", seed)
				}
			}()
			runGroupsModel(t, seed, 250)
		})
	}
}

func runGroupsModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0x9409))
	fsys := vfs.NewMem()
	o := Options{
		SegmentBytes: int64(minSegmentBytes + rng.IntN(12<<10)),
		CacheBytes:   []int64{-1, 900, 0, 1 << 20}[rng.IntN(4)],
		FS:           fsys,
		Logger:       quietLogger,
	}
	l := mustOpen(t, testDir, o)
	defer func() { l.Close() }()
	views := func() []View {
		vs := make([]View, len(testGroupIDs))
		for i, id := range testGroupIDs {
			vs[i] = l.Group(id)
		}
		return vs
	}
	vs := views()
	ms := make([]*model, len(testGroupIDs))
	for i := range ms {
		ms[i] = &model{}
	}
	term := uint64(1)
	for step := 0; step < steps; step++ {
		removed := false // a compaction or reset ran, and with it the segment removal
		gi := rng.IntN(len(testGroupIDs))
		gid, v, m := testGroupIDs[gi], vs[gi], ms[gi]
		var what string
		switch p := rng.IntN(100); {
		case p < 50: // async appends to several groups, queued together
			var wg sync.WaitGroup
			var mu sync.Mutex
			var errs []error
			for b := 0; b < 1+rng.IntN(6); b++ {
				gi := rng.IntN(len(testGroupIDs))
				gid, v, m := testGroupIDs[gi], vs[gi], ms[gi]
				start := m.last() + 1
				if rng.IntN(5) == 0 && m.last() >= m.first() {
					start = m.first() + uint64(rng.IntN(int(m.last()-m.first()+2)))
					term++
				}
				es := make([]wire.Entry, 1+rng.IntN(5))
				for i := range es {
					idx := start + uint64(i)
					es[i] = wire.Entry{Index: idx, Term: term, Type: wire.EntryType(rng.IntN(3)), Data: groupData(gid, idx, term, rng.IntN(200))}
				}
				var hs *wire.HardState
				if rng.IntN(3) == 0 {
					hs = &wire.HardState{Term: term, Vote: gid % 5, Commit: rng.Uint64N(start + 1)}
					m.hs = *hs
				}
				m.append(es)
				what += fmt.Sprintf("g%d append %d..%d; ", gid, start, start+uint64(len(es))-1)
				wg.Add(1)
				v.AppendAsync(es, hs, func(err error) {
					if err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
					wg.Done()
				})
			}
			wg.Wait()
			if len(errs) > 0 {
				t.Fatalf("step %d %s: %v", step, what, errs)
			}
		case p < 58:
			m.hs = wire.HardState{Term: term, Vote: gid % 3, Commit: rng.Uint64N(m.last() + 1)}
			hs := m.hs
			what = fmt.Sprintf("g%d hard state", gid)
			if err := v.Append(nil, &hs); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
		case p < 68:
			from := m.first() + uint64(rng.IntN(int(m.last()-m.first()+3)))
			what = fmt.Sprintf("g%d truncate from %d", gid, from)
			if err := v.TruncateSuffix(from); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			if from <= m.last() {
				m.ents = m.ents[:from-m.first()]
			}
		case p < 82:
			upTo := m.markerIndex + uint64(rng.IntN(int(m.last()-m.markerIndex+1)))
			if rng.IntN(3) == 0 {
				upTo = m.last()
			}
			what = fmt.Sprintf("g%d compact to %d", gid, upTo)
			base := randomBase(rng)
			if err := v.CompactPrefix(upTo, base); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			if upTo > m.markerIndex {
				removed = true
				m.base = bytes.Clone(base)
				m.markerTerm = m.ents[upTo-m.first()].Term
				m.ents = m.ents[upTo-m.markerIndex:]
				m.markerIndex = upTo
			}
		case p < 87:
			idx := m.last() + uint64(rng.IntN(20))
			term++
			what = fmt.Sprintf("g%d reset to %d t%d", gid, idx, term)
			base := randomBase(rng)
			if err := v.Reset(idx, term, base); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			m.markerIndex, m.markerTerm, m.ents, m.base = idx, term, nil, bytes.Clone(base)
			removed = true
		default:
			what = "reopen"
			if err := l.Close(); err != nil {
				t.Fatalf("step %d close: %v", step, err)
			}
			var err error
			if l, err = Open(testDir, o); err != nil {
				t.Fatalf("step %d reopen: %v", step, err)
			}
			vs = views()
			for _, m := range ms {
				m.hs.Commit = min(m.hs.Commit, m.last())
			}
		}
		for i, m := range ms {
			compareModel(t, vs[i], m, rng, fmt.Sprintf("step %d (%s), group %d", step, what, testGroupIDs[i]))
		}
		if removed {
			checkSegmentsNeeded(t, l, fsys, fmt.Sprintf("step %d (%s)", step, what))
		}
	}
}

// checkSegmentsNeeded checks, right after a compaction or reset, that the
// removal kept only needed segments: the oldest segment left holds some
// group's first live entry, or it is the newest one. (That no group's
// live entry was in a removed segment, compareModel's Entries shows.)
// Appends and truncations remove nothing, so segments they make dead wait
// for the next compaction or reset of any group.
func checkSegmentsNeeded(t *testing.T, l *Log, fsys vfs.FS, where string) {
	t.Helper()
	l.mu.Lock()
	if len(l.mu.segs) == 0 {
		l.mu.Unlock()
		return
	}
	oldest, newest := l.mu.segs[0], l.mu.segs[len(l.mu.segs)-1]
	need := l.removableBelowLocked()
	l.mu.Unlock()
	if oldest < need {
		// Removal runs after the compaction is durable, so by the time the
		// call returned it has happened.
		t.Fatalf("%s: oldest segment %d is needed by no group (oldest needed %d, newest %d)", where, oldest, need, newest)
	}
	if n := len(segmentPaths(t, fsys, testDir)); n != int(newest-oldest+1) {
		t.Fatalf("%s: %d segment files, the log lists %d..%d", where, n, oldest, newest)
	}
}

// TestGroupSegmentRemovalLagging: one group appends and compacts all the
// time, another wrote a few entries early and never compacts. No segment
// may be removed while the lagging group's first entry is in it; once it
// compacts, the old segments go. A group with only a hard state (no
// entries) holds nothing back. Every group recovers after a reopen.
func TestGroupSegmentRemovalLagging(t *testing.T) {
	fsys := vfs.NewMem()
	o := Options{SegmentBytes: minSegmentBytes, FS: fsys, Logger: quietLogger}
	l := mustOpen(t, testDir, o)
	busy, lag, hsOnly := l.Group(3), l.Group(9), l.Group(12)
	lagEnts := []wire.Entry{
		{Index: 1, Term: 1, Data: groupData(9, 1, 1, 30)},
		{Index: 2, Term: 1, Data: groupData(9, 2, 1, 30)},
	}
	if err := lag.Append(lagEnts, &wire.HardState{Term: 1, Commit: 2}); err != nil {
		t.Fatal(err)
	}
	if err := hsOnly.Append(nil, &wire.HardState{Term: 4, Vote: 2}); err != nil {
		t.Fatal(err)
	}
	var busyLast uint64
	appendBusy := func(n int) {
		for i := 0; i < n; i++ {
			busyLast++
			e := []wire.Entry{{Index: busyLast, Term: 2, Data: groupData(3, busyLast, 2, 200)}}
			if err := busy.Append(e, &wire.HardState{Term: 2, Commit: busyLast}); err != nil {
				t.Fatal(err)
			}
			if err := busy.CompactPrefix(busyLast, []byte("busy base")); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendBusy(200)
	segs := len(segmentPaths(t, fsys, testDir))
	if segs < 5 {
		t.Fatalf("only %d segments: the lagging group should hold them all", segs)
	}
	l.mu.Lock()
	first := l.mu.segs[0]
	l.mu.Unlock()
	if first != 1 {
		t.Fatalf("segment 1 removed although group 9's entry 1 is in it (oldest %d)", first)
	}
	if got, err := lag.Entries(1, 3, 1<<20); err != nil || len(got) != 2 || !bytes.Equal(got[0].Data, lagEnts[0].Data) {
		t.Fatalf("lagging group's entries: %v, %v", got, err)
	}
	// Group 0 never wrote anything beyond the preambles; it holds nothing.
	if err := lag.CompactPrefix(2, []byte("lag base")); err != nil {
		t.Fatal(err)
	}
	if n := len(segmentPaths(t, fsys, testDir)); n > 2 {
		t.Fatalf("%d segments left after the lagging group compacted, want at most 2", n)
	}
	appendBusy(50)
	if n := len(segmentPaths(t, fsys, testDir)); n > 2 {
		t.Fatalf("%d segments left, want at most 2", n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, testDir, o)
	defer l.Close()
	busy, lag, hsOnly = l.Group(3), l.Group(9), l.Group(12)
	if f, la, b := lag.FirstIndex(), lag.LastIndex(), lag.Base(); f != 3 || la != 2 || string(b) != "lag base" {
		t.Fatalf("lagging group after reopen: first %d last %d base %q", f, la, b)
	}
	if tm, err := lag.Term(2); err != nil || tm != 1 {
		t.Fatalf("lagging group's marker term %d, %v", tm, err)
	}
	if hs := lag.HardState(); hs != (wire.HardState{Term: 1, Commit: 2}) {
		t.Fatalf("lagging group's hard state %+v", hs)
	}
	if hs := hsOnly.HardState(); hs != (wire.HardState{Term: 4, Vote: 2}) || hsOnly.LastIndex() != 0 {
		t.Fatalf("hard-state-only group: %+v, last %d", hs, hsOnly.LastIndex())
	}
	if busy.FirstIndex() != busyLast+1 || busy.LastIndex() != busyLast || string(busy.Base()) != "busy base" {
		t.Fatalf("busy group: first %d last %d base %q, want %d", busy.FirstIndex(), busy.LastIndex(), busy.Base(), busyLast)
	}
	if l.LastIndex() != 0 || l.FirstIndex() != 1 || !l.HardState().IsEmpty() {
		t.Fatalf("group 0 is not empty: first %d last %d hs %+v", l.FirstIndex(), l.LastIndex(), l.HardState())
	}
	if got := l.Groups(); len(got) != 4 || got[0] != 0 {
		t.Fatalf("groups %v, want 0 and three others", got)
	}
}

// TestGroupCreation: a group that only reads, or whose writes are no-ops,
// does not exist and leaves nothing on disk; its first real write creates
// it, durably.
func TestGroupCreation(t *testing.T) {
	o := memOpts()
	l := mustOpen(t, testDir, o)
	g := l.Group(5)
	if g.FirstIndex() != 1 || g.LastIndex() != 0 || g.Base() != nil || !g.HardState().IsEmpty() {
		t.Fatal("a new group does not read as empty")
	}
	if _, err := g.Term(0); err != nil {
		t.Fatalf("Term(0) of a new group: %v", err)
	}
	if _, err := g.Entries(1, 2, 100); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Entries of a new group: %v", err)
	}
	if err := g.TruncateSuffix(1); err != nil {
		t.Fatal(err)
	}
	if err := g.CompactPrefix(0, []byte("ignored")); err != nil {
		t.Fatal(err)
	}
	if err := g.CompactPrefix(1, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("compacting an empty group beyond its end: %v", err)
	}
	if err := g.Append(nil, nil); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Groups != 1 {
		t.Fatalf("%d groups after no-op writes, want 1", st.Groups)
	}
	if err := l.Group(6).Append(nil, &wire.HardState{Term: 3}); err != nil {
		t.Fatal(err)
	}
	if err := l.Group(8).Reset(10, 2, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Groups != 3 {
		t.Fatalf("%d groups, want 3", st.Groups)
	}
	l.Close()
	l = mustOpen(t, testDir, o)
	defer l.Close()
	if got := fmt.Sprint(l.Groups()); got != "[0 6 8]" {
		t.Fatalf("groups after reopen %s, want [0 6 8]", got)
	}
	if hs := l.Group(6).HardState(); hs.Term != 3 {
		t.Fatalf("group 6 hard state %+v", hs)
	}
	if g := l.Group(8); g.FirstIndex() != 11 || string(g.Base()) != "b" {
		t.Fatalf("group 8: first %d base %q", g.FirstIndex(), g.Base())
	}
}

// TestMaxGroups: the group count is bounded; a write that would create one
// more fails with ErrTooManyGroups and changes nothing, existing groups go
// on working, and Open refuses a directory with more groups than allowed.
func TestMaxGroups(t *testing.T) {
	o := memOpts()
	o.MaxGroups = 3
	l := mustOpen(t, testDir, o)
	for _, id := range []uint64{1, 2} {
		if err := l.Group(id).Append(mkEntries(1, 3, 1), nil); err != nil {
			t.Fatal(err)
		}
	}
	g := l.Group(3)
	if err := g.Append(mkEntries(1, 2, 1), nil); !errors.Is(err, ErrTooManyGroups) {
		t.Fatalf("Append creating a fourth group: %v", err)
	}
	done := make(chan error, 1)
	g.AppendAsync(nil, &wire.HardState{Term: 1}, func(err error) { done <- err })
	if err := <-done; !errors.Is(err, ErrTooManyGroups) {
		t.Fatalf("AppendAsync creating a fourth group: %v", err)
	}
	if err := g.Reset(5, 1, nil); !errors.Is(err, ErrTooManyGroups) {
		t.Fatalf("Reset creating a fourth group: %v", err)
	}
	if g.LastIndex() != 0 || !g.HardState().IsEmpty() {
		t.Fatal("a refused write changed the view")
	}
	if err := l.Group(2).Append(mkEntries(3, 4, 1), nil); err != nil {
		t.Fatalf("existing group after a refusal: %v", err)
	}
	if err := l.Append(mkEntries(1, 2, 1), nil); err != nil {
		t.Fatalf("group 0 after a refusal: %v", err)
	}
	l.Close()
	o.MaxGroups = 2
	if _, err := Open(testDir, o); !errors.Is(err, ErrTooManyGroups) {
		t.Fatalf("Open with fewer MaxGroups than groups on disk: %v", err)
	}
	o.MaxGroups = 3
	l = mustOpen(t, testDir, o)
	defer l.Close()
	if l.Group(2).LastIndex() != 3 {
		t.Fatalf("group 2 last %d, want 3", l.Group(2).LastIndex())
	}
}

// TestTotalBaseLimit: all groups' bases together are bounded (that bounds
// the preamble); one group may still have a 1 MiB base.
func TestTotalBaseLimit(t *testing.T) {
	// One segment big enough for all of it: every roll would restate up
	// to 16 MiB of bases, which is correct but slow under -race.
	in := &injector{}
	in.set(failPrep)
	l := mustOpen(t, testDir, Options{SegmentBytes: 64 << 20, FS: errorfs.Wrap(vfs.NewMem(), in), Logger: quietLogger})
	defer l.Close()
	big := bytes.Repeat([]byte{'b'}, maxBaseBytes)
	for id := uint64(0); id < maxTotalBaseBytes/maxBaseBytes; id++ {
		if err := l.Group(id).Reset(1, 1, big); err != nil {
			t.Fatalf("group %d: %v", id, err)
		}
	}
	if err := l.Group(100).Reset(1, 1, []byte("x")); !errors.Is(err, ErrBaseTooLarge) {
		t.Fatalf("a base past the total: %v", err)
	}
	if err := l.Group(3).Reset(2, 1, []byte("small")); err != nil {
		t.Fatalf("shrinking a base: %v", err)
	}
	if err := l.Group(100).Reset(1, 1, []byte("x")); err != nil {
		t.Fatalf("a base within the total again: %v", err)
	}
}

// TestGroupCommitAcrossGroups holds the first sync, queues appends of 16
// groups meanwhile, and checks that all of them ride in the next single
// write+sync: one fsync serves every group.
func TestGroupCommitAcrossGroups(t *testing.T) {
	o, in := faultOpts()
	o.SegmentBytes = 1 << 20
	hold := newSyncHold()
	in.set(hold.fault)
	l := mustOpen(t, testDir, o)
	defer l.Close()
	const groups, perGroup = 16, 8
	var mu sync.Mutex
	completed := 0
	done := func(err error) {
		if err != nil {
			t.Errorf("append: %v", err)
		}
		mu.Lock()
		completed++
		mu.Unlock()
	}
	l.AppendAsync(mkEntries(1, 2, 1), nil, done)
	<-hold.entered
	for i := uint64(1); i <= perGroup; i++ {
		for g := uint64(1); g <= groups; g++ {
			l.Group(g).AppendAsync(mkEntries(i, i+1, 1), &wire.HardState{Term: 1, Commit: i}, done)
		}
	}
	hold.release <- struct{}{}
	<-hold.entered
	in.set(nil)
	hold.release <- struct{}{}
	testutil.WaitFor(t, walWait, "all appends to complete", func() bool { mu.Lock(); defer mu.Unlock(); return completed == 1+groups*perGroup })
	st := l.Stats()
	if st.Batches != 2 || st.Syncs != 2 || st.Calls != 1+groups*perGroup || st.Groups != 1+groups {
		t.Fatalf("stats %+v: want 2 batches, 2 syncs, %d calls, %d groups", st, 1+groups*perGroup, 1+groups)
	}
	for g := uint64(1); g <= groups; g++ {
		if v := l.Group(g); v.LastIndex() != perGroup || v.HardState().Commit != perGroup {
			t.Fatalf("group %d: last %d hs %+v", g, v.LastIndex(), v.HardState())
		}
	}
}

// TestFsyncsDoNotGrowWithGroups: the same closed-loop load (16 appenders,
// each a fixed number of synchronous appends, a 1 ms fsync) spread over 1
// or 16 groups needs about the same number of fsyncs; with 16 groups each
// fsync serves all of them (Calls per fsync stays at about the number of
// appenders instead of dropping to one group's share).
func TestFsyncsDoNotGrowWithGroups(t *testing.T) {
	const appenders, rounds = 16, 40
	run := func(groups int) Stats {
		in := &injector{}
		in.set(func(op errorfs.Op) error {
			if isSegmentSync(op) {
				time.Sleep(time.Millisecond) // a slow disk, so that rounds are set by the fsync
			}
			return nil
		})
		o := Options{SegmentBytes: 4 << 20, FS: errorfs.Wrap(vfs.NewMem(), in), Logger: quietLogger}
		l := mustOpen(t, testDir, o)
		defer l.Close()
		var wg sync.WaitGroup
		var mu sync.Mutex
		next := map[uint64]uint64{}
		for a := 0; a < appenders; a++ {
			g := l.Group(uint64(a % groups))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := 0; r < rounds; r++ {
					mu.Lock()
					next[g.id]++
					es := []wire.Entry{{Index: next[g.id], Term: 1, Data: []byte("payload")}}
					sw := syncWaiterPool.Get().(*syncWaiter)
					l.enqueue(g, es, nil, waiter{sw: sw})
					mu.Unlock()
					if err := sw.wait(); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return l.Stats()
	}
	one, many := run(1), run(16)
	t.Logf("1 group: %d fsyncs, %.1f calls/fsync; 16 groups: %d fsyncs, %.1f calls/fsync",
		one.Syncs, float64(one.Calls)/float64(one.Syncs), many.Syncs, float64(many.Calls)/float64(many.Syncs))
	if many.Calls != appenders*rounds || one.Calls != appenders*rounds {
		t.Fatalf("calls %d and %d, want %d", one.Calls, many.Calls, appenders*rounds)
	}
	// Per-group fsyncs would need 16× the fsyncs; allow scheduling noise.
	if many.Syncs > 2*one.Syncs+10 {
		t.Fatalf("16 groups needed %d fsyncs, 1 group %d: fsyncs grow with groups", many.Syncs, one.Syncs)
	}
	if many.Syncs > appenders*rounds/3 {
		t.Fatalf("16 groups: %d fsyncs for %d appends: no batching across groups", many.Syncs, appenders*rounds)
	}
}

// TestRecoverGroupStartChecks: a group-start record is checked like the
// segment header's first index: in a later segment it must restate the
// group's LastIndex()+1, and a group may not first appear through one
// there. Both are corruption naming the file and offset, even though the
// records' CRCs hold.
func TestRecoverGroupStartChecks(t *testing.T) {
	fsys := vfs.NewMem()
	o := Options{SegmentBytes: minSegmentBytes, FS: fsys, Logger: quietLogger}
	l := mustOpen(t, testDir, o)
	g := l.Group(5)
	for i := uint64(1); i <= 60; i++ {
		if err := g.Append([]wire.Entry{{Index: i, Term: 1, Data: groupData(5, i, 1, 100)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	segs := segmentPaths(t, fsys, testDir)
	if len(segs) < 3 {
		t.Fatalf("only %d segments", len(segs))
	}
	name := segs[1]
	pristine := readFile(t, fsys, name)
	// The second segment's preamble: group 0's compact and hard state, then
	// group 5's group-start record.
	off := int64(segmentHeaderBytes + preambleBytes(0))
	if recordType(pristine[off+8]) != recGroupStart {
		t.Fatalf("no group-start record at offset %d", off)
	}
	fix := func(img []byte) {
		end := off + recordHeaderBytes + groupStartPayloadBytes
		binary.LittleEndian.PutUint32(img[off:], crc32.Checksum(img[off+4:end], castagnoli))
	}
	expectCorrupt := func(what string) {
		t.Helper()
		_, err := Open(testDir, o)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.File != name || ce.Offset != off {
			t.Fatalf("%s: Open: %v, want corruption in %s at %d", what, err, name, off)
		}
	}
	img := bytes.Clone(pristine)
	binary.LittleEndian.PutUint64(img[off+recordHeaderBytes:], binary.LittleEndian.Uint64(img[off+recordHeaderBytes:])+1)
	fix(img)
	writeFile(t, fsys, name, img)
	expectCorrupt("group start one past the previous segment's end")

	img = bytes.Clone(pristine)
	binary.LittleEndian.PutUint64(img[off+12:], 6) // a group seen nowhere before
	fix(img)
	writeFile(t, fsys, name, img)
	expectCorrupt("a new group first seen in a later preamble")

	writeFile(t, fsys, name, pristine)
	l = mustOpen(t, testDir, o)
	defer l.Close()
	if l.Group(5).LastIndex() != 60 {
		t.Fatalf("group 5 last %d after restoring the segment", l.Group(5).LastIndex())
	}
}

// TestManyGroupsPreamble: with 1,000 groups every new segment starts with
// a preamble of exactly 84 + 999 × 112 bytes plus the bases (about 110 KiB
// here), all groups recover from it after the older segments are gone,
// and it is written once per segment, not per round.
func TestManyGroupsPreamble(t *testing.T) {
	const groups = 1000
	fsys := vfs.NewMem()
	o := Options{SegmentBytes: 1 << 20, FS: fsys, Logger: quietLogger}
	l := mustOpen(t, testDir, o)
	base := []byte("m")
	for id := uint64(1); id < groups; id++ {
		g := l.Group(id)
		if err := g.Append([]wire.Entry{{Index: 1, Term: 1, Data: groupData(id, 1, 1, 10)}}, &wire.HardState{Term: 1, Commit: 1}); err != nil {
			t.Fatal(err)
		}
		if err := g.CompactPrefix(1, base); err != nil {
			t.Fatal(err)
		}
	}
	// Fill the current segment with group 0 so that the next roll happens;
	// then compact group 0 too, which removes every older segment.
	var last uint64
	for len(segmentPaths(t, fsys, testDir)) < 3 {
		last++
		if err := l.Append([]wire.Entry{{Index: last, Term: 1, Data: make([]byte, 4000)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.CompactPrefix(last, nil); err != nil {
		t.Fatal(err)
	}
	segs := segmentPaths(t, fsys, testDir)
	if len(segs) != 1 {
		t.Fatalf("%d segments left, want 1", len(segs))
	}
	want := preambleBytes(0) + (groups-1)*(groupPreambleFixedBytes+len(base))
	data := readFile(t, fsys, segs[0])
	off, n := segmentHeaderBytes, 0
	for n < 3*groups-1 { // group 0's two preamble records, then three per group
		_, size, st := decodeRecord(data[off:])
		if st != recOK {
			t.Fatalf("preamble record %d at %d: status %d", n, off, st)
		}
		off += size
		n++
	}
	if got := off - segmentHeaderBytes; got != want {
		t.Fatalf("preamble of %d bytes, want %d", got, want)
	}
	t.Logf("preamble for %d groups: %d bytes", groups, want)
	l.Close()
	l = mustOpen(t, testDir, o)
	defer l.Close()
	if st := l.Stats(); st.Groups != groups {
		t.Fatalf("%d groups recovered, want %d", st.Groups, groups)
	}
	for _, id := range []uint64{1, 500, groups - 1} {
		g := l.Group(id)
		if g.FirstIndex() != 2 || g.HardState().Commit != 1 || string(g.Base()) != "m" {
			t.Fatalf("group %d: first %d hs %+v base %q", id, g.FirstIndex(), g.HardState(), g.Base())
		}
		if tm, err := g.Term(1); err != nil || tm != 1 {
			t.Fatalf("group %d marker term %d %v", id, tm, err)
		}
	}
}
