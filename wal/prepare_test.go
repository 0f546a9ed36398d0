package wal

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// appendUntil appends single-entry batches after LastIndex until cond holds
// (bounded, so a log that never rolls fails instead of looping forever) and
// returns the entries appended.
func appendUntil(t *testing.T, l *Log, term uint64, what string, cond func(Stats) bool) []wire.Entry {
	t.Helper()
	var out []wire.Entry
	for i := 0; !cond(l.Stats()); i++ {
		if i == 10000 {
			t.Fatalf("appended %d entries without %s", i, what)
		}
		next := l.LastIndex() + 1
		es := mkEntries(next, next+1, term)
		if err := l.Append(es, nil); err != nil {
			t.Fatal(err)
		}
		out = append(out, es...)
	}
	return out
}

// dirNames lists dir's entries.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestRollWithAndWithoutPreparedSegment rolls into fallocated segments
// while preparation fails, then into prepared ones, then both again, and
// checks every entry after reopening. A prepared segment has the full
// segment size and Close leaves no prepared file behind.
func TestRollWithAndWithoutPreparedSegment(t *testing.T) {
	dir := t.TempDir()
	ffs := &faultFS{noSync: true, failPrep: true}
	o := testOpts()
	o.SegmentBytes = minSegmentBytes
	o.FS = ffs
	l := mustOpen(t, dir, o)
	var want []wire.Entry

	// Preparation fails: every roll falls back to a fallocated segment.
	want = append(want, appendUntil(t, l, 1, "3 fallocated rolls", func(s Stats) bool { return s.SegmentsFallocated >= 3 })...)
	if st := l.Stats(); st.SegmentsZeroFilled != 0 {
		t.Fatalf("%d zero-filled segments while preparation fails", st.SegmentsZeroFilled)
	}
	if _, err := os.Stat(filepath.Join(dir, preparedSegmentName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("prepared file exists although its creation fails: %v", err)
	}

	// Preparation works again: the next fallback roll retries it, and each
	// roll after a prepared segment is ready uses it.
	ffs.set(func(f *faultFS) { f.failPrep = false })
	fall := l.Stats().SegmentsFallocated
	want = append(want, appendUntil(t, l, 1, "a retrying roll", func(s Stats) bool { return s.SegmentsFallocated > fall || s.SegmentsZeroFilled > 0 })...)
	for k := uint64(1); k <= 3; k++ {
		waitFor(t, "a prepared segment", l.prep.isReady)
		zf := l.Stats().SegmentsZeroFilled
		want = append(want, appendUntil(t, l, 1, "a zero-filled roll", func(s Stats) bool { return s.SegmentsZeroFilled > zf })...)
		if st := l.Stats(); st.SegmentsZeroFilled != zf+1 {
			t.Fatalf("stats %+v: want %d zero-filled segments", st, zf+1)
		}
		// The active segment came from the prepared file: full size.
		l.mu.Lock()
		seq := l.mu.curSeq
		l.mu.Unlock()
		fi, err := os.Stat(segmentName(dir, seq))
		if err != nil || fi.Size() != minSegmentBytes {
			t.Fatalf("segment %d from a prepared file: %v, %v", seq, fi, err)
		}
	}

	// Both again: the ready one is taken, its successor cannot be made.
	waitFor(t, "a prepared segment", l.prep.isReady)
	ffs.set(func(f *faultFS) { f.failPrep = true })
	st0 := l.Stats()
	want = append(want, appendUntil(t, l, 1, "a zero-filled then a fallocated roll", func(s Stats) bool { return s.SegmentsFallocated > st0.SegmentsFallocated })...)
	if st := l.Stats(); st.SegmentsZeroFilled != st0.SegmentsZeroFilled+1 {
		t.Fatalf("stats %+v: the ready segment was not used first (before: %+v)", st, st0)
	}
	checkEntries(t, l, want)

	// Close removes a prepared file nobody used.
	ffs.set(func(f *faultFS) { f.failPrep = false })
	want = append(want, appendUntil(t, l, 1, "a retrying roll", func(s Stats) bool { return s.SegmentsFallocated > st0.SegmentsFallocated+1 })...)
	waitFor(t, "a prepared segment", l.prep.isReady)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range dirNames(t, dir) {
		if _, ok := parseSegmentBase(n); !ok && n != lockFileName {
			t.Fatalf("Close left %s behind", n)
		}
	}
	l = mustOpen(t, dir, testOpts())
	defer l.Close()
	checkEntries(t, l, want)
}

// TestPreparedSegmentLeftoverIgnored plants, as a prepared file left over
// by a crash, the very segment that would continue the log (valid header,
// valid records with the next indexes) and other content, and checks that
// Open removes it and never reads it as log data.
func TestPreparedSegmentLeftoverIgnored(t *testing.T) {
	const n = 40
	base := t.TempDir()
	o := testOpts()
	o.FS = &faultFS{noSync: true}
	l := mustOpen(t, base, o)
	if err := l.Append(mkEntries(1, n+1, 1), &wire.HardState{Term: 1, Commit: n}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segsBefore := dirNames(t, base)

	// The continuation: the same log with n+1..n+20 appended, whose first
	// new segment is what a roll of base would have produced.
	cont := t.TempDir()
	copyDir(t, base, cont)
	l = mustOpen(t, cont, o)
	if err := l.Append(mkEntries(n+1, n+21, 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var next []byte
	for _, name := range dirNames(t, cont) {
		if _, ok := parseSegmentBase(name); ok && !slices.Contains(segsBefore, name) {
			b, err := os.ReadFile(filepath.Join(cont, name))
			if err != nil {
				t.Fatal(err)
			}
			next = b
			break
		}
	}
	if next == nil {
		t.Fatal("the continuation made no new segment")
	}

	for _, c := range []struct {
		name string
		data []byte
	}{
		{"next-segment", next},
		{"garbage", bytes.Repeat([]byte{0xa5}, 5000)},
		{"partly-zeroed", append(make([]byte, 3000), next[:100]...)},
		{"empty", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, base, dir)
			prep := filepath.Join(dir, preparedSegmentName)
			if err := os.WriteFile(prep, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			ffs := &faultFS{noSync: true, failPrep: true} // so that no new prepared file appears
			o := testOpts()
			o.FS = ffs
			l := mustOpen(t, dir, o)
			if _, err := os.Stat(prep); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("leftover prepared file not removed: %v", err)
			}
			checkEntries(t, l, mkEntries(1, n+1, 1))
			// The log continues in a fresh segment, with other data.
			if err := l.Append(mkEntries(n+1, n+6, 2), nil); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, dir, testOpts())
			defer l.Close()
			checkEntries(t, l, append(mkEntries(1, n+1, 1), mkEntries(n+1, n+6, 2)...))
		})
	}
}

// copyDir copies the regular files of src into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	for _, name := range dirNames(t, src) {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPreparerPaced: while a segment is being written, the preparer stays
// within prepHeadStartBytes + prepPaceFactor × (bytes written to it), and
// it finishes once the writer has written enough, before the roll.
func TestPreparerPaced(t *testing.T) {
	const segBytes = 3 * prepHeadStartBytes
	o := testOpts()
	o.SegmentBytes = segBytes
	o.FS = &faultFS{noSync: true}
	l := mustOpen(t, t.TempDir(), o)
	defer l.Close()
	// Before the first roll nothing is written: unpaced.
	waitFor(t, "the first prepared segment", l.prep.isReady)
	if err := l.Append(mkEntries(1, 2, 1), nil); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.SegmentsZeroFilled != 1 {
		t.Fatalf("stats %+v: the first roll did not take the prepared segment", st)
	}
	// The next one gets its head start, and no more.
	waitFor(t, "the head start", func() bool { return l.prep.filledBytes.Load() >= prepHeadStartBytes })
	if filled, limit := l.prep.filledBytes.Load(), prepHeadStartBytes+prepPaceFactor*l.prep.activeBytes.Load()+prepChunkBytes; filled > limit || l.prep.isReady() {
		t.Fatalf("preparer at %d bytes (ready %v), pace allows %d", filled, l.prep.isReady(), limit)
	}
	// Writing a third of the segment lets it finish.
	big := make([]byte, 64<<10)
	for i := uint64(2); l.Stats().Bytes < segBytes/3; i++ {
		if err := l.Append([]wire.Entry{{Index: i, Term: 1, Data: big}}, nil); err != nil {
			t.Fatal(err)
		}
		if filled, limit := l.prep.filledBytes.Load(), prepHeadStartBytes+prepPaceFactor*l.prep.activeBytes.Load()+prepChunkBytes; filled > limit {
			t.Fatalf("preparer at %d bytes, pace allows %d", filled, limit)
		}
	}
	waitFor(t, "the paced preparation to finish", l.prep.isReady)
	if st := l.Stats(); st.SegmentsZeroFilled != 1 || st.SegmentsFallocated != 0 {
		t.Fatalf("stats %+v: no roll expected yet", st)
	}
}
