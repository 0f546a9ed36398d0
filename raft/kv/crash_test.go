package kv

import (
	"bytes"
	"fmt"
	"maps"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/internal/crashfs"
)

// The crash tests run a scenario on a crashfs.FS, take two crash images at
// every sync and rename point (strict: only what was synced; torn: half of
// the unsynced blocks and directory entries too), reopen the store on each
// image and check what it holds against a model.

// crashDir is the store directory inside a crash file system; nested, so
// that Open must make the parents durable too.
const crashDir = "data/kv"

// crashImage is what a crash at one point could leave.
type crashImage struct {
	// point is where the crash happens (just before the operation).
	point crashfs.Point
	// strict holds only synced data; torn holds some unsynced data too.
	strict, torn *vfs.MemFS
	// floor is a test-specific lower bound on what the image must hold,
	// read when the image was taken.
	floor uint64
}

// captureImages makes fsys take both images at every point from now on;
// floor (may be nil) is read at each point. Call the returned stop before
// reading the images; it returns them.
func captureImages(fsys *crashfs.FS, floor func() uint64) (stop func() []crashImage) {
	var imgs []crashImage
	fsys.OnPoint(func(p crashfs.Point) {
		img := crashImage{point: p, strict: fsys.Image(false, 0), torn: fsys.Image(true, uint64(p.N))}
		if floor != nil {
			img.floor = floor()
		}
		imgs = append(imgs, img)
	})
	return func() []crashImage {
		fsys.OnPoint(nil) // takes the FS's lock: imgs is ours from here on
		return imgs
	}
}

// each calls fn for both images of every crash image, naming them.
func each(imgs []crashImage, fn func(name string, img crashImage, fs *vfs.MemFS)) {
	for _, img := range imgs {
		fn(fmt.Sprintf("crash at %v (strict)", img.point), img, img.strict)
		fn(fmt.Sprintf("crash at %v (torn)", img.point), img, img.torn)
	}
}

// storeState is everything a store's state is compared on.
type storeState struct {
	// index and term are the applied index and term.
	index, term uint64
	// m holds every user key and value.
	m model
}

func (st storeState) String() string {
	return fmt.Sprintf("index %d term %d (%d keys)", st.index, st.term, len(st.m))
}

// stateDiff says how s differs from want, or "" if it does not: applied
// index and term, every key of want, and the hash over all user keys
// (which catches keys want does not have).
func stateDiff(t testing.TB, s *Store, want storeState, wantHash uint64) string {
	t.Helper()
	if s.AppliedIndex() != want.index || s.AppliedTerm() != want.term {
		return fmt.Sprintf("store at index %d term %d, want %v", s.AppliedIndex(), s.AppliedTerm(), want)
	}
	for k, v := range want.m {
		got, ok, err := s.Get([]byte(k))
		if err != nil || !ok || string(got) != v {
			return fmt.Sprintf("Get(%q) = %q, %v, %v; want %q (state %v)", k, got, ok, err, v, want)
		}
	}
	h, err := s.Hash()
	if err != nil || h != wantHash {
		return fmt.Sprintf("Hash = %x, %v; want %x: keys beyond state %v", h, err, wantHash, want)
	}
	return ""
}

// reopen opens the store on a crash image; an error fails the test.
func reopen(t *testing.T, name string, fs vfs.FS) *Store {
	t.Helper()
	s, err := Open(crashDir, Options{DisableWAL: true, FS: fs})
	if err != nil {
		t.Fatalf("%s: Open: %v", name, err)
	}
	checkNoLeftovers(t, s)
	return s
}

