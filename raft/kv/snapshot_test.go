package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// snapshotFixture builds a store at index 200 (with deletes, in two
// sstables) and returns its snapshot stream and model.
func snapshotFixture(t *testing.T) (snap []byte, m model, info SnapshotInfo) {
	return snapshotFixtureFlushedAt(t, 100)
}

// fixtureTerm is the term of the fixture's entries from index 101 on (those
// before are in term 1), so the snapshot's term is not the default.
const fixtureTerm = 7

// snapshotFixtureFlushedAt is snapshotFixture with a Flush after index
// flushAt (0: none, so the snapshot holds a single sstable).
func snapshotFixtureFlushedAt(t *testing.T, flushAt uint64) (snap []byte, m model, info SnapshotInfo) {
	t.Helper()
	src := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer src.Close()
	m = model{}
	if flushAt > 0 {
		apply(t, src, entries(1, workload(m, 1, flushAt)...))
		if err := src.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	apply(t, src, withTerm(fixtureTerm, entries(flushAt+1, workload(m, flushAt+1, 200)...)))
	var buf bytes.Buffer
	info, err := src.WriteSnapshot(&buf)
	if err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	if info.Index != 200 || info.Term != fixtureTerm {
		t.Fatalf("WriteSnapshot covers %+v, want index 200 term %d", info, fixtureTerm)
	}
	checkNoLeftovers(t, src) // the checkpoint directory is gone
	return buf.Bytes(), m, info
}

// oldIndex is the applied index oldState leaves.
const oldIndex = 3

// oldState fills a store with state unlike the fixture's.
func oldState(t *testing.T, s *Store) model {
	t.Helper()
	m := model{}
	apply(t, s, entries(1, putCmd("old-a", "1"), putCmd("old-b", "2"), putCmd("key-001", "stale")))
	for k, v := range map[string]string{"old-a": "1", "old-b": "2", "key-001": "stale"} {
		m[k] = v
	}
	return m
}

func TestSnapshotRestore(t *testing.T) {
	snap, m, want := snapshotFixture(t)
	index := want.Index
	dir := t.TempDir()
	dst := openT(t, dir, Options{DisableWAL: true})
	oldState(t, dst)
	got, err := dst.Restore(bytes.NewReader(snap))
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got != want {
		t.Fatalf("Restore installed %+v, want %+v", got, want)
	}
	if dst.AppliedIndex() != index || dst.AppliedTerm() != want.Term {
		t.Fatalf("restored AppliedIndex %d AppliedTerm %d, want %+v", dst.AppliedIndex(), dst.AppliedTerm(), want)
	}
	checkModel(t, dst, m) // identical hash, and the old keys are gone
	checkNoLeftovers(t, dst)

	// The restored store applies on from the snapshot and survives restart.
	apply(t, dst, withTerm(fixtureTerm+1, entries(index+1, putCmd("after", "restore"))))
	m["after"] = "restore"
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	dst = openT(t, dir, Options{DisableWAL: true})
	defer dst.Close()
	if dst.AppliedIndex() != index+1 || dst.AppliedTerm() != fixtureTerm+1 {
		t.Fatalf("after restart AppliedIndex %d AppliedTerm %d", dst.AppliedIndex(), dst.AppliedTerm())
	}
	checkModel(t, dst, m)

	// A snapshot of a restored store restores again (db-<n> numbering moves on).
	var buf bytes.Buffer
	info, err := dst.WriteSnapshot(&buf)
	if err != nil || info.Index != index+1 || info.Term != fixtureTerm+1 {
		t.Fatalf("WriteSnapshot = %+v, %v", info, err)
	}
	// ReadSnapshotInfo reads the header, and nothing past it.
	hdrInfo, err := ReadSnapshotInfo(bytes.NewReader(buf.Bytes()))
	if err != nil || hdrInfo != info {
		t.Fatalf("ReadSnapshotInfo = %+v, %v; want %+v", hdrInfo, err, info)
	}
	r := bytes.NewReader(buf.Bytes())
	if _, err := ReadSnapshotInfo(r); err != nil {
		t.Fatal(err)
	}
	if read, want := buf.Len()-r.Len(), snapHeaderBytes; read != want {
		t.Fatalf("ReadSnapshotInfo read %d bytes, the header is %d", read, want)
	}
	third := openT(t, t.TempDir(), Options{})
	defer third.Close()
	if _, err := third.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	checkModel(t, third, m)
	if third.AppliedIndex() != index+1 || third.AppliedTerm() != fixtureTerm+1 {
		t.Fatalf("third store at index %d term %d", third.AppliedIndex(), third.AppliedTerm())
	}
}

// TestRestoreRejectsDamage flips bytes across the stream and truncates it
// at many lengths: every damaged stream must return ErrBadSnapshot and
// leave the old state as it was.
func TestRestoreRejectsDamage(t *testing.T) {
	snap, _, _ := snapshotFixture(t)
	dir := t.TempDir()
	s := openT(t, dir, Options{DisableWAL: true})
	defer s.Close()
	old := oldState(t, s)
	oldHash, _ := s.Hash()

	var damaged [][]byte
	var what []string
	// Every byte of the header and first record header, then a spread
	// through the rest, and the very last bytes.
	positions := []int{}
	for i := 0; i < 64 && i < len(snap); i++ {
		positions = append(positions, i)
	}
	for i := 64; i < len(snap); i += len(snap)/40 + 1 {
		positions = append(positions, i)
	}
	for i := len(snap) - 8; i < len(snap); i++ {
		positions = append(positions, i)
	}
	for _, p := range positions {
		d := bytes.Clone(snap)
		d[p] ^= 0x5a
		damaged = append(damaged, d)
		what = append(what, fmt.Sprintf("flip at %d of %d", p, len(snap)))
	}
	for _, n := range []int{0, 1, 7, 8, 20, 30, len(snap) / 3, len(snap) / 2, len(snap) - 5, len(snap) - 1} {
		damaged = append(damaged, snap[:n])
		what = append(what, fmt.Sprintf("truncated to %d of %d", n, len(snap)))
	}
	for i, d := range damaged {
		_, err := s.Restore(bytes.NewReader(d))
		if !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("%s: Restore = %v, want ErrBadSnapshot", what[i], err)
		}
		if s.AppliedIndex() != oldIndex {
			t.Fatalf("%s: state moved to index %d", what[i], s.AppliedIndex())
		}
		if h, _ := s.Hash(); h != oldHash {
			t.Fatalf("%s: hash changed", what[i])
		}
		checkNoLeftovers(t, s)
	}
	checkModel(t, s, old)
	// And the undamaged stream still restores.
	if _, err := s.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreRejectsHostileLengths checks the limits: a header or record
// claiming huge lengths is refused before anything is allocated.
func TestRestoreRejectsHostileLengths(t *testing.T) {
	s := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer s.Close()
	hdr := func() []byte {
		b := []byte(snapMagic)
		b = binary.BigEndian.AppendUint32(b, snapVersion)
		b = binary.BigEndian.AppendUint64(b, 5)    // index
		return binary.BigEndian.AppendUint64(b, 2) // term
	}
	withCRC := func(b []byte) []byte {
		return binary.BigEndian.AppendUint32(b, crc32c(b))
	}
	fileRec := func(name string, size uint64) []byte {
		b := []byte{snapKindFile}
		b = binary.BigEndian.AppendUint16(b, uint16(len(name)))
		b = append(b, name...)
		return binary.BigEndian.AppendUint64(b, size)
	}
	cases := map[string][]byte{
		"name over limit": append(withCRC(hdr()), fileRec(string(bytes.Repeat([]byte("n"), maxSnapNameBytes+1)), 1)...),
		"size over limit": append(withCRC(hdr()), fileRec("000001.sst", maxSnapFileBytes+1)...),
		"path in name":    append(withCRC(hdr()), fileRec("../escape", 1)...),
		"unknown kind":    append(withCRC(hdr()), 9),
		"old version 1":   append([]byte(snapMagic), 0, 0, 0, 1),
		"old version 2":   append([]byte(snapMagic), 0, 0, 0, 2),
		"unknown version": append([]byte(snapMagic), 0, 0, 0, 4),
		"no files":        append(withCRC(hdr()), snapKindEnd, 0, 0, 0, 0),
		"header only":     withCRC(hdr()),
	}
	for name, b := range cases {
		if _, err := s.Restore(bytes.NewReader(b)); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: Restore = %v, want ErrBadSnapshot", name, err)
		}
		_, err := ReadSnapshotInfo(bytes.NewReader(b))
		if badHeader := strings.Contains(name, "version"); badHeader != errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: ReadSnapshotInfo = %v (bad header: %v)", name, err, badHeader)
		}
	}
	checkNoLeftovers(t, s)
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// snapHeaderBytes is the size of an archive header: magic, version,
// index, term, crc.
const snapHeaderBytes = len(snapMagic) + 4 + 8 + 8 + 4

