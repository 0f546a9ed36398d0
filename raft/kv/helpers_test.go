package kv

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/wire"
)

// crashClose closes the store without flushing, as close to a crash as a
// test can get in-process: with the WAL off, whatever sits in the memtable
// is lost, exactly as it would be if the process died.
func (s *Store) crashClose() {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	_ = s.closeDB()
}

func openT(t testing.TB, dir string, o Options) *Store {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func cmd(r wire.ClientRequest) []byte { return EncodeCommand(nil, &r) }

func putCmd(k, v string) []byte {
	return cmd(wire.ClientRequest{Op: wire.OpPut, Key: []byte(k), Value: []byte(v)})
}

func delCmd(k string) []byte { return cmd(wire.ClientRequest{Op: wire.OpDelete, Key: []byte(k)}) }

func casCmd(k, expect, v string) []byte {
	return cmd(wire.ClientRequest{Op: wire.OpCAS, Key: []byte(k), Value: []byte(v), Expect: []byte(expect)})
}

func casAbsentCmd(k, v string) []byte {
	return cmd(wire.ClientRequest{Op: wire.OpCAS, Flags: wire.FlagExpectAbsent, Key: []byte(k), Value: []byte(v)})
}

// entries numbers data as normal entries from first on.
func entries(first uint64, data ...[]byte) []wire.Entry {
	es := make([]wire.Entry, len(data))
	for i, d := range data {
		es[i] = wire.Entry{Term: 1, Index: first + uint64(i), Type: wire.EntryNormal, Data: d}
	}
	return es
}

// withTerm sets the term of every entry in es and returns es.
func withTerm(term uint64, es []wire.Entry) []wire.Entry {
	for i := range es {
		es[i].Term = term
	}
	return es
}

func apply(t testing.TB, s *Store, es []wire.Entry) []Result {
	t.Helper()
	res := make([]Result, len(es))
	if err := s.Apply(es, res); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

// model is the deliberately simple reference: a map, advanced by the puts
// produced by putsUpTo.
type model map[string]string

// putsUpTo returns the commands for indexes first..last of a deterministic
// workload (puts, overwrites and deletes over a small key space) and
// applies them to m.
func workload(m model, first, last uint64) [][]byte {
	var out [][]byte
	for i := first; i <= last; i++ {
		k := fmt.Sprintf("key-%03d", i%37)
		if i%5 == 0 {
			delete(m, k)
			out = append(out, delCmd(k))
			continue
		}
		v := fmt.Sprintf("val-%d", i)
		m[k] = v
		out = append(out, putCmd(k, v))
	}
	return out
}

// checkModel asserts that s holds exactly m's keys and values.
func checkModel(t testing.TB, s *Store, m model) {
	t.Helper()
	for k, v := range m {
		got, ok, err := s.Get([]byte(k))
		if err != nil || !ok || string(got) != v {
			t.Fatalf("Get(%q) = %q, %v, %v; want %q", k, got, ok, err, v)
		}
	}
	want := modelHash(t, m)
	if got, err := s.Hash(); err != nil || got != want {
		t.Fatalf("Hash = %x, %v; want %x (a store holding exactly the model)", got, err, want)
	}
}

// modelHash computes the hash a store holding exactly m would have, by
// loading m into a throwaway in-memory store.
func modelHash(t testing.TB, m model) uint64 {
	t.Helper()
	s := openT(t, "model", Options{DisableWAL: true, FS: vfs.NewMem()})
	defer s.Close()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var data [][]byte
	for _, k := range keys {
		data = append(data, putCmd(k, m[k]))
	}
	if len(data) > 0 {
		apply(t, s, entries(1, data...))
	}
	h, err := s.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// dirNames lists dir's entries, sorted.
func dirNames(t testing.TB, fsys vfs.FS, dir string) []string {
	t.Helper()
	names, err := fsys.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}

// checkNoLeftovers asserts that s's directory holds CURRENT and exactly one
// database.
func checkNoLeftovers(t testing.TB, s *Store) {
	t.Helper()
	names := dirNames(t, s.fs, s.dir)
	if len(names) != 2 || names[0] != currentName || !bytes.HasPrefix([]byte(names[1]), []byte(dbDirPrefix)) {
		t.Fatalf("store dir holds %v, want CURRENT and one db-<n>", names)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
