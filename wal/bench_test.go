package wal

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"golang.org/x/sys/unix"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/wire"
)

// The benchmark grid (names are fixed: results/wal-bench.txt and the
// project's targets refer to them).
var (
	benchAppenders = []int{1, 16, 256}
	benchSizes     = []int{128, 4096}
)

// runAppenders runs n goroutines, each with its own op from newOp, until
// b.N operations are done in total, and returns the wall time.
func runAppenders(b *testing.B, n int, newOp func() func() error) time.Duration {
	var remaining atomic.Int64
	remaining.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < n; g++ {
		wg.Add(1)
		op := newOp()
		go func() {
			defer wg.Done()
			for remaining.Add(-1) >= 0 {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	return el
}

// BenchmarkAppend: N goroutines each do a synchronous Append of one entry
// at a time (fsync on, real disk). The index is assigned under the
// benchmark's own lock together with queueing, and the wait happens
// outside it, which is exactly what Append does internally.
// Allocations: one per Append (the log's copy of the entry data).
//
// It measures the steady state: before the timer starts it waits until
// the first segment has been zero-filled in the background, as a
// long-running log finds at every roll where the preparer keeps up (only
// the first segment after Open is fallocated). During the timed loop the
// preparer zero-fills the next 64 MiB segment, and that I/O competes with
// the appends: its cost is part of what is measured.
func BenchmarkAppend(b *testing.B) {
	for _, n := range benchAppenders {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("appenders=%d/size=%d", n, size), func(b *testing.B) {
				benchAppend(b, n, size, Options{Logger: quietLogger}, true)
			})
		}
	}
}

// BenchmarkAppendFallocated is BenchmarkAppend (appenders 1 and 256) with
// segment preparation failing on purpose, so that every segment is only
// fallocated (the behaviour before segments were zero-filled): the A/B
// pair for the zero-filling, in one run.
func BenchmarkAppendFallocated(b *testing.B) {
	for _, n := range []int{1, 256} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("appenders=%d/size=%d", n, size), func(b *testing.B) {
				in := &injector{}
				in.set(failPrep)
				benchAppend(b, n, size, Options{Logger: quietLogger, FS: errorfs.Wrap(vfs.Default, in)}, false)
			})
		}
	}
}

// benchAppend runs BenchmarkAppend's workload with n appenders of size-byte
// entries on a log opened with o, first waiting for a prepared segment if
// waitPrepared.
func benchAppend(b *testing.B, n, size int, o Options, waitPrepared bool) {
	l, err := Open(b.TempDir(), o)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	if waitPrepared {
		testutil.WaitFor(b, walWait, "the first prepared segment", l.prep.isReady)
	}
	data := make([]byte, size)
	var mu sync.Mutex
	next := uint64(1)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	st0 := l.Stats()
	el := runAppenders(b, n, func() func() error {
		es := make([]wire.Entry, 1)
		return func() error {
			mu.Lock()
			es[0] = wire.Entry{Index: next, Term: 1, Data: data}
			next++
			sw := l.appendStart(es, nil)
			mu.Unlock()
			return sw.wait()
		}
	})
	st := l.Stats()
	b.ReportMetric(float64(b.N)/el.Seconds(), "entries/s")
	if syncs := st.Syncs - st0.Syncs; syncs > 0 {
		b.ReportMetric(float64(st.Entries-st0.Entries)/float64(syncs), "entries/fsync")
		mean := (st.SyncLatency.Sum - st0.SyncLatency.Sum) / time.Duration(syncs)
		b.ReportMetric(float64(mean.Microseconds()), "µs/fsync")
	}
	if st.SegmentsFallocated > 0 && o.FS == nil {
		b.ReportMetric(float64(st.SegmentsFallocated), "fallocated-segments")
	}
}

// quietPebbleLogger silences Pebble's informational logging in benchmarks.
type quietPebbleLogger struct{}

func (quietPebbleLogger) Infof(string, ...any)         {}
func (quietPebbleLogger) Errorf(string, ...any)        {}
func (quietPebbleLogger) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

// BenchmarkPebbleSyncedBatch is the reference: the same workload as
// BenchmarkAppend, each entry one Pebble batch committed with pebble.Sync.
// Pebble's WAL group-commits concurrent synced batches too.
func BenchmarkPebbleSyncedBatch(b *testing.B) {
	for _, n := range benchAppenders {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("appenders=%d/size=%d", n, size), func(b *testing.B) {
				db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: quietPebbleLogger{}})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				data := make([]byte, size)
				var next atomic.Uint64
				b.SetBytes(int64(size))
				b.ReportAllocs()
				el := runAppenders(b, n, func() func() error {
					key := make([]byte, 8)
					return func() error {
						binary.BigEndian.PutUint64(key, next.Add(1))
						batch := db.NewBatch()
						if err := batch.Set(key, data, nil); err != nil {
							return err
						}
						err := batch.Commit(pebble.Sync)
						batch.Close()
						return err
					}
				})
				b.ReportMetric(float64(b.N)/el.Seconds(), "entries/s")
			})
		}
	}
}

// BenchmarkNaiveFsync is the floor: one write(2) appending the entry to a
// plain file and one fdatasync per entry, no batching. Its ns/op is the
// raw cost one Append with appenders=1 is compared against.
func BenchmarkNaiveFsync(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "naive"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			data := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			el := runAppenders(b, 1, func() func() error {
				return func() error {
					if _, err := f.Write(data); err != nil {
						return err
					}
					return unix.Fdatasync(int(f.Fd()))
				}
			})
			b.ReportMetric(float64(b.N)/el.Seconds(), "entries/s")
		})
	}
}
