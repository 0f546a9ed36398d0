package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// quietLogger discards the log's reports in tests.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// testOpts are small segments so that tests cross segment boundaries.
func testOpts() Options {
	return Options{SegmentBytes: 8 << 10, Logger: quietLogger}
}

// mkEntries returns entries lo..hi-1 of term t with deterministic data.
func mkEntries(lo, hi, t uint64) []wire.Entry {
	var es []wire.Entry
	for i := lo; i < hi; i++ {
		es = append(es, wire.Entry{Index: i, Term: t, Type: wire.EntryNormal, Data: entryData(i, t)})
	}
	return es
}

// entryData is the data entry (i, t) carries in tests: varied lengths.
func entryData(i, t uint64) []byte {
	return []byte(fmt.Sprintf("e%d-t%d-%s", i, t, bytes.Repeat([]byte{'x'}, int(i*7%50))))
}

func mustOpen(t *testing.T, dir string, o Options) *Log {
	t.Helper()
	l, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// checkEntries asserts the log holds exactly want (contiguous, from the
// first entry's index).
func checkEntries(t *testing.T, l *Log, want []wire.Entry) {
	t.Helper()
	first := l.FirstIndex()
	if len(want) > 0 && want[0].Index != first {
		t.Fatalf("FirstIndex = %d, want %d", first, want[0].Index)
	}
	if got, w := l.LastIndex(), first+uint64(len(want))-1; got != w {
		t.Fatalf("LastIndex = %d, want %d", got, w)
	}
	got, err := l.Entries(first, first+uint64(len(want)), 1<<62)
	if err != nil {
		t.Fatalf("Entries: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Index != w.Index || g.Term != w.Term || g.Type != w.Type || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("entry %d: got {%d %d %d %q}, want {%d %d %d %q}", i, g.Index, g.Term, g.Type, g.Data, w.Index, w.Term, w.Type, w.Data)
		}
		tm, err := l.Term(w.Index)
		if err != nil || tm != w.Term {
			t.Fatalf("Term(%d) = %d, %v; want %d", w.Index, tm, err, w.Term)
		}
	}
}

func TestAppendReadReopen(t *testing.T) {
	for _, cache := range []int64{0, -1} {
		t.Run(fmt.Sprintf("cache=%d", cache), func(t *testing.T) {
			dir := testDir
			o := memOpts()
			o.CacheBytes = cache
			l := mustOpen(t, dir, o)
			if l.FirstIndex() != 1 || l.LastIndex() != 0 {
				t.Fatalf("new log: first %d last %d", l.FirstIndex(), l.LastIndex())
			}
			want := mkEntries(1, 400, 1)
			for i := 0; i < len(want); i += 7 {
				hs := wire.HardState{Term: 1, Vote: 2, Commit: uint64(i)}
				if err := l.Append(want[i:min(i+7, len(want))], &hs); err != nil {
					t.Fatal(err)
				}
			}
			checkEntries(t, l, want)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, dir, o)
			defer l.Close()
			checkEntries(t, l, want)
			if hs := l.HardState(); hs != (wire.HardState{Term: 1, Vote: 2, Commit: 392}) {
				t.Fatalf("hard state %+v", hs)
			}
			// Conflict: overwrite from 350 with term 2.
			repl := mkEntries(350, 360, 2)
			if err := l.Append(repl, nil); err != nil {
				t.Fatal(err)
			}
			want = append(want[:349:349], repl...)
			checkEntries(t, l, want)
			if err := l.CompactPrefix(100, nil); err != nil {
				t.Fatal(err)
			}
			want = want[100:]
			checkEntries(t, l, want)
			if tm, err := l.Term(100); err != nil || tm != 1 {
				t.Fatalf("Term(100) = %d, %v", tm, err)
			}
			if _, err := l.Term(99); !errors.Is(err, ErrCompacted) {
				t.Fatalf("Term(99) err = %v", err)
			}
			if _, err := l.Term(360); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Term(360) err = %v", err)
			}
			if _, err := l.Entries(100, 105, 1<<20); !errors.Is(err, ErrCompacted) {
				t.Fatalf("Entries(100) err = %v", err)
			}
			l.Close()
			l = mustOpen(t, dir, o)
			checkEntries(t, l, want)
			if err := l.Reset(1000, 7, nil); err != nil {
				t.Fatal(err)
			}
			if l.FirstIndex() != 1001 || l.LastIndex() != 1000 {
				t.Fatalf("after reset: %d %d", l.FirstIndex(), l.LastIndex())
			}
			want = mkEntries(1001, 1010, 7)
			if err := l.Append(want, nil); err != nil {
				t.Fatal(err)
			}
			l.Close()
			l = mustOpen(t, dir, o)
			checkEntries(t, l, want)
			if tm, _ := l.Term(1000); tm != 7 {
				t.Fatalf("marker term %d", tm)
			}
			l.Close()
		})
	}
}

func TestEntriesMaxBytes(t *testing.T) {
	l := mustOpen(t, testDir, memOpts())
	defer l.Close()
	es := make([]wire.Entry, 10)
	for i := range es {
		es[i] = wire.Entry{Index: uint64(i + 1), Term: 1, Data: make([]byte, 10)}
	}
	if err := l.Append(es, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ max, want uint64 }{{0, 1}, {9, 1}, {10, 1}, {19, 1}, {20, 2}, {35, 3}, {1000, 10}} {
		got, err := l.Entries(1, 11, c.max)
		if err != nil || uint64(len(got)) != c.want {
			t.Fatalf("maxBytes %d: got %d entries (%v), want %d", c.max, len(got), err, c.want)
		}
	}
	if _, err := l.Entries(1, 12, 100); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("hi beyond last: %v", err)
	}
}

