package kv

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/internal/crashfs"
)

// The engine's crash tests follow crash_test.go: a scenario on a
// crashfs.FS, two images (strict and torn) at every sync and rename point,
// the engine reopened on each, every group checked against a model.

// reopenEngine opens the engine on a crash image and checks that nothing
// but the database directory is left.
func reopenEngine(t *testing.T, name string, fs vfs.FS) *Engine {
	t.Helper()
	e, err := OpenEngine(crashDir, Options{DisableWAL: true, FS: fs})
	if err != nil {
		t.Fatalf("%s: OpenEngine: %v", name, err)
	}
	if names := dirNames(t, fs, crashDir); len(names) != 1 || names[0] != engineDBName {
		_ = e.Close()
		t.Fatalf("%s: engine dir holds %v, want only %s", name, names, engineDBName)
	}
	return e
}

// hashCache computes model hashes once per state.
type hashCache map[string]uint64

func (c hashCache) of(t testing.TB, key string, st storeState) uint64 {
	h, ok := c[key]
	if !ok {
		h = modelHash(t, st.m)
		c[key] = h
	}
	return h
}

// TestGroupRestoreCrashAtEveryPoint crashes a Restore of group 2 at each
// of its sync and rename points, on an engine where groups 1 and 3 hold
// data too and groups 1 and 2 have batches applied after the last Flush
// (so the memtable holds some of group 2's span and Pebble must flush it
// before the excise). On every image group 2 must be wholly old (at its
// flushed state or its last one) or wholly new, and the other groups at a
// state they passed through, no older than the Flush; at every point after
// Restore returned, group 2 must be new.
func TestGroupRestoreCrashAtEveryPoint(t *testing.T) {
	// The snapshot: group 2 of another engine, in two sstables' worth of
	// history (flushed half way) so it differs from the old state.
	src := openEngineT(t, t.TempDir(), Options{DisableWAL: true})
	sg := groupT(t, src, 2)
	newM := model{}
	fillGroup(t, sg, newM, 80, 3)
	if err := src.Flush(); err != nil {
		t.Fatal(err)
	}
	newSt := fillGroup(t, sg, newM, 40, 6)
	var snap bytes.Buffer
	if _, err := sg.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}

	fsys := crashfs.New()
	e := openEngineT(t, crashDir, Options{DisableWAL: true, FS: fsys})
	gs := map[uint64]*Group{1: groupT(t, e, 1), 2: groupT(t, e, 2), 3: groupT(t, e, 3)}
	models := map[uint64]model{1: {}, 2: {}, 3: {}}
	// states[id] lists the states group id may be found in after a crash.
	states := map[uint64][]storeState{}
	for id, g := range gs {
		states[id] = []storeState{fillGroup(t, g, models[id], 30+int(id), 1)}
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{1, 2} {
		states[id] = append(states[id], fillGroup(t, gs[id], models[id], 7, 2))
	}
	hashes := hashCache{}
	matches := func(g *Group, st storeState) bool {
		return groupDiff(t, g, st, hashes.of(t, fmt.Sprintf("%d/%d", g.ID(), st.index), st)) == ""
	}
	newHash := hashes.of(t, "new", newSt)

	stop := captureImages(fsys, nil)
	if _, err := gs[2].Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	restored := fsys.Points()
	// Work after the restore (a batch in group 3 and a flush), whose
	// crash points must all show group 2 restored.
	states[3] = append(states[3], fillGroup(t, gs[3], models[3], 5, 2))
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	imgs := stop()
	final := fsys.Image(false, 0)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if len(imgs) < 4 {
		t.Fatalf("Restore passed only %d crash points", len(imgs))
	}

	var sawOld, sawNew int
	check := func(name string, fs vfs.FS, mustBeNew bool) {
		e := reopenEngine(t, name, fs)
		defer e.Close()
		for _, id := range []uint64{1, 3} {
			g := groupT(t, e, id)
			ok := false
			for _, st := range states[id] {
				ok = ok || matches(g, st)
			}
			if !ok {
				t.Fatalf("%s: group %d at index %d, not a state it passed through (%v)", name, id, g.AppliedIndex(), states[id])
			}
		}
		g := groupT(t, e, 2)
		if groupDiff(t, g, newSt, newHash) == "" {
			sawNew++
			return
		}
		if mustBeNew {
			t.Fatalf("%s: group 2 not restored: %s", name, groupDiff(t, g, newSt, newHash))
		}
		for _, st := range states[2] {
			if matches(g, st) {
				sawOld++
				return
			}
		}
		t.Fatalf("%s: group 2 at index %d neither wholly old nor wholly new (new: %s)", name, g.AppliedIndex(), groupDiff(t, g, newSt, newHash))
	}
	each(imgs, func(name string, img crashImage, fs *vfs.MemFS) { check(name, fs, img.point.N > restored) })
	check("after Restore returned", final, true)
	after := 0
	for _, img := range imgs {
		if img.point.N > restored {
			after++
		}
	}
	t.Logf("Restore: %d crash points (%d of them after Restore returned), 2 images each: group 2 old in %d, new in %d", len(imgs), after, sawOld, sawNew)
	if sawOld == 0 || sawNew == 0 {
		t.Fatalf("the crash points never showed both states (old %d, new %d)", sawOld, sawNew)
	}
}

