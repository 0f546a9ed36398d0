package wal

import (
	"errors"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestInjectedErrors: after a write or sync fault, the failing batch's
// waiter gets the error, every later call gets the same error, and after
// reopening the log holds every acknowledged batch and is a prefix of what
// was appended.
func TestInjectedErrors(t *testing.T) {
	cases := []struct {
		name string
		arm  func(fs *faultFS)
		is   error
	}{
		{"write-error", func(fs *faultFS) { fs.writeFault = failWrites(errInjected) }, errInjected},
		{"short-write", func(fs *faultFS) { fs.writeFault = shortWrites }, io.ErrShortWrite},
		{"enospc", func(fs *faultFS) { fs.writeFault = enospcWrites }, syscall.ENOSPC},
		{"sync-error", func(fs *faultFS) { fs.syncErr = errInjected }, errInjected},
		{"sync-eio", func(fs *faultFS) { fs.syncErr = syscall.EIO }, syscall.EIO},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			fs := &faultFS{}
			o := testOpts()
			o.FS = fs
			l := mustOpen(t, dir, o)
			acked := mkEntries(1, 50, 1)
			if err := l.Append(acked, &wire.HardState{Term: 1}); err != nil {
				t.Fatal(err)
			}
			fs.set(c.arm)
			err := l.Append(mkEntries(50, 60, 1), nil)
			if !errors.Is(err, c.is) {
				t.Fatalf("failing batch: err = %v, want %v", err, c.is)
			}
			first := err
			// Disarm: the error must stay sticky anyway.
			fs.set(func(fs *faultFS) { fs.writeFault, fs.syncErr = nil, nil })
			writesBefore := func() int { fs.mu.Lock(); defer fs.mu.Unlock(); return fs.writes }()
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
			if err := l.CompactPrefix(5); !errors.Is(err, c.is) {
				t.Fatalf("CompactPrefix after failure: %v", err)
			}
			if w := func() int { fs.mu.Lock(); defer fs.mu.Unlock(); return fs.writes }(); w != writesBefore {
				t.Fatalf("the log wrote %d times after its sticky error", w-writesBefore)
			}
			l.Close()

			l = mustOpen(t, dir, testOpts())
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

// TestGroupCommit holds the first sync in progress, queues many appends
// meanwhile, and checks that they all ride in the next single write+sync,
// and that none completes before its sync does.
func TestGroupCommit(t *testing.T) {
	fs := &faultFS{syncEntered: make(chan struct{}), syncRelease: make(chan struct{})}
	o := testOpts()
	o.FS = fs
	o.SegmentBytes = 1 << 20
	l := mustOpen(t, t.TempDir(), o)
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
	<-fs.syncEntered // the writer is now inside the first sync
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
	fs.syncRelease <- struct{}{} // finish sync 1
	<-fs.syncEntered             // sync 2 has begun: everything queued is in it
	mu.Lock()
	if completed != 1 {
		t.Fatalf("after sync 1: %d completed, want 1", completed)
	}
	mu.Unlock()
	fs.syncRelease <- struct{}{}
	waitFor(t, "all appends to complete", func() bool { mu.Lock(); defer mu.Unlock(); return completed == 1+queued })
	fs.set(func(fs *faultFS) { fs.syncEntered, fs.syncRelease = nil, nil })
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
	fs := &faultFS{syncEntered: make(chan struct{}), syncRelease: make(chan struct{})}
	o := testOpts()
	o.FS = fs
	l := mustOpen(t, t.TempDir(), o)
	defer l.Close()
	var mu sync.Mutex
	var errs []error
	done := func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
	l.AppendAsync(mkEntries(1, 2, 1), nil, done)
	<-fs.syncEntered
	for i := uint64(2); i < 30; i++ {
		l.AppendAsync(mkEntries(i, i+1, 1), nil, done)
	}
	release := fs.syncRelease
	fs.set(func(fs *faultFS) { fs.syncErr = errInjected; fs.syncEntered, fs.syncRelease = nil, nil })
	release <- struct{}{}
	waitFor(t, "all waiters", func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) == 29 })
	for i, e := range errs {
		if !errors.Is(e, errInjected) {
			t.Fatalf("waiter %d acknowledged (%v) after a sync error", i, e)
		}
	}
}

func TestClosed(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testOpts())
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
