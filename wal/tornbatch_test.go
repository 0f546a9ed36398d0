package wal

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftpipe/raftpipe/wire"
)

// lockedBuffer is a bytes.Buffer safe for the log's goroutines to write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// smallEntries are entries lo..hi-1 of term t with a few bytes of data
// each, so that tearing a batch at every byte stays cheap.
func smallEntries(lo, hi, t uint64) []wire.Entry {
	var es []wire.Entry
	for i := lo; i < hi; i++ {
		es = append(es, wire.Entry{Index: i, Term: t, Data: []byte(fmt.Sprintf("d%d.%d", i, t))})
	}
	return es
}

// tornBatch is a log of two batches in one segment on an in-memory file
// system, and where the second batch's bytes lie in that segment.
type tornBatch struct {
	fsys     vfs.FS
	seg      string
	data     []byte  // the segment with both batches
	from, to int64   // the second batch's bytes: data[from:to]
	bounds   []int64 // record ends inside the second batch, to included
}

// writeTornBatch appends b1 (with hs1) and then b2 (with hs2) and returns
// where b2 landed. REQUIRES: both fit in the first segment.
func writeTornBatch(t *testing.T, b1 []wire.Entry, hs1 wire.HardState, b2 []wire.Entry, hs2 wire.HardState) *tornBatch {
	t.Helper()
	tb := &tornBatch{fsys: vfs.NewMem()}
	o := testOpts()
	o.SegmentBytes = 64 << 10
	o.FS = tb.fsys
	l := mustOpen(t, testDir, o)
	if err := l.Append(b1, &hs1); err != nil {
		t.Fatal(err)
	}
	segs := segmentPaths(t, tb.fsys, testDir)
	if len(segs) != 1 {
		t.Fatalf("%d segments, want 1", len(segs))
	}
	tb.seg = segs[0]
	h, _ := decodeSegmentHeader(readFile(t, tb.fsys, tb.seg))
	recs := scanPristine(t, tb.seg, readFile(t, tb.fsys, tb.seg), h.firstIndex-1, wire.HardState{})
	tb.from = recs[len(recs)-1].end
	if err := l.Append(b2, &hs2); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if segs := segmentPaths(t, tb.fsys, testDir); len(segs) != 1 {
		t.Fatalf("%d segments, want 1", len(segs))
	}
	tb.data = readFile(t, tb.fsys, tb.seg)
	for _, r := range scanPristine(t, tb.seg, tb.data, h.firstIndex-1, wire.HardState{}) {
		if r.end > tb.from {
			tb.bounds = append(tb.bounds, r.end)
		}
	}
	tb.to = tb.bounds[len(tb.bounds)-1]
	return tb
}

// recoverAt writes the image a power loss could leave with only the first
// cut bytes of the segment written (the rest zero, or the file shortened)
// and opens it. It returns the recovered state and what Open logged.
func (tb *tornBatch) recoverAt(t *testing.T, cut int64, shortened bool) (hs wire.HardState, ents []wire.Entry, logged string) {
	t.Helper()
	img := append([]byte(nil), tb.data...)
	if shortened {
		img = img[:cut]
	} else {
		clear(img[cut:])
	}
	writeFile(t, tb.fsys, tb.seg, img)
	var logs lockedBuffer
	o := testOpts()
	o.FS = tb.fsys
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	l, err := Open(testDir, o)
	if err != nil {
		t.Fatalf("cut at %d (shortened %v): Open: %v", cut, shortened, err)
	}
	defer l.Close()
	hs = l.HardState()
	if last := l.LastIndex(); hs.Commit > last {
		t.Fatalf("cut at %d: hard state %+v commits beyond LastIndex %d", cut, hs, last)
	}
	ents, err = l.Entries(l.FirstIndex(), l.LastIndex()+1, 1<<30)
	if err != nil {
		t.Fatalf("cut at %d: Entries: %v", cut, err)
	}
	return hs, ents, logs.String()
}

// isPrefix says whether got is a prefix (from index 1) of want.
func isPrefix(got, want []wire.Entry) bool {
	if len(got) > len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Index != w.Index || g.Term != w.Term || !bytes.Equal(g.Data, w.Data) {
			return false
		}
	}
	return true
}

