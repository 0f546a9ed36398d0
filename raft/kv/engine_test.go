package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/wire"
)

func openEngineT(t testing.TB, dir string, o Options) *Engine {
	t.Helper()
	e, err := OpenEngine(dir, o)
	if err != nil {
		t.Fatalf("OpenEngine(%s): %v", dir, err)
	}
	return e
}

func groupT(t testing.TB, e *Engine, id uint64) *Group {
	t.Helper()
	g, err := e.Group(id)
	if err != nil {
		t.Fatalf("Group(%d): %v", id, err)
	}
	return g
}

func applyG(t testing.TB, g *Group, es []wire.Entry) []Result {
	t.Helper()
	res := make([]Result, len(es))
	if err := g.Apply(es, res); err != nil {
		t.Fatalf("group %d: Apply: %v", g.ID(), err)
	}
	return res
}

// groupDiff says how g differs from want (applied index and term, every
// key of want, and the hash over all its user keys), or "" if it does not.
func groupDiff(t testing.TB, g *Group, want storeState, wantHash uint64) string {
	t.Helper()
	if g.AppliedIndex() != want.index || g.AppliedTerm() != want.term {
		return fmt.Sprintf("group %d at index %d term %d, want %v", g.ID(), g.AppliedIndex(), g.AppliedTerm(), want)
	}
	for k, v := range want.m {
		got, ok, err := g.Get([]byte(k))
		if err != nil || !ok || string(got) != v {
			return fmt.Sprintf("group %d: Get(%q) = %q, %v, %v; want %q (state %v)", g.ID(), k, got, ok, err, v, want)
		}
	}
	h, err := g.Hash()
	if err != nil || h != wantHash {
		return fmt.Sprintf("group %d: Hash = %x, %v; want %x: keys beyond state %v", g.ID(), h, err, wantHash, want)
	}
	return ""
}

func checkGroup(t testing.TB, g *Group, want storeState) {
	t.Helper()
	if d := groupDiff(t, g, want, modelHash(t, want.m)); d != "" {
		t.Fatal(d)
	}
}

// fillGroup applies n entries of the workload to g from its next index in
// term, advancing m, and returns g's state.
func fillGroup(t testing.TB, g *Group, m model, n int, term uint64) storeState {
	t.Helper()
	first := g.AppliedIndex() + 1
	last := first + uint64(n) - 1
	applyG(t, g, withTerm(term, entries(first, workload(m, first, last)...)))
	return storeState{index: last, term: term, m: cloneModel(m)}
}

