package wal

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var genCorpus = flag.Bool("wal.gencorpus", false, "rewrite the committed seed corpus of FuzzSegmentReader")

// FuzzSegmentReader feeds arbitrary bytes to the segment reader and the
// replay. It must not panic, must report only records whose CRC checks out
// (verified here independently), must account for every byte it accepts,
// and must classify the rest as clean end, torn tail (last segment only) or
// corruption.
func FuzzSegmentReader(f *testing.F) {
	for _, s := range seedSegments() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSegmentImage(t, data)
		// The CRC shields the replay from random bytes; a second pass with
		// the CRCs (and the header's) made valid lets the fuzzer reach the
		// replay's own checks.
		checkSegmentImage(t, fixCRCs(data))
	})
}

// fixCRCs returns a copy of data with the segment header's CRC and every
// record CRC it can find (walking by the length fields) recomputed.
func fixCRCs(data []byte) []byte {
	b := append([]byte(nil), data...)
	if len(b) < segmentHeaderBytes {
		return b
	}
	binary.LittleEndian.PutUint32(b[0:], segmentMagic)
	binary.LittleEndian.PutUint16(b[4:], formatVersion)
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	for off := segmentHeaderBytes; off+recordHeaderBytes <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[off+4:]))
		if n > len(b)-off-recordHeaderBytes {
			break
		}
		end := off + recordHeaderBytes + n
		binary.LittleEndian.PutUint32(b[off:], crc32.Checksum(b[off+4:end], castagnoli))
		off = end
	}
	return b
}

// checkSegmentImage scans one image as a sealed and as a last segment and
// checks the reader's promises.
func checkSegmentImage(t *testing.T, data []byte) {
	{
		for _, last := range []bool{false, true} {
			h, hok := decodeSegmentHeader(data)
			st := &replayState{start: max(h.firstIndex, 1)}
			prevEnd := int64(segmentHeaderBytes)
			end, torn, err := scanSegment("fuzz", data, last, func(r record, off int64, size int) string {
				if off != prevEnd {
					t.Fatalf("record at %d, previous ended at %d", off, prevEnd)
				}
				raw := data[off : off+int64(size)]
				if crc32.Checksum(raw[4:], castagnoli) != binary.LittleEndian.Uint32(raw) {
					t.Fatalf("record at %d returned with a bad CRC", off)
				}
				if int(binary.LittleEndian.Uint32(raw[4:])) != size-recordHeaderBytes || len(r.payload) != size-recordHeaderBytes {
					t.Fatalf("record at %d: length field and size disagree", off)
				}
				prevEnd = off + int64(size)
				return st.apply(r, h.seq, off, size)
			})
			if st.start < st.markerIndex+1 {
				t.Fatalf("replay invariant broken: start %d, marker %d", st.start, st.markerIndex)
			}
			if !hok {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("bad header accepted: %v", err)
				}
				continue
			}
			if err != nil {
				var ce *CorruptError
				if !errors.As(err, &ce) || ce.Offset < segmentHeaderBytes || ce.Offset > int64(len(data)) {
					t.Fatalf("error %v does not name a valid offset", err)
				}
				continue
			}
			if end != prevEnd || end > int64(len(data)) {
				t.Fatalf("end %d, records end at %d, len %d", end, prevEnd, len(data))
			}
			if torn && !last {
				t.Fatal("torn tail reported for a sealed segment")
			}
			if !torn && !allZero(data[end:]) {
				t.Fatalf("clean end at %d but non-zero bytes follow", end)
			}
		}
	}
}

// seedSegments are small valid and damaged segment images.
func seedSegments() [][]byte {
	var b []byte
	b = appendSegmentHeader(b, segmentHeader{seq: 1, firstIndex: 1})
	b = appendMarkerRecord(b, recCompact, 0, 0, nil)
	b = appendU64Record(b, recHardState, 1, 2, 0)
	for i := uint64(1); i <= 5; i++ {
		b = appendEntryRecord(b, i, 1, 0, []byte(fmt.Sprintf("entry-%d", i)))
	}
	b = appendU64Record(b, recTruncate, 4)
	b = appendEntryRecord(b, 4, 2, 1, []byte("conflict"))
	b = appendMarkerRecord(b, recCompact, 2, 1, []byte("base at 2"))
	b = appendMarkerRecord(b, recReset, 10, 3, []byte("base at 10"))
	b = appendEntryRecord(b, 11, 3, 2, nil)
	valid := append(b, make([]byte, 64)...)
	torn := append([]byte(nil), b[:len(b)-7]...)
	flipped := append([]byte(nil), valid...)
	flipped[len(b)/2] ^= 4
	var hole []byte
	hole = appendSegmentHeader(hole, segmentHeader{seq: 3, firstIndex: 50})
	hole = appendMarkerRecord(hole, recCompact, 10, 1, []byte("b10"))
	hole = appendEntryRecord(hole, 50, 1, 0, []byte("x"))
	hole = appendMarkerRecord(hole, recCompact, 49, 1, nil)
	huge := appendSegmentHeader(nil, segmentHeader{seq: 1, firstIndex: 1})
	huge = binary.LittleEndian.AppendUint32(huge, 0)
	huge = binary.LittleEndian.AppendUint32(huge, 1<<31)
	huge = append(huge, byte(recEntry), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	return [][]byte{valid, torn, flipped, hole, huge, b[:segmentHeaderBytes], nil}
}

// TestGenCorpus writes the seed corpus files when -wal.gencorpus is set.
func TestGenCorpus(t *testing.T) {
	if !*genCorpus {
		t.Skip("run with -wal.gencorpus to rewrite testdata/fuzz/FuzzSegmentReader")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzSegmentReader")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seedSegments() {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