// TestRestoreChecksHeaderAgainstData rewrites the header of a good archive
// to claim another index or term, with every CRC recomputed so that
// only the comparison with the restored database can catch it: Restore
// must refuse it and keep the old state. ReadSnapshotInfo, which does not
// look at the data, reports the claim.
func TestRestoreChecksHeaderAgainstData(t *testing.T) {
	snap, _, info := snapshotFixture(t)
	forge := func(claim SnapshotInfo) []byte {
		var b []byte
		b = append(b, snapMagic...)
		b = binary.BigEndian.AppendUint32(b, snapVersion)
		b = binary.BigEndian.AppendUint64(b, claim.Index)
		b = binary.BigEndian.AppendUint64(b, claim.Term)
		b = binary.BigEndian.AppendUint32(b, crc32c(b))
		rest := snap[snapHeaderBytes : len(snap)-4] // records, without the stream crc
		b = append(b, rest...)
		return binary.BigEndian.AppendUint32(b, crc32c(b))
	}
	probe := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer probe.Close()
	if _, err := probe.Restore(bytes.NewReader(forge(info))); err != nil {
		t.Fatalf("forging the true header: Restore = %v (the forger is wrong)", err)
	}
	s := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer s.Close()
	old := oldState(t, s)
	for name, claim := range map[string]SnapshotInfo{
		"index": {Index: info.Index + 1, Term: info.Term},
		"term":  {Index: info.Index, Term: info.Term - 1},
	} {
		forged := forge(claim)
		if got, err := ReadSnapshotInfo(bytes.NewReader(forged)); err != nil || got != claim {
			t.Fatalf("%s: ReadSnapshotInfo = %+v, %v; want the claim %+v", name, got, err, claim)
		}
		if _, err := s.Restore(bytes.NewReader(forged)); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("%s: Restore of a header that lies = %v, want ErrBadSnapshot", name, err)
		}
		if s.AppliedIndex() != oldIndex || s.AppliedTerm() != 1 {
			t.Fatalf("%s: state moved to index %d term %d", name, s.AppliedIndex(), s.AppliedTerm())
		}
		checkNoLeftovers(t, s)
	}
	checkModel(t, s, old)
}