// TestEngineFlushCrashAtEveryPoint applies interleaved batches to three
// groups with the WAL off, calls FlushAsync on a rotating group every few
// rounds and waits for it, then Closes. After a crash at any point every
// group must open at an index one of its batches ended at, no lower than
// what a flush that completed before the crash covered for it, holding
// exactly the model's state at that index.
func TestEngineFlushCrashAtEveryPoint(t *testing.T) {
	const rounds, flushEvery = 9, 2
	ids := []uint64{10, 11, 12}
	fsys := crashfs.New()
	e := openEngineT(t, crashDir, Options{DisableWAL: true, FS: fsys})

	// floors[id] is the applied index of id that the last completed flush
	// covered; read at each crash point.
	var mu sync.Mutex
	floors := map[uint64]uint64{}
	type image struct {
		crashImage
		floors map[uint64]uint64
	}
	var imgs []image
	fsys.OnPoint(func(p crashfs.Point) {
		mu.Lock()
		defer mu.Unlock()
		img := image{crashImage{point: p, strict: fsys.Image(false, 0), torn: fsys.Image(true, uint64(p.N))}, map[uint64]uint64{}}
		for id, f := range floors {
			img.floors[id] = f
		}
		imgs = append(imgs, img)
	})

	gs := map[uint64]*Group{}
	models := map[uint64]model{}
	states := map[uint64]map[uint64]storeState{}
	for _, id := range ids {
		gs[id] = groupT(t, e, id)
		models[id] = model{}
		states[id] = map[uint64]storeState{0: {m: model{}}}
	}
	flushes := 0
	for r := 0; r < rounds; r++ {
		for i, id := range ids {
			st := fillGroup(t, gs[id], models[id], 3+(r*5+i*3)%11, uint64(1+r/3))
			states[id][st.index] = st
		}
		if r%flushEvery == flushEvery-1 {
			// Every group's applied index before the flush is covered by it.
			covered := map[uint64]uint64{}
			for _, id := range ids {
				covered[id] = gs[id].AppliedIndex()
			}
			g := gs[ids[flushes%len(ids)]]
			idx, done, err := g.FlushAsync()
			if err != nil {
				t.Fatal(err)
			}
			if idx != covered[g.ID()] {
				t.Fatalf("FlushAsync of group %d says it covers %d, applied %d", g.ID(), idx, covered[g.ID()])
			}
			<-done
			flushes++
			mu.Lock()
			floors = covered
			mu.Unlock()
		}
	}
	if err := e.Close(); err != nil { // Close flushes too
		t.Fatal(err)
	}
	fsys.OnPoint(nil)
	final := fsys.Image(false, 0)
	if len(imgs) < flushes {
		t.Fatalf("only %d crash points for %d flushes", len(imgs), flushes)
	}
	t.Logf("engine flush: %d crash points over %d rounds of %d groups, %d flushes and Close, 2 images each", len(imgs), rounds, len(ids), flushes)

	hashes := hashCache{}
	check := func(name string, fs vfs.FS, floors map[uint64]uint64) {
		e := reopenEngine(t, name, fs)
		defer e.Close()
		for _, id := range ids {
			g := groupT(t, e, id)
			idx := g.AppliedIndex()
			want, ok := states[id][idx]
			switch {
			case !ok:
				t.Fatalf("%s: group %d at index %d, where none of its batches ended", name, id, idx)
			case idx < floors[id]:
				t.Fatalf("%s: group %d at index %d, below %d that a completed flush covered", name, id, idx, floors[id])
			}
			if d := groupDiff(t, g, want, hashes.of(t, fmt.Sprintf("%d/%d", id, idx), want)); d != "" {
				t.Fatalf("%s: %s", name, d)
			}
		}
	}
	for _, img := range imgs {
		check(fmt.Sprintf("crash at %v (strict)", img.point), img.strict, img.floors)
		check(fmt.Sprintf("crash at %v (torn)", img.point), img.torn, img.floors)
	}
	last := map[uint64]uint64{}
	for _, id := range ids {
		last[id] = gs[id].AppliedIndex()
	}
	check("after Close returned", final, last)
}

