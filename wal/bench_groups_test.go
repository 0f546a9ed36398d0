package wal

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/wire"
)

// BenchmarkAppendGroups is BenchmarkAppend (256 appenders, 128-byte
// entries, real disk) with the appenders spread over G groups of one log:
// appender a writes to group a mod G. One fsync serves every group, so
// fsyncs/s should not grow with G, and entries/fsync should not fall.
// Allocations: one per Append, as in BenchmarkAppend.
func BenchmarkAppendGroups(b *testing.B) {
	const appenders, size = 256, 128
	for _, groups := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			l, err := Open(b.TempDir(), Options{Logger: quietLogger})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			testutil.WaitFor(b, walWait, "the first prepared segment", l.prep.isReady)
			views := make([]*Group, groups)
			next := make([]uint64, groups)
			for g := range views {
				views[g] = l.Group(uint64(g))
				next[g] = 1
			}
			data := make([]byte, size)
			var mu sync.Mutex
			b.SetBytes(size)
			b.ReportAllocs()
			st0 := l.Stats()
			var k int
			el := runAppenders(b, appenders, func() func() error {
				g := k % groups
				k++
				es := make([]wire.Entry, 1)
				return func() error {
					mu.Lock()
					es[0] = wire.Entry{Index: next[g], Term: 1, Data: data}
					next[g]++
					sw := syncWaiterPool.Get().(*syncWaiter)
					l.enqueue(views[g], es, nil, waiter{sw: sw})
					mu.Unlock()
					return sw.wait()
				}
			})
			st := l.Stats()
			b.ReportMetric(float64(b.N)/el.Seconds(), "entries/s")
			if syncs := st.Syncs - st0.Syncs; syncs > 0 {
				b.ReportMetric(float64(syncs)/el.Seconds(), "fsyncs/s")
				b.ReportMetric(float64(st.Entries-st0.Entries)/float64(syncs), "entries/fsync")
				mean := (st.SyncLatency.Sum - st0.SyncLatency.Sum) / time.Duration(syncs)
				b.ReportMetric(float64(mean.Microseconds()), "µs/fsync")
			}
		})
	}
}