func cloneModel(m model) model {
	c := make(model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// TestGroupsAreIsolated writes the same keys with different values in
// three groups (IDs chosen so that their prefixes are neighbours and one
// is the largest allowed) and checks that each sees only its own, with its
// own applied index and term.
func TestGroupsAreIsolated(t *testing.T) {
	e := openEngineT(t, t.TempDir(), Options{DisableWAL: true})
	defer e.Close()
	ids := []uint64{1, 2, MaxGroupID}
	gs := make([]*Group, len(ids))
	want := make([]storeState, len(ids))
	for i, id := range ids {
		gs[i] = groupT(t, e, id)
		var data [][]byte
		m := model{}
		for k := 0; k < 10; k++ {
			key, v := fmt.Sprintf("k%d", k), fmt.Sprintf("g%d-v%d", id, k)
			data = append(data, putCmd(key, v))
			m[key] = v
		}
		// group i has i+1 extra keys only it holds, and its own index/term
		for k := 0; k <= i; k++ {
			key := fmt.Sprintf("only-%d-%d", id, k)
			data = append(data, putCmd(key, "x"))
			m[key] = "x"
		}
		term := uint64(3 + i)
		applyG(t, gs[i], withTerm(term, entries(1, data...)))
		want[i] = storeState{index: uint64(len(data)), term: term, m: m}
	}
	if _, ok, _ := gs[1].Get([]byte("only-1-0")); ok {
		t.Fatal("group 2 sees a key written in group 1")
	}
	for i := range gs {
		checkGroup(t, gs[i], want[i])
	}
	// A delete in one group leaves the others' copy.
	applyG(t, gs[0], withTerm(want[0].term, entries(want[0].index+1, delCmd("k0"))))
	if _, ok, _ := gs[1].Get([]byte("k0")); !ok {
		t.Fatal("a delete in group 1 removed group 2's key")
	}
	if _, err := e.Group(MaxGroupID + 1); !errors.Is(err, ErrBadGroup) {
		t.Fatalf("Group(MaxGroupID+1) = %v, want ErrBadGroup", err)
	}
	if _, err := e.Group(1); !errors.Is(err, ErrGroupOpen) {
		t.Fatalf("second view of group 1: %v, want ErrGroupOpen", err)
	}
}

// TestGroupApplyMatchesStore applies the same random batches (puts,
// deletes, CAS and gets over a few keys, so same-batch reads are common)
// to a Store and to a group next to a busy neighbour group: the results,
// applied index and hash must be the same. The Store's semantics are
// checked against a plain map by TestApplyMatchesModel.
func TestGroupApplyMatchesStore(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -kv.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	s := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer s.Close()
	e := openEngineT(t, t.TempDir(), Options{DisableWAL: true})
	defer e.Close()
	g, other := groupT(t, e, 7), groupT(t, e, 8)
	keys := []string{"a", "b", "", "long-key-with-some-bytes"}
	vals := []string{"", "x", "yy"}
	next := uint64(1)
	for round := 0; round < 100; round++ {
		n := 1 + rng.IntN(30)
		data := make([][]byte, n)
		for i := range data {
			k, v := keys[rng.IntN(len(keys))], vals[rng.IntN(len(vals))]
			switch rng.IntN(5) {
			case 0:
				data[i] = putCmd(k, v)
			case 1:
				data[i] = delCmd(k)
			case 2:
				data[i] = casAbsentCmd(k, v)
			case 3:
				data[i] = casCmd(k, vals[rng.IntN(len(vals))], v)
			default:
				data[i] = cmd(wire.ClientRequest{Op: wire.OpGet, Key: []byte(k)})
			}
		}
		es := withTerm(uint64(1+round/10), entries(next, data...))
		want := apply(t, s, es)
		got := applyG(t, g, es)
		// The neighbour writes the same keys; g must not see them.
		applyG(t, other, entries(other.AppliedIndex()+1, putCmd("a", "other"), putCmd("b", "other"), delCmd("")))
		next += uint64(n)
		for i := range want {
			if got[i].Status != want[i].Status || !bytes.Equal(got[i].Value, want[i].Value) || (got[i].Value == nil) != (want[i].Value == nil) {
				t.Fatalf("seed %d round %d entry %d: group %+v, store %+v", seed, round, i, got[i], want[i])
			}
		}
	}
	sh, _ := s.Hash()
	gh, err := g.Hash()
	if err != nil || gh != sh || g.AppliedIndex() != s.AppliedIndex() || g.AppliedTerm() != s.AppliedTerm() {
		t.Fatalf("group: hash %x index %d term %d, %v; store: hash %x index %d term %d",
			gh, g.AppliedIndex(), g.AppliedTerm(), err, sh, s.AppliedIndex(), s.AppliedTerm())
	}
}

// TestGroupReplayAndGapPanics checks the applied-index rules per group:
// replayed entries are skipped, a gap panics, and each group keeps its
// own index.
func TestGroupReplayAndGapPanics(t *testing.T) {
	e := openEngineT(t, t.TempDir(), Options{DisableWAL: true})
	defer e.Close()
	g1, g2 := groupT(t, e, 1), groupT(t, e, 2)
	applyG(t, g1, entries(1, putCmd("k", "1"), putCmd("k", "2")))
	res := applyG(t, g1, entries(1, putCmd("k", "replayed"), putCmd("k", "replayed"), putCmd("k", "3")))
	if res[0].Status != wire.StatusUnknown || res[1].Status != wire.StatusUnknown || res[2].Status != wire.StatusOK {
		t.Fatalf("replay results %+v", res)
	}
	if v, _, _ := g1.Get([]byte("k")); string(v) != "3" || g1.AppliedIndex() != 3 {
		t.Fatalf("after replay: %q at %d", v, g1.AppliedIndex())
	}
	if g2.AppliedIndex() != 0 {
		t.Fatalf("group 2 at index %d after writes to group 1", g2.AppliedIndex())
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("a gap did not panic")
			}
		}()
		_ = g2.Apply(entries(2, putCmd("k", "v")), make([]Result, 1))
	}()
}

