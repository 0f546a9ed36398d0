package wal

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftpipe/raftpipe/wire"
)

// recTestLog builds a closed log of single-entry batches (a hard state
// every fifth) spanning several segments on an in-memory file system and
// returns it, the log's directory and its segment paths.
func recTestLog(t *testing.T) (fsys vfs.FS, dir string, segs []string) {
	t.Helper()
	fsys, dir = vfs.NewMem(), testDir
	o := testOpts()
	o.SegmentBytes = minSegmentBytes
	o.FS = fsys
	l := mustOpen(t, dir, o)
	for i := uint64(1); i <= 150; i++ {
		var hs *wire.HardState
		if i%5 == 0 {
			hs = &wire.HardState{Term: 1, Commit: i}
		}
		if err := l.Append(mkEntries(i, i+1, 1), hs); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs = segmentPaths(t, fsys, dir)
	if len(segs) < 3 {
		t.Fatalf("want at least 3 segments, got %d", len(segs))
	}
	return fsys, dir, segs
}

// recInfo is one record of a pristine segment, with the log's state after it.
type recInfo struct {
	off, end int64
	last     uint64 // last entry index once this record is applied
	hs       wire.HardState
}

// scanPristine lists the records of a valid segment and the state after
// each, starting from the state (last, hs) the earlier segments left.
func scanPristine(t *testing.T, name string, data []byte, last uint64, hs wire.HardState) []recInfo {
	t.Helper()
	var out []recInfo
	_, _, err := scanSegment(name, data, true, func(r record, off int64, size int) string {
		switch r.typ {
		case recEntry:
			last = u64(r.payload, 0)
		case recHardState:
			hs = wire.HardState{Term: u64(r.payload, 0), Vote: u64(r.payload, 1), Commit: u64(r.payload, 2)}
		}
		out = append(out, recInfo{off: off, end: off + int64(size), last: last, hs: hs})
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// expectRecovered opens dir and checks it holds entries 1..last and hs.
func expectRecovered(t *testing.T, fsys vfs.FS, dir string, last uint64, hs wire.HardState, what string) {
	t.Helper()
	o := testOpts()
	o.FS = fsys
	l, err := Open(dir, o)
	if err != nil {
		t.Fatalf("%s: Open: %v", what, err)
	}
	defer l.Close()
	if got := l.LastIndex(); got != last {
		t.Fatalf("%s: LastIndex %d, want %d", what, got, last)
	}
	if got := l.HardState(); got != hs {
		t.Fatalf("%s: hard state %+v, want %+v", what, got, hs)
	}
	checkEntries(t, l, mkEntries(1, last+1, 1))
}

// TestRecoverTornTailEveryOffset cuts the last segment at every byte of its
// last records (file shortened, or tail zeroed in place) and flips a bit at
// every byte, and checks recovery yields exactly the longest valid prefix.
func TestRecoverTornTailEveryOffset(t *testing.T) {
	fsys, dir, segs := recTestLog(t)
	lastSeg := segs[len(segs)-1]
	pristine := readFile(t, fsys, lastSeg)
	// State at the start of the last segment: from its header's first index
	// and the preamble (the first records restate marker and hard state).
	h, _ := decodeSegmentHeader(pristine)
	recs := scanPristine(t, lastSeg, pristine, h.firstIndex-1, wire.HardState{})
	if len(recs) < 10 {
		t.Fatalf("last segment has only %d records", len(recs))
	}
	const tailRecords = 8
	from := recs[len(recs)-tailRecords].off
	to := recs[len(recs)-1].end
	// expectAt is the state after the longest prefix of records that are
	// intact when everything from cut on is lost (zeroed=false) or zeroed
	// (zeroed=true: a record whose lost bytes were zeros anyway survives).
	expectAt := func(cut int64, zeroed bool) (uint64, wire.HardState) {
		last, hs := h.firstIndex-1, recs[1].hs
		for _, r := range recs {
			if r.end > cut && !(zeroed && allZero(pristine[max(cut, r.off):r.end])) {
				break
			}
			last, hs = r.last, r.hs
		}
		return last, hs
	}
	restore := func(b []byte) { writeFile(t, fsys, lastSeg, b) }
	for cut := from; cut <= to; cut++ {
		last, hs := expectAt(cut, false)
		restore(pristine[:cut])
		expectRecovered(t, fsys, dir, last, hs, "shortened")
		expectRecovered(t, fsys, dir, last, hs, "reopened")
		last, hs = expectAt(cut, true)
		zeroed := append([]byte(nil), pristine...)
		clear(zeroed[cut:])
		restore(zeroed)
		expectRecovered(t, fsys, dir, last, hs, "zeroed")
		// A second open after the cut must find the same (now clean) log.
		expectRecovered(t, fsys, dir, last, hs, "reopened")
	}
	for off := from; off < to; off++ {
		flipped := append([]byte(nil), pristine...)
		flipped[off] ^= 1 << (off % 8)
		restore(flipped)
		// The damaged record and everything after it are dropped.
		var start int64
		for _, r := range recs {
			if r.off <= off && off < r.end {
				start = r.off
			}
		}
		last, hs := expectAt(start, false)
		expectRecovered(t, fsys, dir, last, hs, "bit flip")
	}
	// A torn or zeroed header: the whole last segment is dropped.
	prev := readFile(t, fsys, segs[len(segs)-2])
	ph, _ := decodeSegmentHeader(prev)
	prevRecs := scanPristine(t, segs[len(segs)-2], prev, ph.firstIndex-1, wire.HardState{})
	pr := prevRecs[len(prevRecs)-1]
	for _, cut := range []int64{0, 1, 7, 31} {
		zeroed := append([]byte(nil), pristine...)
		clear(zeroed[cut:segmentHeaderBytes])
		restore(zeroed)
		expectRecovered(t, fsys, dir, pr.last, pr.hs, "torn header")
		if exists(fsys, lastSeg) {
			t.Fatal("last segment with a torn header not removed")
		}
	}
}

// TestRecoverSealedCorruption: damage in a sealed (non-last) segment is an
// error naming the file and the offset, never skipped or repaired.
func TestRecoverSealedCorruption(t *testing.T) {
	fsys, dir, segs := recTestLog(t)
	sealed := segs[1]
	pristine := readFile(t, fsys, sealed)
	h, _ := decodeSegmentHeader(pristine)
	recs := scanPristine(t, sealed, pristine, h.firstIndex-1, wire.HardState{})
	mid := recs[len(recs)/2]
	cases := []struct {
		name   string
		mutate func(b []byte) []byte
		off    int64
	}{
		{"bit-flip", func(b []byte) []byte { b[mid.off+recordHeaderBytes+3] ^= 0x10; return b }, mid.off},
		{"zeroed-record", func(b []byte) []byte { clear(b[mid.off:mid.end]); return b }, mid.off},
		{"cut-mid-record", func(b []byte) []byte { return b[:mid.off+5] }, mid.off},
		{"bad-header", func(b []byte) []byte { b[2] ^= 1; return b }, 0},
		{"cut-at-record", func(b []byte) []byte { return b[:mid.off] }, 0}, // next segment no longer continues it
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.mutate(append([]byte(nil), pristine...))
			writeFile(t, fsys, sealed, b)
			defer writeFile(t, fsys, sealed, pristine)
			_, err := Open(dir, Options{Logger: quietLogger, FS: fsys})
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want a CorruptError", err)
			}
			wantFile := sealed
			if c.name == "cut-at-record" {
				wantFile = segs[2]
			}
			if ce.File != wantFile || ce.Offset != c.off {
				t.Fatalf("error names %s at %d, want %s at %d (%v)", ce.File, ce.Offset, wantFile, c.off, err)
			}
		})
	}
	t.Run("missing-middle-segment", func(t *testing.T) {
		b := readFile(t, fsys, segs[1])
		fsys.Remove(segs[1])
		defer writeFile(t, fsys, segs[1], b)
		if _, err := Open(dir, Options{Logger: quietLogger, FS: fsys}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open with a segment missing: %v", err)
		}
	})
	t.Run("missing-first-segment", func(t *testing.T) {
		b := readFile(t, fsys, segs[0])
		fsys.Remove(segs[0])
		defer writeFile(t, fsys, segs[0], b)
		if _, err := Open(dir, Options{Logger: quietLogger, FS: fsys}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open with the first segment missing: %v", err)
		}
	})
	// The pristine log still opens.
	expectRecovered(t, fsys, dir, 150, wire.HardState{Term: 1, Commit: 150}, "pristine")
}