// TestDirectoryLock: a second Open of the same directory fails while the
// first is open, and succeeds after Close; on the OS (vfs.Default, whose
// Lock also refuses a second lock in the same process) and in memory.
func TestDirectoryLock(t *testing.T) {
	for _, c := range []struct {
		name string
		o    Options
		dir  string
	}{
		{"os", testOpts(), t.TempDir()},
		{"mem", memOpts(), testDir},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := mustOpen(t, c.dir, c.o)
			if l2, err := Open(c.dir, c.o); err == nil {
				l2.Close()
				t.Fatal("second Open of a locked directory succeeded")
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			mustOpen(t, c.dir, c.o).Close()
		})
	}
}

// lockChildEnv turns the test binary into a child that tries to open the
// log in the directory it names and prints the outcome.
const lockChildEnv = "WAL_LOCK_CHILD_DIR"

// lockChild is the child of TestDirectoryLockOtherProcess.
func lockChild(dir string) {
	l, err := Open(dir, testOpts())
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	l.Close()
	fmt.Println("opened")
}

// TestDirectoryLockOtherProcess: vfs.Default's Lock (an fcntl lock) stops
// a second process while the log is open, and the lock goes with Close.
func TestDirectoryLockOtherProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	child := func() string {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), lockChildEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v: %s", err, out)
		}
		return string(out)
	}
	l := mustOpen(t, dir, testOpts())
	if out := child(); !strings.HasPrefix(out, "refused:") {
		l.Close()
		t.Fatalf("a second process opened a locked log: %q", out)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if out := child(); out != "opened\n" {
		t.Fatalf("after Close a second process could not open the log: %q", out)
	}
}

// TestBase: CompactPrefix and Reset carry the base bytes, durably; a no-op
// compaction ignores its base; an oversized base is refused; every
// segment's preamble restates the base, so it survives the removal of the
// segment holding the compaction record.
func TestBase(t *testing.T) {
	o := memOpts()
	o.SegmentBytes = minSegmentBytes
	l := mustOpen(t, testDir, o)
	reopen := func() {
		t.Helper()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l = mustOpen(t, testDir, o)
	}
	defer func() { l.Close() }()
	if b := l.Base(); b != nil {
		t.Fatalf("new log: base %q", b)
	}
	if err := l.Append(mkEntries(1, 50, 1), nil); err != nil {
		t.Fatal(err)
	}
	base := []byte("members at 20")
	if err := l.CompactPrefix(20, base); err != nil {
		t.Fatal(err)
	}
	base[0] = 'X' // the log keeps its own copy
	if b := l.Base(); string(b) != "members at 20" {
		t.Fatalf("base %q", b)
	}
	l.Base()[0] = 'Y' // and hands out copies
	if err := l.CompactPrefix(10, []byte("ignored")); err != nil {
		t.Fatal(err)
	}
	if err := l.CompactPrefix(20, []byte("ignored")); err != nil {
		t.Fatal(err)
	}
	reopen()
	if b := l.Base(); string(b) != "members at 20" || l.FirstIndex() != 21 {
		t.Fatalf("after reopen: base %q, first index %d", b, l.FirstIndex())
	}
	// Roll a few segments, then compact the segment with the compaction
	// record away: the preambles still carry the base.
	if err := l.Append(mkEntries(50, 300, 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.CompactPrefix(250, []byte("members at 250")); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(mkEntries(300, 400, 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.CompactPrefix(399, []byte("members at 399")); err != nil {
		t.Fatal(err)
	}
	if n := len(segmentPaths(t, o.FS, testDir)); n != 1 {
		t.Fatalf("%d segments after compacting all but one entry", n)
	}
	reopen()
	if b := l.Base(); string(b) != "members at 399" {
		t.Fatalf("after removing old segments: base %q", b)
	}
	if err := l.Reset(1000, 3, []byte("members at 1000")); err != nil {
		t.Fatal(err)
	}
	if err := l.Reset(1001, 3, nil); err != nil {
		t.Fatal(err)
	}
	reopen()
	if b := l.Base(); b != nil || l.FirstIndex() != 1002 {
		t.Fatalf("after an empty reset: base %q, first index %d", b, l.FirstIndex())
	}
	huge := make([]byte, maxBaseBytes+1)
	if err := l.Reset(2000, 4, huge); !errors.Is(err, ErrBaseTooLarge) {
		t.Fatalf("Reset with a %d-byte base: %v", len(huge), err)
	}
	if err := l.Append(mkEntries(1002, 1010, 3), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.CompactPrefix(1005, huge); !errors.Is(err, ErrBaseTooLarge) {
		t.Fatalf("CompactPrefix with a %d-byte base: %v", len(huge), err)
	}
	if l.FirstIndex() != 1002 {
		t.Fatalf("a refused compaction moved the first index to %d", l.FirstIndex())
	}
	// The largest legal base fits, also across a roll and a reopen.
	big := bytes.Repeat([]byte{7}, maxBaseBytes)
	if err := l.CompactPrefix(1005, big); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(mkEntries(1010, 1100, 3), nil); err != nil {
		t.Fatal(err)
	}
	reopen()
	if b := l.Base(); !bytes.Equal(b, big) {
		t.Fatalf("after reopen: base of %d bytes, want %d", len(b), len(big))
	}
	checkEntries(t, l, mkEntries(1006, 1100, 3))
}
