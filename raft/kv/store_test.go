package kv

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/wire"
)

func TestApplySemantics(t *testing.T) {
	s := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer s.Close()

	res := apply(t, s, entries(1,
		putCmd("a", "1"),                         // 1
		putCmd("b", "2"),                         // 2
		delCmd("b"),                              // 3
		delCmd("never"),                          // 4: delete of a missing key is OK
		casCmd("a", "1", "10"),                   // 5: succeeds
		casCmd("a", "1", "11"),                   // 6: fails, current 10
		casAbsentCmd("a", "x"),                   // 7: fails, a exists
		casAbsentCmd("c", "3"),                   // 8: succeeds
		casCmd("missing", "", "v"),               // 9: fails, absent (Value nil)
		putCmd("e", ""),                          // 10: empty value
		casCmd("e", "", "full"),                  // 11: expect empty matches present-empty
		[]byte{0xff},                             // 12: garbage: bad request, still applied
		nil,                                      // 13: empty entry: no-op
		cmd(wire.ClientRequest{Op: wire.OpNoop}), // 14
		cmd(wire.ClientRequest{Op: wire.OpGet, Key: []byte("a")}),    // 15: replicated get
		cmd(wire.ClientRequest{Op: wire.OpGet, Key: []byte("nope")}), // 16
	))
	want := []Result{
		{}, {}, {}, {},
		{}, {Status: wire.StatusCASFailed, Value: []byte("10")},
		{Status: wire.StatusCASFailed, Value: []byte("10")}, {},
		{Status: wire.StatusCASFailed}, {}, {},
		{Status: wire.StatusBadRequest}, {}, {},
		{Value: []byte("10")}, {Status: wire.StatusNotFound},
	}
	for i := range want {
		if res[i].Status != want[i].Status || !bytes.Equal(res[i].Value, want[i].Value) ||
			(res[i].Value == nil) != (want[i].Value == nil) {
			t.Errorf("entry %d: result %+v, want %+v", i+1, res[i], want[i])
		}
	}
	checkModel(t, s, model{"a": "10", "c": "3", "e": "full"})
	if got := s.AppliedIndex(); got != 16 {
		t.Fatalf("AppliedIndex = %d, want 16", got)
	}

	// Noop and conf-change entries only advance the index.
	res = apply(t, s, []wire.Entry{
		{Index: 17, Term: 2, Type: wire.EntryNoop},
		{Index: 18, Term: 3, Type: wire.EntryConfChange, Data: []byte("cc")},
	})
	if res[0].Status != wire.StatusOK || res[1].Status != wire.StatusOK || res[0].Value != nil || res[1].Value != nil {
		t.Fatalf("noop/confchange results %+v", res)
	}
	if s.AppliedIndex() != 18 || s.AppliedTerm() != 3 {
		t.Fatalf("AppliedIndex %d AppliedTerm %d", s.AppliedIndex(), s.AppliedTerm())
	}
	// A present key with an empty value reads as present and empty.
	apply(t, s, withTerm(3, entries(19, putCmd("empty", ""))))
	if v, ok, err := s.Get([]byte("empty")); err != nil || !ok || v == nil || len(v) != 0 {
		t.Fatalf("Get(empty) = %q, %v, %v", v, ok, err)
	}
	if _, ok, err := s.Get([]byte("b")); err != nil || ok {
		t.Fatalf("deleted key b still readable: ok=%v err=%v", ok, err)
	}
}

// TestCASSeesSameBatchWrites checks that a CAS compares against writes made
// earlier in the same Apply call, not only against committed state.
func TestCASSeesSameBatchWrites(t *testing.T) {
	s := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer s.Close()
	res := apply(t, s, entries(1,
		putCmd("k", "v1"),
		casCmd("k", "v1", "v2"),
		casCmd("k", "v1", "v3"),
		delCmd("k"),
		casAbsentCmd("k", "v4"),
	))
	if res[1].Status != wire.StatusOK || res[2].Status != wire.StatusCASFailed || string(res[2].Value) != "v2" || res[4].Status != wire.StatusOK {
		t.Fatalf("results %+v", res)
	}
	checkModel(t, s, model{"k": "v4"})
}

func TestReplayIsNoop(t *testing.T) {
	s := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer s.Close()
	m := model{}
	data := workload(m, 1, 20)
	apply(t, s, entries(1, data[:10]...))
	h10, _ := s.Hash()
	// Replaying exactly what was applied changes nothing, even with
	// commands that would change the state if applied again.
	res := apply(t, s, entries(1, data[:10]...))
	for i, r := range res {
		if r.Status != wire.StatusUnknown {
			t.Fatalf("skipped entry %d: result %+v, want StatusUnknown", i+1, r)
		}
	}
	if h, _ := s.Hash(); h != h10 || s.AppliedIndex() != 10 {
		t.Fatalf("replay changed state: hash %x->%x index %d", h10, h, s.AppliedIndex())
	}
	// An overlapping batch applies only its new suffix.
	res = apply(t, s, entries(5, data[4:]...))
	if res[0].Status != wire.StatusUnknown || res[5].Status != wire.StatusUnknown || res[6].Status != wire.StatusOK {
		t.Fatalf("overlap results %+v", res[:8])
	}
	if s.AppliedIndex() != 20 {
		t.Fatalf("AppliedIndex %d, want 20", s.AppliedIndex())
	}
	checkModel(t, s, m)
}