// TestEngineReopen checks recovery: after Close and OpenEngine, every group
// is at the applied index and term it reached, with its data; and after a
// crash (the engine dropped without Close, the WAL off) every group is at
// a state it passed through, no lower than the last Flush.
func TestEngineReopen(t *testing.T) {
	fs := vfs.NewCrashableMem()
	o := Options{DisableWAL: true, FS: fs}
	e := openEngineT(t, "eng", o)
	const groups = 5
	models := make([]model, groups)
	states := make([]map[uint64]storeState, groups)
	for id := range groups {
		models[id] = model{}
		states[id] = map[uint64]storeState{0: {m: model{}}}
		g := groupT(t, e, uint64(id))
		for b := range 3 {
			st := fillGroup(t, g, models[id], 5+id, uint64(1+b))
			states[id][st.index] = st
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngineT(t, "eng", o)
	gs := make([]*Group, groups)
	for id := range groups {
		gs[id] = groupT(t, e, uint64(id))
		checkGroup(t, gs[id], states[id][uint64(3*(5+id))])
	}
	// More batches, a Flush half way, then a crash.
	flushed := make([]uint64, groups)
	for b := range 4 {
		for id := range groups {
			st := fillGroup(t, gs[id], models[id], 3, uint64(4+b))
			states[id][st.index] = st
		}
		if b == 1 {
			for id := range groups {
				flushed[id] = gs[id].AppliedIndex()
			}
			if err := e.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngineT(t, "eng", Options{DisableWAL: true, FS: crashed})
	defer e.Close()
	for id := range groups {
		g := groupT(t, e, uint64(id))
		st, ok := states[id][g.AppliedIndex()]
		if !ok || st.index < flushed[id] {
			t.Fatalf("group %d after a crash at index %d (flushed %d, a batch end: %v)", id, g.AppliedIndex(), flushed[id], ok)
		}
		checkGroup(t, g, st)
	}
}

// TestGroupSnapshotRestore sends a snapshot of one group from one engine
// to another: the snapshot holds only that group's keys, the restore
// replaces the target group's state whole (keys it had that the snapshot
// lacks are gone) and leaves every other group of the target engine as it
// was.
func TestGroupSnapshotRestore(t *testing.T) {
	src := openEngineT(t, t.TempDir(), Options{DisableWAL: true})
	defer src.Close()
	s3, s4 := groupT(t, src, 3), groupT(t, src, 4)
	m := model{}
	fillGroup(t, s3, m, 60, 2)
	if err := s3.Flush(); err != nil { // part in sstables, part in the memtable
		t.Fatal(err)
	}
	want := fillGroup(t, s3, m, 40, 5)
	fillGroup(t, s4, model{}, 30, 1) // a neighbour the snapshot must not hold
	var buf bytes.Buffer
	info, err := s3.WriteSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if info.Index != want.index || info.Term != want.term {
		t.Fatalf("WriteSnapshot covers %+v, want index %d term %d", info, want.index, want.term)
	}
	// Apply goes on after the snapshot; the snapshot does not change.
	fillGroup(t, s3, cloneModel(m), 5, 6)
	if n := bytes.Count(buf.Bytes(), []byte("val-")); n != len(want.m) {
		t.Fatalf("snapshot holds %d values, want %d (only group 3's)", n, len(want.m))
	}
	group, hinfo, err := ReadGroupSnapshotInfo(bytes.NewReader(buf.Bytes()))
	if err != nil || group != 3 || hinfo.Index != info.Index || hinfo.Term != info.Term {
		t.Fatalf("ReadGroupSnapshotInfo = %d %+v %v", group, hinfo, err)
	}

	dst := openEngineT(t, t.TempDir(), Options{DisableWAL: true})
	defer dst.Close()
	d2, d3, d4 := groupT(t, dst, 2), groupT(t, dst, 3), groupT(t, dst, 4)
	st2 := fillGroup(t, d2, model{}, 20, 1)
	applyG(t, d3, entries(1, putCmd("stale-key", "gone after restore")))
	st4 := fillGroup(t, d4, model{}, 25, 3)
	if err := dst.Flush(); err != nil {
		t.Fatal(err)
	}
	applyG(t, d3, entries(2, putCmd("stale-unflushed", "also gone")))

	got, err := d3.Restore(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got.Index != info.Index || got.Term != info.Term {
		t.Fatalf("Restore installed %+v, want %+v", got, info)
	}
	checkGroup(t, d3, want)
	checkGroup(t, d2, st2)
	checkGroup(t, d4, st4)
	// The restored group goes on from the snapshot's index, and the state
	// survives a restart.
	next := fillGroup(t, d3, cloneModel(want.m), 3, 9)
	dir := dst.dir
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	dst = openEngineT(t, dir, Options{DisableWAL: true})
	defer dst.Close()
	checkGroup(t, groupT(t, dst, 3), next)
	checkGroup(t, groupT(t, dst, 2), st2)
	checkGroup(t, groupT(t, dst, 4), st4)
	if names := dirNames(t, vfs.Default, dir); len(names) != 1 || names[0] != engineDBName {
		t.Fatalf("engine dir holds %v after restore, want only %s", names, engineDBName)
	}
}

// TestGroupRestoreRejectsDamage feeds Restore damaged streams: each must
// fail with ErrBadSnapshot and leave the group (and its neighbour) as it
// was.
func TestGroupRestoreRejectsDamage(t *testing.T) {
	src := openEngineT(t, t.TempDir(), Options{DisableWAL: true})
	defer src.Close()
	sg := groupT(t, src, 1)
	fillGroup(t, sg, model{}, 50, 4)
	var buf bytes.Buffer
	if _, err := sg.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	snap := buf.Bytes()
	var other bytes.Buffer
	og := groupT(t, src, 2)
	fillGroup(t, og, model{}, 5, 1)
	if _, err := og.WriteSnapshot(&other); err != nil {
		t.Fatal(err)
	}

	dst := openEngineT(t, t.TempDir(), Options{DisableWAL: true})
	defer dst.Close()
	g, n := groupT(t, dst, 1), groupT(t, dst, 2)
	oldG := fillGroup(t, g, model{}, 7, 1)
	oldN := fillGroup(t, n, model{}, 9, 1)

	hdrBytes := len(groupSnapMagic) + 4 + 8 + 8 + 8 + 4
	flip := func(at int) []byte { c := bytes.Clone(snap); c[at] ^= 0x40; return c }
	bigKey := bytes.Clone(snap)
	binary.BigEndian.PutUint32(bigKey[hdrBytes+1:], MaxKeyBytes+1)
	cases := map[string][]byte{
		"empty":            nil,
		"truncated header": snap[:10],
		"truncated body":   snap[:len(snap)/2],
		"no trailer crc":   snap[:len(snap)-2],
		"header bit flip":  flip(len(groupSnapMagic) + 5),
		"body bit flip":    flip(len(snap) / 2),
		"other group":      other.Bytes(),
		"key over limit":   bigKey,
		"store archive":    []byte(snapMagic + "\x00\x00\x00\x02"),
	}
	for name, data := range cases {
		_, err := g.Restore(bytes.NewReader(data))
		if !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("%s: Restore = %v, want ErrBadSnapshot", name, err)
		}
		checkGroup(t, g, oldG)
		checkGroup(t, n, oldN)
	}
	if names := dirNames(t, vfs.Default, dst.dir); len(names) != 1 {
		t.Fatalf("engine dir holds %v after failed restores", names)
	}
}

// TestGroupRestoreOrderAndEmpty checks that keys out of order are refused
// and that an empty group's snapshot restores to an empty group at the
// snapshot's index.
func TestGroupRestoreOrderAndEmpty(t *testing.T) {
	e := openEngineT(t, t.TempDir(), Options{DisableWAL: true})
	defer e.Close()
	g := groupT(t, e, 5)
	// An empty group at index 4: no-op entries only.
	applyG(t, g, withTerm(2, entries(1, nil, nil, nil, nil)))
	var buf bytes.Buffer
	if _, err := g.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	empty := buf.Bytes()

	// A hand-built stream with two keys out of order.
	var bad bytes.Buffer
	sw := &snapWriterForTest{}
	sw.header(5, 9, 3)
	sw.pair("b", "1")
	sw.pair("a", "2")
	bad.Write(sw.end(2))
	fillGroup(t, g, model{}, 10, 3)
	before := g.AppliedIndex()
	if _, err := g.Restore(&bad); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("out-of-order keys: %v, want ErrBadSnapshot", err)
	}
	if g.AppliedIndex() != before {
		t.Fatal("a refused restore moved the applied index")
	}
	// A well-formed hand-built stream restores too (the format is what the
	// package doc says).
	sw = &snapWriterForTest{}
	sw.header(5, 9, 3)
	sw.pair("", "empty key")
	sw.pair("a", "")
	sw.pair("b", "2")
	if _, err := g.Restore(bytes.NewReader(sw.end(3))); err != nil {
		t.Fatal(err)
	}
	checkGroup(t, g, storeState{index: 9, term: 3, m: model{"": "empty key", "a": "", "b": "2"}})
	if _, err := g.Restore(bytes.NewReader(empty)); err != nil {
		t.Fatal(err)
	}
	checkGroup(t, g, storeState{index: 4, term: 2, m: model{}})
}

// snapWriterForTest builds group archives byte by byte, from the format in
// the package doc rather than from WriteSnapshot.
type snapWriterForTest struct{ b []byte }

func (w *snapWriterForTest) header(group, index, term uint64) {
	w.b = append(w.b, groupSnapMagic...)
	w.b = binary.BigEndian.AppendUint32(w.b, 1)
	w.b = binary.BigEndian.AppendUint64(w.b, group)
	w.b = binary.BigEndian.AppendUint64(w.b, index)
	w.b = binary.BigEndian.AppendUint64(w.b, term)
	w.b = binary.BigEndian.AppendUint32(w.b, crc32c(w.b))
}

func (w *snapWriterForTest) pair(k, v string) {
	w.b = append(w.b, 1)
	w.b = binary.BigEndian.AppendUint32(w.b, uint32(len(k)))
	w.b = append(w.b, k...)
	w.b = binary.BigEndian.AppendUint32(w.b, uint32(len(v)))
	w.b = append(w.b, v...)
}

func (w *snapWriterForTest) end(pairs uint64) []byte {
	w.b = append(w.b, 2)
	w.b = binary.BigEndian.AppendUint64(w.b, pairs)
	w.b = binary.BigEndian.AppendUint32(w.b, crc32c(w.b))
	return w.b
}

// TestGroupClosed checks ErrClosed after a view's Close and after the
// engine's, and that a closed view's group can be opened again.
func TestGroupClosed(t *testing.T) {
	e := openEngineT(t, t.TempDir(), Options{DisableWAL: true})
	g := groupT(t, e, 1)
	applyG(t, g, entries(1, putCmd("k", "v")))
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := g.Get([]byte("k")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	g = groupT(t, e, 1)
	if v, ok, err := g.Get([]byte("k")); err != nil || !ok || string(v) != "v" || g.AppliedIndex() != 1 {
		t.Fatalf("reopened view: %q %v %v at %d", v, ok, err, g.AppliedIndex())
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second engine Close: %v", err)
	}
	if err := g.Apply(entries(2, putCmd("k", "w")), make([]Result, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after engine Close: %v", err)
	}
	if _, err := g.WriteSnapshot(io.Discard); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteSnapshot after engine Close: %v", err)
	}
	if _, err := e.Group(2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Group after engine Close: %v", err)
	}
}

// TestFlushAsyncShared checks that FlushAsync returns the group's own
// applied index, that groups asking with nothing written since share one
// flush, and that a write in between starts a new one.
func TestFlushAsyncShared(t *testing.T) {
	e := openEngineT(t, t.TempDir(), Options{DisableWAL: true})
	defer e.Close()
	g1, g2 := groupT(t, e, 1), groupT(t, e, 2)
	applyG(t, g1, entries(1, putCmd("a", "1"), putCmd("b", "2")))
	applyG(t, g2, entries(1, putCmd("a", "1")))
	i1, d1, err := g1.FlushAsync()
	if err != nil || i1 != 2 {
		t.Fatalf("g1.FlushAsync = %d, %v", i1, err)
	}
	i2, d2, err := g2.FlushAsync()
	if err != nil || i2 != 1 {
		t.Fatalf("g2.FlushAsync = %d, %v", i2, err)
	}
	if d1 != d2 {
		t.Fatal("two FlushAsync calls with nothing written between started two flushes")
	}
	<-d1
	applyG(t, g2, entries(2, putCmd("c", "3")))
	_, d3, err := g1.FlushAsync()
	if err != nil {
		t.Fatal(err)
	}
	if d3 == d1 {
		t.Fatal("FlushAsync after a write reused the earlier flush")
	}
	<-d3
}

// TestGroupsConcurrent runs groups' writers, readers, snapshots and
// restores at once (for the race detector, and for deadlocks between a
// group's streams and its restores): each writer owns a group, a reader
// reads every group, group 0 streams snapshots that group 1 keeps
// installing, and at the end every group holds what its writer last wrote.
func TestGroupsConcurrent(t *testing.T) {
	e := openEngineT(t, t.TempDir(), Options{DisableWAL: true})
	defer e.Close()
	const writers, rounds = 3, 40
	gs := make([]*Group, writers+1)
	for i := range gs {
		gs[i] = groupT(t, e, uint64(i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	stop := make(chan struct{})
	models := make([]model, writers)
	// hashes0 holds group 0's hash at each index its writer reached, and
	// restored the index and hash of group 1 after each restore of a
	// snapshot of group 0: every snapshot must be group 0 at one index.
	var hmu sync.Mutex
	hashes0 := map[uint64]uint64{0: modelHash(t, model{})}
	var restored [][2]uint64
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			g, m := gs[w], model{}
			if w == 1 {
				g = gs[writers] // group 1 is the restore target
			}
			for r := 0; r < rounds; r++ {
				first := g.AppliedIndex() + 1
				es := entries(first, workload(m, first, first+4)...)
				if err := g.Apply(es, make([]Result, len(es))); err != nil {
					errs <- err
					return
				}
				if w == 0 {
					h, err := g.Hash() // only this goroutine writes group 0
					if err != nil {
						errs <- err
						return
					}
					hmu.Lock()
					hashes0[g.AppliedIndex()] = h
					hmu.Unlock()
				}
				if r%10 == 9 {
					_, done, err := g.FlushAsync()
					if err != nil {
						errs <- err
						return
					}
					<-done
				}
			}
			models[w] = m
		}(w)
	}
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { // reader
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, g := range gs {
				if _, _, err := g.Get([]byte("key-001")); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	go func() { // snapshots of group 0 into group 1
		defer bg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var buf bytes.Buffer
			if _, err := gs[0].WriteSnapshot(&buf); err != nil {
				errs <- err
				return
			}
			snap := buf.Bytes()
			binary.BigEndian.PutUint64(snap[len(groupSnapMagic)+4:], 1) // addressed to group 1
			hdr := len(groupSnapMagic) + 4 + 8 + 8 + 8
			binary.BigEndian.PutUint32(snap[hdr:], crc32c(snap[:hdr]))
			binary.BigEndian.PutUint32(snap[len(snap)-4:], crc32c(snap[:len(snap)-4]))
			info, err := gs[1].Restore(bytes.NewReader(snap))
			if err != nil {
				errs <- err
				return
			}
			h, err := gs[1].Hash() // only this goroutine writes group 1
			if err != nil {
				errs <- err
				return
			}
			restored = append(restored, [2]uint64{info.Index, h})
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkGroup(t, gs[0], storeState{index: 5 * rounds, term: 1, m: models[0]})
	checkGroup(t, gs[writers], storeState{index: 5 * rounds, term: 1, m: models[1]})
	checkGroup(t, gs[2], storeState{index: 5 * rounds, term: 1, m: models[2]})
	for _, r := range restored {
		if want, ok := hashes0[r[0]]; !ok || want != r[1] {
			t.Fatalf("a snapshot of group 0 at index %d restored to hash %x; group 0 had %x (known: %v)", r[0], r[1], want, ok)
		}
	}
	t.Logf("%d snapshots of group 0 restored into group 1 while the groups were written", len(restored))
}

// TestEngineWithWAL checks the WAL-on mode: FlushAsync syncs Pebble's WAL
// (done is closed at once), and what it covered survives a crash without
// a memtable flush; a Restore is durable too.
func TestEngineWithWAL(t *testing.T) {
	fs := vfs.NewCrashableMem()
	e := openEngineT(t, "eng", Options{FS: fs})
	g1, g2 := groupT(t, e, 1), groupT(t, e, 2)
	m1 := model{}
	st1 := fillGroup(t, g1, m1, 12, 2)
	fillGroup(t, g2, model{}, 4, 1)
	var snap bytes.Buffer
	if _, err := g1.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	snap1 := snap.Bytes()
	binary.BigEndian.PutUint64(snap1[len(groupSnapMagic)+4:], 2) // addressed to group 2
	hdr := len(groupSnapMagic) + 4 + 8 + 8 + 8
	binary.BigEndian.PutUint32(snap1[hdr:], crc32c(snap1[:hdr]))
	binary.BigEndian.PutUint32(snap1[len(snap1)-4:], crc32c(snap1[:len(snap1)-4]))
	if _, err := g2.Restore(bytes.NewReader(snap1)); err != nil {
		t.Fatal(err)
	}
	st1b := fillGroup(t, g1, m1, 3, 2)
	idx, done, err := g1.FlushAsync()
	if err != nil || idx != st1b.index {
		t.Fatalf("FlushAsync = %d, %v; want %d", idx, err, st1b.index)
	}
	select {
	case <-done:
	default:
		t.Fatal("with the WAL on, FlushAsync's done is not closed on return")
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngineT(t, "eng", Options{FS: crashed})
	defer e.Close()
	checkGroup(t, groupT(t, e, 1), st1b)
	checkGroup(t, groupT(t, e, 2), st1)
}

// TestEngineFormatRecord checks that OpenEngine refuses a database that is
// not an engine's (a Store's) or one of another engine format, and that
// the format record sits outside every group's span.
func TestEngineFormatRecord(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{DisableWAL: true})
	apply(t, s, entries(1, putCmd("k", "v")))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	names := dirNames(t, vfs.Default, dir)
	storeDB := vfs.Default.PathJoin(dir, names[len(names)-1]) // db-000001
	fs := vfs.Default
	if err := fs.Rename(storeDB, fs.PathJoin(dir, engineDBName)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenEngine(dir, Options{DisableWAL: true}); !errors.Is(err, ErrOldFormat) {
		t.Fatalf("OpenEngine on a Store's database: %v, want ErrOldFormat", err)
	}

	dir = t.TempDir()
	e := openEngineT(t, dir, Options{DisableWAL: true})
	g := groupT(t, e, MaxGroupID)
	checkGroup(t, g, storeState{m: model{}})
	var rec [4]byte
	binary.BigEndian.PutUint32(rec[:], engineFormatVersion+1)
	if err := e.db.Set(engineFormatKey, rec[:], pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenEngine(dir, Options{DisableWAL: true}); !errors.Is(err, ErrOldFormat) {
		t.Fatalf("OpenEngine on engine format %d: %v, want ErrOldFormat", engineFormatVersion+1, err)
	}
}

// TestRemoveGroup checks that RemoveGroup deletes one group's keys and
// applied record (in memtables and sstables alike), durably, leaves its
// neighbours alone, and refuses a group with an open view.
func TestRemoveGroup(t *testing.T) {
	fs := vfs.NewCrashableMem()
	e := openEngineT(t, "eng", Options{DisableWAL: true, FS: fs})
	g1, g2, g3 := groupT(t, e, 1), groupT(t, e, 2), groupT(t, e, 3)
	st1 := fillGroup(t, g1, model{}, 10, 1)
	m2 := model{}
	fillGroup(t, g2, m2, 20, 1)
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	fillGroup(t, g2, m2, 5, 2) // some of group 2 only in the memtable
	st3 := fillGroup(t, g3, model{}, 7, 1)
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := e.RemoveGroup(2); !errors.Is(err, ErrGroupOpen) {
		t.Fatalf("RemoveGroup with an open view: %v, want ErrGroupOpen", err)
	}
	if err := g2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.RemoveGroup(2); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{}) // a crash right after it returned
	for _, fs := range []vfs.FS{nil, crashed} {
		ee := e
		if fs != nil {
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			ee = openEngineT(t, "eng", Options{DisableWAL: true, FS: fs})
			defer ee.Close()
			g1, g3 = groupT(t, ee, 1), groupT(t, ee, 3)
		}
		checkGroup(t, groupT(t, ee, 2), storeState{m: model{}})
		checkGroup(t, g1, st1)
		checkGroup(t, g3, st3)
	}
}