// TestRestoreCrashAtEveryPoint crashes Restore at each of its sync and
// rename points. Every image must open to exactly the old state or exactly
// the new one; a strict image taken up to the CURRENT rename must hold the
// old one, and the image after Restore returned the new one.
//
// The snapshot holds one sstable: with two overlapping ones, Pebble
// compacts them while Restore opens the new database and writes (and
// syncs) a new table, which would hide a missing sync of the restored
// files.
func TestRestoreCrashAtEveryPoint(t *testing.T) {
	snap, newModel, newInfo := snapshotFixtureFlushedAt(t, 0)
	fsys := crashfs.New()
	s := openT(t, crashDir, Options{DisableWAL: true, FS: fsys})
	oldModel := oldState(t, s)
	if err := s.Flush(); err != nil { // the old state is durable before the restore
		t.Fatal(err)
	}
	oldSt := storeState{index: oldIndex, term: 1, m: oldModel}
	newSt := storeState{index: newInfo.Index, term: newInfo.Term, m: newModel}
	oldHash, newHash := modelHash(t, oldModel), modelHash(t, newModel)

	stop := captureImages(fsys, nil)
	if _, err := s.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	imgs := stop()
	final := fsys.Image(false, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	switchAt := 0 // the point of the rename that installs CURRENT
	for _, img := range imgs {
		if img.point.Op == crashfs.OpRename && fsys.PathBase(img.point.Path) == currentName {
			switchAt = img.point.N
		}
	}
	if switchAt == 0 || len(imgs) < 8 {
		t.Fatalf("Restore passed %d points, none of them the CURRENT rename", len(imgs))
	}
	t.Logf("Restore: %d crash points (CURRENT renamed at #%d), 2 images each", len(imgs), switchAt)
	each(imgs, func(name string, img crashImage, fs *vfs.MemFS) {
		s := reopen(t, name, fs)
		defer s.Close()
		dOld, dNew := stateDiff(t, s, oldSt, oldHash), stateDiff(t, s, newSt, newHash)
		switch {
		case dOld != "" && dNew != "":
			t.Fatalf("%s: neither the old state (%s) nor the new (%s)", name, dOld, dNew)
		case fs == img.strict && img.point.N <= switchAt && dOld != "":
			t.Fatalf("%s: before the switch was durable, but not the old state: %s", name, dOld)
		}
	})
	s = reopen(t, "after Restore returned", final)
	defer s.Close()
	if d := stateDiff(t, s, newSt, newHash); d != "" {
		t.Fatalf("after Restore returned: %s", d)
	}
}

// TestFlushCrashAtEveryPoint is the "kv flush" scenario: batches applied
// with the WAL off, a Flush every few batches, then Close. After a crash
// at any point the store must open at some applied index that a batch
// ended at, no lower than the last Flush that returned before the crash,
// and hold exactly the model's state at that index.
func TestFlushCrashAtEveryPoint(t *testing.T) {
	const batches, flushEvery = 12, 3
	fsys := crashfs.New()
	s := openT(t, crashDir, Options{DisableWAL: true, FS: fsys})
	var durable atomic.Uint64 // AppliedIndex before the last Flush that returned
	stop := captureImages(fsys, durable.Load)

	states := map[uint64]storeState{0: {m: model{}}}
	m := model{}
	next := uint64(1)
	for b := 0; b < batches; b++ {
		n := uint64(5 + 7*b%17) // varied batch sizes, deterministic
		term := uint64(1 + b/2) // a new term every other batch
		es := withTerm(term, entries(next, workload(m, next, next+n-1)...))
		last := next + n - 1
		apply(t, s, es)
		states[last] = storeState{index: last, term: term, m: maps.Clone(m)}
		next = last + 1
		if b%flushEvery == flushEvery-1 {
			idx := s.AppliedIndex()
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			durable.Store(idx)
		}
	}
	if err := s.Close(); err != nil { // Close flushes too
		t.Fatal(err)
	}
	imgs := stop()
	final := fsys.Image(false, 0)
	t.Logf("Flush: %d crash points over %d batches, %d Flush calls and Close, 2 images each", len(imgs), batches, batches/flushEvery)
	if len(imgs) < batches/flushEvery {
		t.Fatalf("only %d crash points", len(imgs))
	}

	hashes := map[uint64]uint64{}
	hashOf := func(st storeState) uint64 {
		h, ok := hashes[st.index]
		if !ok {
			h = modelHash(t, st.m)
			hashes[st.index] = h
		}
		return h
	}
	check := func(name string, fs vfs.FS, floor uint64) {
		s := reopen(t, name, fs)
		defer s.Close()
		idx := s.AppliedIndex()
		want, ok := states[idx]
		switch {
		case !ok:
			t.Fatalf("%s: store at index %d, where no batch ended", name, idx)
		case idx < floor:
			t.Fatalf("%s: store at index %d, below %d that a returned Flush made durable", name, idx, floor)
		}
		if d := stateDiff(t, s, want, hashOf(want)); d != "" {
			t.Fatalf("%s: %s", name, d)
		}
	}
	each(imgs, func(name string, img crashImage, fs *vfs.MemFS) { check(name, fs, img.floor) })
	check("after Close returned", final, next-1)
}

// TestBootstrapCrashAtEveryPoint crashes the first Open of a fresh store
// (creating its directory, db-1 and the first CURRENT) at each point.
// Every image must open as an empty store that then works; the image after
// Open returned must hold CURRENT, so a restart is not a fresh bootstrap.
func TestBootstrapCrashAtEveryPoint(t *testing.T) {
	fsys := crashfs.New()
	stop := captureImages(fsys, nil)
	s := openT(t, crashDir, Options{DisableWAL: true, FS: fsys})
	imgs := stop()
	final := fsys.Image(false, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("bootstrap: %d crash points, 2 images each", len(imgs))
	if len(imgs) < 3 {
		t.Fatalf("only %d crash points", len(imgs))
	}
	empty := storeState{m: model{}}
	emptyHash := modelHash(t, empty.m)
	check := func(name string, fs vfs.FS) {
		s := reopen(t, name, fs)
		if d := stateDiff(t, s, empty, emptyHash); d != "" {
			t.Fatalf("%s: %s", name, d)
		}
		apply(t, s, entries(1, putCmd("k", "v")))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = reopen(t, name+", restarted", fs)
		defer s.Close()
		want := storeState{index: 1, term: 1, m: model{"k": "v"}}
		if d := stateDiff(t, s, want, modelHash(t, want.m)); d != "" {
			t.Fatalf("%s: after one apply and restart: %s", name, d)
		}
	}
	each(imgs, func(name string, _ crashImage, fs *vfs.MemFS) { check(name, fs) })
	if _, err := final.Stat(final.PathJoin(crashDir, currentName)); err != nil {
		t.Fatalf("after Open returned, CURRENT is not durable: %v", err)
	}
	check("after Open returned", final)
}