func TestApplyGapPanics(t *testing.T) {
	s := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer s.Close()
	apply(t, s, entries(1, putCmd("a", "1")))
	for name, es := range map[string][]wire.Entry{
		"gap after applied":      entries(3, putCmd("a", "2")),
		"gap inside batch":       {{Index: 2, Term: 1, Type: wire.EntryNoop}, {Index: 4, Term: 1, Type: wire.EntryNoop}},
		"term below applied":     {{Index: 2, Term: 0, Type: wire.EntryNoop}},
		"term down inside batch": {{Index: 2, Term: 2, Type: wire.EntryNoop}, {Index: 3, Term: 1, Type: wire.EntryNoop}},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "invariant") {
					t.Errorf("%s: recover() = %v, want an invariant panic", name, r)
				}
			}()
			_ = s.Apply(es, make([]Result, len(es)))
		}()
	}
	// The store is still usable and nothing from the panicking calls landed.
	apply(t, s, entries(2, putCmd("b", "2")))
	checkModel(t, s, model{"a": "1", "b": "2"})
}

// TestRestart covers both durability modes: with the WAL off, state is
// durable up to the last Flush and a crash loses a suffix, consistently
// with the applied index; with the WAL on, applied state survives a close
// without Flush. In both cases replaying the log restores the rest.
func TestRestart(t *testing.T) {
	for _, disableWAL := range []bool{true, false} {
		t.Run(fmt.Sprintf("DisableWAL=%v", disableWAL), func(t *testing.T) {
			dir := t.TempDir()
			o := Options{DisableWAL: disableWAL}
			s := openT(t, dir, o)
			m := model{}
			data := workload(m, 1, 60)
			// The log: entries 1..30 in term 2, 31..60 in term 4.
			log := entries(1, data...)
			withTerm(2, log[:30])
			withTerm(4, log[30:])
			apply(t, s, log[:30])
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			apply(t, s, log[30:])
			s.crashClose()

			s = openT(t, dir, o)
			idx := s.AppliedIndex()
			wantIdx, wantTerm := uint64(60), uint64(4)
			if disableWAL {
				// The unflushed batch sat in the memtable: lost with the crash.
				wantIdx, wantTerm = 30, 2
			}
			if idx != wantIdx || s.AppliedTerm() != wantTerm {
				t.Fatalf("after crash: AppliedIndex %d AppliedTerm %d, want %d %d", idx, s.AppliedTerm(), wantIdx, wantTerm)
			}
			mAt := model{}
			workload(mAt, 1, idx)
			checkModel(t, s, mAt)

			// Replay the whole log as the node would; only the missing
			// suffix applies.
			apply(t, s, log)
			checkModel(t, s, m)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// A clean Close flushes: everything survives.
			s = openT(t, dir, o)
			defer s.Close()
			if s.AppliedIndex() != 60 || s.AppliedTerm() != 4 {
				t.Fatalf("after clean restart: AppliedIndex %d AppliedTerm %d", s.AppliedIndex(), s.AppliedTerm())
			}
			checkModel(t, s, m)
		})
	}
}

func TestClosed(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{
		"Close": s.Close(),
		"Apply": s.Apply(entries(1, putCmd("a", "b")), make([]Result, 1)),
		"Flush": s.Flush(),
	}
	_, checks["Restore"] = s.Restore(strings.NewReader(""))
	_, _, checks["Get"] = s.Get([]byte("a"))
	_, checks["Hash"] = s.Hash()
	_, checks["WriteSnapshot"] = s.WriteSnapshot(&bytes.Buffer{})
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestOpenRejectsCorruptCurrent(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir+"/"+currentName, "garbage\n")
	if s, err := Open(dir, Options{}); err == nil {
		s.Close()
		t.Fatal("Open accepted a CURRENT that names no database")
	}
	// A CURRENT naming a missing database is an error, not a fresh store.
	writeFile(t, dir+"/"+currentName, dbDirName(42)+"\n")
	if s, err := Open(dir, Options{}); err == nil {
		s.Close()
		t.Fatal("Open created an empty database where CURRENT named a missing one")
	}
}

func TestHashCoversUserDataOnly(t *testing.T) {
	a := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer a.Close()
	b := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer b.Close()
	apply(t, a, entries(1, putCmd("k", "v")))
	apply(t, b, entries(1, cmd(wire.ClientRequest{Op: wire.OpNoop}), putCmd("k", "v"), putCmd("x", "y"), delCmd("x")))
	ha, _ := a.Hash()
	hb, _ := b.Hash()
	if ha != hb {
		t.Fatalf("same user data, different index: hashes %x != %x", ha, hb)
	}
	// Moving a byte between key and value must change the hash.
	apply(t, a, entries(2, delCmd("k"), putCmd("kv", "")))
	if ha2, _ := a.Hash(); ha2 == hb {
		t.Fatalf("hash ignores the key/value boundary")
	}
}

// TestOpenRefusesOldFormat rewrites a store's database into format 1 (no
// format record, a membership record under the old meta key) and checks
// that Open refuses it with ErrOldFormat and says which format it found,
// rather than starting with the membership silently ignored.
func TestOpenRefusesOldFormat(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{DisableWAL: true})
	apply(t, s, entries(1, putCmd("k", "v")))
	num := s.dbNum
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(dbPath(vfs.Default, dir, num), &pebble.Options{FS: vfs.Default})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Delete(formatKey, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Set(legacyMetaKey, []byte("members"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, Options{DisableWAL: true})
	if !errors.Is(err, ErrOldFormat) || !strings.Contains(err.Error(), "format 1") {
		t.Fatalf("Open of a format-1 store = %v, want ErrOldFormat naming format 1", err)
	}
}
