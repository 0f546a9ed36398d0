package wal

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
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
// last records (file shortened, or tail zeroed in place) and checks that
// recovery yields exactly the longest valid prefix; and it flips a bit at
// every byte of them: a damaged record followed by valid ones is
// corruption naming the file and offset, a damaged last record is cut.
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
		var r recInfo
		isLast := false
		for i, ri := range recs {
			if ri.off <= off && off < ri.end {
				r, isLast = ri, i == len(recs)-1
			}
		}
		// A flip in the length field that claims an extent past the data
		// reads as a torn (incomplete) record: a known limit of the rule.
		claimsPast := r.off+recordHeaderBytes+int64(binary.LittleEndian.Uint32(flipped[r.off+4:])) > nonZeroEnd(flipped)
		if isLast || claimsPast {
			// The damaged record is cut; the records before it recover.
			last, hs := expectAt(r.off, false)
			expectRecovered(t, fsys, dir, last, hs, "bit flip in the last record")
			continue
		}
		_, err := Open(dir, Options{Logger: quietLogger, FS: fsys})
		var ce *CorruptError
		if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.File != lastSeg || ce.Offset != r.off {
			t.Fatalf("bit flip at %d in the record at %d, valid records after it: Open: %v; want a CorruptError at %s offset %d", off, r.off, err, lastSeg, r.off)
		}
	}
	restore(pristine)
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

// TestRecoverLastSegmentTornVsCorrupt: in the last segment, a zeroed
// sector (an unsynced block that never reached the disk, while later ones
// did) reads as a torn tail even with valid records after it, and the
// prefix before it recovers; a bit flip in a middle record followed by
// valid records, or a record whose CRC holds but whose base length is over
// the limit, is a CorruptError naming the file and offset.
func TestRecoverLastSegmentTornVsCorrupt(t *testing.T) {
	fsys, dir, segs := recTestLog(t)
	lastSeg := segs[len(segs)-1]
	pristine := readFile(t, fsys, lastSeg)
	h, _ := decodeSegmentHeader(pristine)
	recs := scanPristine(t, lastSeg, pristine, h.firstIndex-1, wire.HardState{})
	defer writeFile(t, fsys, lastSeg, pristine)
	wantCorrupt := func(what string, off int64) {
		t.Helper()
		_, err := Open(dir, Options{Logger: quietLogger, FS: fsys})
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.File != lastSeg || ce.Offset != off {
			t.Fatalf("%s: Open: %v; want a CorruptError at %s offset %d", what, err, lastSeg, off)
		}
	}

	// A zeroed sector in the middle, valid records after it.
	sector := (recs[len(recs)/2].off + sectorBytes - 1) &^ (sectorBytes - 1)
	if sector+sectorBytes > recs[len(recs)-1].off {
		t.Fatalf("segment too short for the test: sector at %d, last record at %d", sector, recs[len(recs)-1].off)
	}
	img := append([]byte(nil), pristine...)
	clear(img[sector : sector+sectorBytes])
	writeFile(t, fsys, lastSeg, img)
	var keep recInfo // the last record that ends before the zeroed sector
	for _, r := range recs {
		if r.end <= sector {
			keep = r
		}
	}
	expectRecovered(t, fsys, dir, keep.last, keep.hs, "zeroed sector")
	if got := readFile(t, fsys, lastSeg); !allZero(got[keep.end:]) {
		t.Fatal("the cut left non-zero bytes after the torn record")
	}

	// A bit flip in a middle record's data.
	mid := recs[len(recs)/2]
	img = append([]byte(nil), pristine...)
	img[mid.end-1] ^= 0x20
	writeFile(t, fsys, lastSeg, img)
	wantCorrupt("bit flip in a middle record", mid.off)

	// A compact record whose base length is beyond maxBaseBytes, its CRC
	// made valid: the payload must hold exactly the bytes its length says
	// and no more than the limit, wherever the record is.
	var compact int64 = -1
	for _, r := range recs {
		if r.end-r.off >= int64(markerRecordBytes(0)) && recordType(pristine[r.off+8]) == recCompact {
			compact = r.off
			break
		}
	}
	if compact < 0 {
		t.Fatal("no compact record in the last segment")
	}
	img = append([]byte(nil), pristine...)
	binary.LittleEndian.PutUint32(img[compact+recordHeaderBytes+16:], maxBaseBytes+1)
	end := compact + int64(recordHeaderBytes) + int64(binary.LittleEndian.Uint32(img[compact+4:]))
	binary.LittleEndian.PutUint32(img[compact:], crc32.Checksum(img[compact+4:end], castagnoli))
	writeFile(t, fsys, lastSeg, img)
	wantCorrupt("base length over the limit", compact)
}
