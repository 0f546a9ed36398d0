package wal

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/wire"
)

// walWait bounds the tests' waits for a condition (a prepared segment,
// completed appends). It is kept at the minute these tests always had:
// preparing a segment writes the whole file, which on a disk shared with
// other test runs can be slow.
const walWait = time.Minute

// TestInjectedErrors: after a write or sync fault, the failing batch's
// waiter gets the error, every later call gets the same error, the log
// writes nothing more, and after reopening the log holds every
// acknowledged batch and is a prefix of what was appended.
func TestInjectedErrors(t *testing.T) {
	half := func(err error) func(p []byte) (int, error) {
		return func(p []byte) (int, error) { return len(p) / 2, err }
	}
	cases := []struct {
		name    string
		fault   func(errorfs.Op) error      // errorfs: fails an operation outright
		partial func(p []byte) (int, error) // partialWriteFS: writes part of p
		is      error
	}{
		{"write-error", failOn(errorfs.OpFileWriteAt, errInjected), nil, errInjected},
		{"short-write", nil, half(nil), io.ErrShortWrite},
		{"enospc", nil, half(syscall.ENOSPC), syscall.ENOSPC},
		{"sync-error", failOn(errorfs.OpFileSyncData, errInjected), nil, errInjected},
		{"sync-eio", failOn(errorfs.OpFileSyncData, syscall.EIO), nil, syscall.EIO},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := vfs.NewMem()
			in := &injector{}
			pfs := &partialWriteFS{FS: errorfs.Wrap(mem, in)}
			o := testOpts()
			o.FS = pfs
			l := mustOpen(t, testDir, o)
			acked := mkEntries(1, 50, 1)
			if err := l.Append(acked, &wire.HardState{Term: 1}); err != nil {
				t.Fatal(err)
			}
			in.set(c.fault)
			pfs.setFault(c.partial)
			err := l.Append(mkEntries(50, 60, 1), nil)
			if !errors.Is(err, c.is) {
				t.Fatalf("failing batch: err = %v, want %v", err, c.is)
			}
			first := err
			// Disarm: the error must stay sticky anyway.
			in.set(nil)
			pfs.setFault(nil)
			writesBefore := in.writes.Load()
			var wg sync.WaitGroup
			errs := make([]error, 20)
			for i := range errs {
				wg.Add(1)
				l.AppendAsync(nil, &wire.HardState{Term: 2}, func(err error) { errs[i] = err; wg.Done() })
			}
			wg.Wait()
			for i, e := range errs {
				if !errors.Is(e, c.is) {
					t.Fatalf("later waiter %d: err = %v, want the sticky %v", i, e, first)
				}
			}
			if err := l.TruncateSuffix(10); !errors.Is(err, c.is) {
				t.Fatalf("TruncateSuffix after failure: %v", err)
			}
			if err := l.CompactPrefix(5, nil); !errors.Is(err, c.is) {
				t.Fatalf("CompactPrefix after failure: %v", err)
			}
			if w := in.writes.Load(); w != writesBefore {
				t.Fatalf("the log wrote %d times after its sticky error", w-writesBefore)
			}
			l.Close()

			o.FS = mem
			l = mustOpen(t, testDir, o)
			defer l.Close()
			last := l.LastIndex()
			if last < 49 || last > 59 {
				t.Fatalf("recovered LastIndex %d, want within [49, 59]", last)
			}
			checkEntries(t, l, mkEntries(1, last+1, 1))
			if hs := l.HardState(); hs.Term != 1 {
				t.Fatalf("recovered hard state %+v", hs)
			}
		})
	}
}

// syncHold holds the writer's segment syncs: each one signals entered and
// waits for release, then fails with *fail if set (read after the hold, so
// a test can arm it meanwhile). A slow disk on demand.
type syncHold struct {
	entered, release chan struct{}
	fail             atomic.Pointer[error]
}

func newSyncHold() *syncHold {
	return &syncHold{entered: make(chan struct{}), release: make(chan struct{})}
}

func (h *syncHold) fault(op errorfs.Op) error {
	if !isSegmentSync(op) {
		return nil
	}
	h.entered <- struct{}{}
	<-h.release
	if e := h.fail.Load(); e != nil {
		return *e
	}
	return nil
}

// TestGroupCommit holds the first sync in progress, queues many appends
// meanwhile, and checks that they all ride in the next single write+sync,
// and that none completes before its sync does.
func TestGroupCommit(t *testing.T) {
	o, in := faultOpts()
	o.SegmentBytes = 1 << 20
	hold := newSyncHold()
	in.set(hold.fault)
	l := mustOpen(t, testDir, o)
	defer l.Close()

	var mu sync.Mutex
	completed := 0
	done := func(err error) {
		if err != nil {
			t.Errorf("append: %v", err)
		}
		mu.Lock()
		completed++
		mu.Unlock()
	}
	l.AppendAsync(mkEntries(1, 2, 1), nil, done)
	<-hold.entered // the writer is now inside the first sync
	const queued = 100
	for i := uint64(2); i < 2+queued; i++ {
		l.AppendAsync(mkEntries(i, i+1, 1), nil, done)
	}
	if l.LastIndex() != 1+queued {
		t.Fatalf("view not updated at once: LastIndex %d", l.LastIndex())
	}
	mu.Lock()
	if completed != 0 {
		t.Fatalf("%d appends completed before any sync finished", completed)
	}
	mu.Unlock()
	hold.release <- struct{}{} // finish sync 1
	<-hold.entered             // sync 2 has begun: everything queued is in it
	mu.Lock()
	if completed != 1 {
		t.Fatalf("after sync 1: %d completed, want 1", completed)
	}
	mu.Unlock()
	in.set(nil)
	hold.release <- struct{}{}
	testutil.WaitFor(t, walWait, "all appends to complete", func() bool { mu.Lock(); defer mu.Unlock(); return completed == 1+queued })
	st := l.Stats()
	if st.Batches != 2 || st.Syncs != 2 || st.Entries != 1+queued {
		t.Fatalf("stats %+v: want 2 batches, 2 syncs, %d entries", st, 1+queued)
	}
	if st.SyncLatency.Count != 2 {
		t.Fatalf("sync histogram count %d", st.SyncLatency.Count)
	}
}

// TestSyncErrorFailsQueued: a sync fails while more batches are queued
// behind it; all of them fail, none is acknowledged.
func TestSyncErrorFailsQueued(t *testing.T) {
	o, in := faultOpts()
	hold := newSyncHold()
	in.set(hold.fault)
	l := mustOpen(t, testDir, o)
	defer l.Close()
	var mu sync.Mutex
	var errs []error
	done := func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
	l.AppendAsync(mkEntries(1, 2, 1), nil, done)
	<-hold.entered
	for i := uint64(2); i < 30; i++ {
		l.AppendAsync(mkEntries(i, i+1, 1), nil, done)
	}
	fail := errInjected
	hold.fail.Store(&fail)
	in.set(failOn(errorfs.OpFileSyncData, errInjected))
	hold.release <- struct{}{}
	testutil.WaitFor(t, walWait, "all waiters", func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) == 29 })
	for i, e := range errs {
		if !errors.Is(e, errInjected) {
			t.Fatalf("waiter %d acknowledged (%v) after a sync error", i, e)
		}
	}
}

func TestClosed(t *testing.T) {
	l := mustOpen(t, testDir, memOpts())
	if err := l.Append(mkEntries(1, 3, 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(mkEntries(3, 4, 1), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}