// TestTornBatchCommitNotBeyondLast is the regression test of a bug: a
// batch was encoded [hard state][entries...], so a power loss that kept the
// batch up to just after its hard-state record recovered Commit=10 with
// LastIndex=3, and the Raft core refused to start ("hard state commit 10
// beyond last index"). Torn at every record boundary of the batch, the
// recovered hard state must be the one before the batch, or the batch's
// own with all its entries; recovery's clamp must not be what saves it.
func TestTornBatchCommitNotBeyondLast(t *testing.T) {
	hs1 := wire.HardState{Term: 1, Vote: 1, Commit: 3}
	hs2 := wire.HardState{Term: 1, Vote: 1, Commit: 10}
	tb := writeTornBatch(t, smallEntries(1, 4, 1), hs1, smallEntries(4, 11, 1), hs2)
	want := smallEntries(1, 11, 1)
	for _, cut := range append([]int64{tb.from}, tb.bounds...) {
		hs, ents, logged := tb.recoverAt(t, cut, false)
		last := uint64(len(ents))
		if !isPrefix(ents, want) || last < 3 {
			t.Fatalf("cut at %d: recovered %d entries, not a prefix of the log with 1..3", cut, len(ents))
		}
		if hs != hs1 && !(hs == hs2 && last == 10) {
			t.Fatalf("cut at %d: recovered hard state %+v with LastIndex %d; want %+v, or %+v with LastIndex 10", cut, hs, last, hs1, hs2)
		}
		if strings.Contains(logged, "clamping") {
			t.Fatalf("cut at %d: recovery had to clamp the commit: %s", cut, logged)
		}
	}
}

// TestTornBatchEveryOffset writes a batch that truncates a conflicting
// entry, appends 3..10 of a new term and commits up to its own last entry,
// and tears it at every byte offset (the batch's prefix written, the rest
// zero or the file cut short): every recovery succeeds, yields a prefix of
// the log before or after the batch, and has Commit <= LastIndex.
func TestTornBatchEveryOffset(t *testing.T) {
	hs1 := wire.HardState{Term: 1, Vote: 1, Commit: 2}
	hs2 := wire.HardState{Term: 2, Vote: 2, Commit: 10}
	tb := writeTornBatch(t, smallEntries(1, 4, 1), hs1, smallEntries(3, 11, 2), hs2)
	before := smallEntries(1, 4, 1)
	after := append(smallEntries(1, 3, 1), smallEntries(3, 11, 2)...)
	for cut := tb.from; cut <= tb.to; cut++ {
		for _, shortened := range []bool{false, true} {
			hs, ents, _ := tb.recoverAt(t, cut, shortened)
			if !isPrefix(ents, before) && !isPrefix(ents, after) {
				t.Fatalf("cut at %d (shortened %v): %d entries, a prefix of neither log", cut, shortened, len(ents))
			}
			if hs != hs1 && !(hs == hs2 && len(ents) == 10) {
				t.Fatalf("cut at %d (shortened %v): hard state %+v with %d entries", cut, shortened, hs, len(ents))
			}
			if cut == tb.to && (hs != hs2 || len(ents) != 10) {
				t.Fatalf("the whole batch written: hard state %+v, %d entries", hs, len(ents))
			}
		}
	}
}

// TestRecoverClampsCommit: a hard state that commits beyond the recovered
// log (which the log's own ordering never leaves, but a caller can write)
// is clamped to LastIndex at Open, with a warning.
func TestRecoverClampsCommit(t *testing.T) {
	o := memOpts()
	l := mustOpen(t, testDir, o)
	if err := l.Append(smallEntries(1, 4, 1), &wire.HardState{Term: 1, Commit: 100}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	l = mustOpen(t, testDir, o)
	defer l.Close()
	if hs := l.HardState(); hs != (wire.HardState{Term: 1, Commit: 3}) {
		t.Fatalf("recovered hard state %+v, want commit clamped to 3", hs)
	}
	if !strings.Contains(logs.String(), "clamping") {
		t.Fatalf("no warning logged: %q", logs.String())
	}
}