// TestEngineBootstrapCrashAtEveryPoint crashes the first OpenEngine at each
// point: every image must open as an empty engine that then works across a
// restart.
func TestEngineBootstrapCrashAtEveryPoint(t *testing.T) {
	fsys := crashfs.New()
	stop := captureImages(fsys, nil)
	e := openEngineT(t, crashDir, Options{DisableWAL: true, FS: fsys})
	imgs := stop()
	final := fsys.Image(false, 0)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("engine bootstrap: %d crash points, 2 images each", len(imgs))
	check := func(name string, fs vfs.FS) {
		e := reopenEngine(t, name, fs)
		g := groupT(t, e, 1)
		checkGroup(t, g, storeState{m: model{}})
		applyG(t, g, entries(1, putCmd("k", "v")))
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		e = reopenEngine(t, name+", restarted", fs)
		defer e.Close()
		checkGroup(t, groupT(t, e, 1), storeState{index: 1, term: 1, m: model{"k": "v"}})
	}
	each(imgs, func(name string, _ crashImage, fs *vfs.MemFS) { check(name, fs) })
	check("after OpenEngine returned", final)
}

// TestRemoveGroupCrashAtEveryPoint crashes RemoveGroup (of a group whose
// data spans two flushes, the last one its view's Close) at each point:
// the group must be wholly there or wholly gone, its neighbours as they
// were, and after RemoveGroup returned, gone. (Close flushes, so the
// removed span is never in the memtable; the excise is one manifest
// edit.)
func TestRemoveGroupCrashAtEveryPoint(t *testing.T) {
	fsys := crashfs.New()
	e := openEngineT(t, crashDir, Options{DisableWAL: true, FS: fsys})
	g1, g2, g3 := groupT(t, e, 1), groupT(t, e, 2), groupT(t, e, 3)
	st1 := fillGroup(t, g1, model{}, 12, 1)
	m2 := model{}
	fillGroup(t, g2, m2, 20, 1)
	st3 := fillGroup(t, g3, model{}, 9, 1)
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	st2 := fillGroup(t, g2, m2, 6, 2)
	if err := g2.Close(); err != nil { // makes st2 durable
		t.Fatal(err)
	}
	stop := captureImages(fsys, nil)
	if err := e.RemoveGroup(2); err != nil {
		t.Fatal(err)
	}
	imgs := stop()
	final := fsys.Image(false, 0)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	hashes := hashCache{}
	empty := storeState{m: model{}}
	var sawThere, sawGone int
	check := func(name string, fs vfs.FS, mustBeGone bool) {
		e := reopenEngine(t, name, fs)
		defer e.Close()
		for id, st := range map[uint64]storeState{1: st1, 3: st3} {
			if d := groupDiff(t, groupT(t, e, id), st, hashes.of(t, fmt.Sprint(id), st)); d != "" {
				t.Fatalf("%s: %s", name, d)
			}
		}
		g := groupT(t, e, 2)
		switch {
		case groupDiff(t, g, empty, hashes.of(t, "empty", empty)) == "":
			sawGone++
		case mustBeGone:
			t.Fatalf("%s: group 2 still at index %d after RemoveGroup returned", name, g.AppliedIndex())
		case groupDiff(t, g, st2, hashes.of(t, "2", st2)) == "":
			sawThere++
		default:
			t.Fatalf("%s: group 2 neither wholly there nor gone: %s", name, groupDiff(t, g, st2, hashes.of(t, "2", st2)))
		}
	}
	each(imgs, func(name string, _ crashImage, fs *vfs.MemFS) { check(name, fs, false) })
	check("after RemoveGroup returned", final, true)
	t.Logf("RemoveGroup: %d crash points, 2 images each: group 2 there in %d, gone in %d", len(imgs), sawThere, sawGone)
	if len(imgs) == 0 || sawThere == 0 {
		t.Fatalf("RemoveGroup passed %d crash points, group 2 there in %d images", len(imgs), sawThere)
	}
}
