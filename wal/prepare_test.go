package wal

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/raftpipe/raftpipe/internal/testutil"
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

// TestRollWithAndWithoutPreparedSegment rolls into fallocated segments
// while preparation fails, then into prepared ones, then both again, and
// checks every entry after reopening. A prepared segment has the full
// segment size and Close leaves no prepared file behind.
func TestRollWithAndWithoutPreparedSegment(t *testing.T) {
	dir := testDir
	o, in := faultOpts()
	in.set(failPrep)
	o.SegmentBytes = minSegmentBytes
	l := mustOpen(t, dir, o)
	var want []wire.Entry

	// Preparation fails: every roll falls back to a fallocated segment.
	want = append(want, appendUntil(t, l, 1, "3 fallocated rolls", func(s Stats) bool { return s.SegmentsFallocated >= 3 })...)
	if st := l.Stats(); st.SegmentsZeroFilled != 0 {
		t.Fatalf("%d zero-filled segments while preparation fails", st.SegmentsZeroFilled)
	}
	if exists(o.FS, filepath.Join(dir, preparedSegmentName)) {
		t.Fatal("prepared file exists although its creation fails")
	}

	// Preparation works again: the next fallback roll retries it, and each
	// roll after a prepared segment is ready uses it.
	in.set(nil)
	fall := l.Stats().SegmentsFallocated
	want = append(want, appendUntil(t, l, 1, "a retrying roll", func(s Stats) bool { return s.SegmentsFallocated > fall || s.SegmentsZeroFilled > 0 })...)
	for k := uint64(1); k <= 3; k++ {
		testutil.WaitFor(t, walWait, "a prepared segment", l.prep.isReady)
		zf := l.Stats().SegmentsZeroFilled
		want = append(want, appendUntil(t, l, 1, "a zero-filled roll", func(s Stats) bool { return s.SegmentsZeroFilled > zf })...)
		if st := l.Stats(); st.SegmentsZeroFilled != zf+1 {
			t.Fatalf("stats %+v: want %d zero-filled segments", st, zf+1)
		}
		// The active segment came from the prepared file: full size.
		l.mu.Lock()
		seq := l.mu.curSeq
		l.mu.Unlock()
		fi, err := o.FS.Stat(segmentName(dir, seq))
		if err != nil || fi.Size() != minSegmentBytes {
			t.Fatalf("segment %d from a prepared file: %v, %v", seq, fi, err)
		}
	}

	// Both again: the ready one is taken, its successor cannot be made.
	testutil.WaitFor(t, walWait, "a prepared segment", l.prep.isReady)
	in.set(failPrep)
	st0 := l.Stats()
	want = append(want, appendUntil(t, l, 1, "a zero-filled then a fallocated roll", func(s Stats) bool { return s.SegmentsFallocated > st0.SegmentsFallocated })...)
	if st := l.Stats(); st.SegmentsZeroFilled != st0.SegmentsZeroFilled+1 {
		t.Fatalf("stats %+v: the ready segment was not used first (before: %+v)", st, st0)
	}
	checkEntries(t, l, want)

	// Close removes a prepared file nobody used.
	in.set(nil)
	want = append(want, appendUntil(t, l, 1, "a retrying roll", func(s Stats) bool { return s.SegmentsFallocated > st0.SegmentsFallocated+1 })...)
	testutil.WaitFor(t, walWait, "a prepared segment", l.prep.isReady)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range dirNames(t, o.FS, dir) {
		if _, ok := parseSegmentBase(n); !ok && n != lockFileName {
			t.Fatalf("Close left %s behind", n)
		}
	}
	l = mustOpen(t, dir, o)
	defer l.Close()
	checkEntries(t, l, want)
}

// TestPreparedSegmentLeftoverIgnored plants, as a prepared file left over
// by a crash, the very segment that would continue the log (valid header,
// valid records with the next indexes) and other content, and checks that
// Open removes it and never reads it as log data.
func TestPreparedSegmentLeftoverIgnored(t *testing.T) {
	const n = 40
	fsys := vfs.NewMem()
	base := "base"
	o := testOpts()
	o.FS = fsys
	l := mustOpen(t, base, o)
	if err := l.Append(mkEntries(1, n+1, 1), &wire.HardState{Term: 1, Commit: n}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segsBefore := dirNames(t, fsys, base)

	// The continuation: the same log with n+1..n+20 appended, whose first
	// new segment is what a roll of base would have produced.
	cont := "cont"
	copyDir(t, fsys, base, cont)
	l = mustOpen(t, cont, o)
	if err := l.Append(mkEntries(n+1, n+21, 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var next []byte
	for _, name := range dirNames(t, fsys, cont) {
		if _, ok := parseSegmentBase(name); ok && !slices.Contains(segsBefore, name) {
			next = readFile(t, fsys, filepath.Join(cont, name))
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
			dir := "case-" + c.name
			copyDir(t, fsys, base, dir)
			prep := filepath.Join(dir, preparedSegmentName)
			writeFile(t, fsys, prep, c.data)
			in := &injector{}
			in.set(failPrep) // so that no new prepared file appears
			o := testOpts()
			o.FS = errorfs.Wrap(fsys, in)
			l := mustOpen(t, dir, o)
			if exists(fsys, prep) {
				t.Fatal("leftover prepared file not removed")
			}
			checkEntries(t, l, mkEntries(1, n+1, 1))
			// The log continues in a fresh segment, with other data.
			if err := l.Append(mkEntries(n+1, n+6, 2), nil); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			o.FS = fsys
			l = mustOpen(t, dir, o)
			defer l.Close()
			checkEntries(t, l, append(mkEntries(1, n+1, 1), mkEntries(n+1, n+6, 2)...))
		})
	}
}

// TestPreparerPaced: while a segment is being written, the preparer stays
// within prepHeadStartBytes + prepPaceFactor × (bytes written to it), and
// it finishes once the writer has written enough, before the roll.
func TestPreparerPaced(t *testing.T) {
	const segBytes = 3 * prepHeadStartBytes
	o := memOpts()
	o.SegmentBytes = segBytes
	l := mustOpen(t, testDir, o)
	defer l.Close()
	// Before the first roll nothing is written: unpaced.
	testutil.WaitFor(t, walWait, "the first prepared segment", l.prep.isReady)
	if err := l.Append(mkEntries(1, 2, 1), nil); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.SegmentsZeroFilled != 1 {
		t.Fatalf("stats %+v: the first roll did not take the prepared segment", st)
	}
	// The next one gets its head start, and no more.
	testutil.WaitFor(t, walWait, "the head start", func() bool { return l.prep.filledBytes.Load() >= prepHeadStartBytes })
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
	testutil.WaitFor(t, walWait, "the paced preparation to finish", l.prep.isReady)
	if st := l.Stats(); st.SegmentsZeroFilled != 1 || st.SegmentsFallocated != 0 {
		t.Fatalf("stats %+v: no roll expected yet", st)
	}
}