// TestConcurrentReadsDuringRestore runs Gets, Hash and WriteSnapshot while
// Apply and Restore proceed, for the race detector and to check a reader
// always sees one whole state.
func TestConcurrentReadsDuringRestore(t *testing.T) {
	snap, _, _ := snapshotFixture(t)
	s := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer s.Close()
	apply(t, s, entries(1, putCmd("key-001", "old")))

	var stop atomic.Bool
	var wg sync.WaitGroup
	var readErr atomic.Value
	wg.Add(2)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			v, ok, err := s.Get([]byte("key-001"))
			if err != nil || !ok || len(v) == 0 {
				readErr.Store(fmt.Sprintf("Get = %q %v %v", v, ok, err))
				return
			}
			if _, err := s.Hash(); err != nil {
				readErr.Store(err.Error())
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if _, err := s.WriteSnapshot(io.Discard); err != nil {
				readErr.Store(err.Error())
				return
			}
		}
	}()
	for i := 0; i < 5; i++ {
		if _, err := s.Restore(bytes.NewReader(snap)); err != nil {
			t.Fatal(err)
		}
		next := s.AppliedIndex() + 1
		apply(t, s, withTerm(fixtureTerm, entries(next, putCmd("key-001", "x"), cmd(wire.ClientRequest{Op: wire.OpNoop}))))
	}
	stop.Store(true)
	wg.Wait()
	if e := readErr.Load(); e != nil {
		t.Fatal(e)
	}
}
