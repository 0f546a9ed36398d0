package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/raftpipe/raftpipe/raft/node"
	"github.com/raftpipe/raftpipe/wire"
)

// BenchmarkCluster drives an embedded 3-node cluster (real TCP on loopback,
// fsynced WAL, Pebble) in direct mode with C closed-loop clients writing
// 128-byte values, and reports throughput and commit latency percentiles.
// One op is one acknowledged (applied) write.
func BenchmarkCluster(b *testing.B) {
	for _, clients := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("clients=%d/payload=128", clients), func(b *testing.B) {
			benchCluster(b, clients, 128, 1, false)
		})
	}
}

// BenchmarkClusterGroups is BenchmarkCluster with the keys sharded over G
// Raft groups (each write goes to the node leading its key's group). It
// also reports the WAL's fsyncs per second of the busiest node and the
// group appends each fsync carried: with one fsync serving every group,
// fsyncs/s should not grow with G.
//
//	go test ./bench/cluster -run '^$' -bench 'ClusterGroups/groups=(1|16)/clients=256' -benchtime 100000x
func BenchmarkClusterGroups(b *testing.B) {
	for _, groups := range []int{1, 4, 16} {
		for _, clients := range []int{64, 256} {
			b.Run(fmt.Sprintf("groups=%d/clients=%d", groups, clients), func(b *testing.B) {
				benchCluster(b, clients, 128, groups, true)
			})
		}
	}
}

func benchCluster(b *testing.B, clients, payload, groups int, walMetrics bool) {
	benchClusterTuned(b, clients, payload, groups, walMetrics, nil)
}

func benchClusterTuned(b *testing.B, clients, payload, groups int, walMetrics bool, tune func(*node.Config)) {
	ctx := context.Background()
	c, err := Start(ctx, Options{Dir: b.TempDir(), Groups: groups, Tune: tune})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	value := make([]byte, payload)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	hists := make([]*hdrhistogram.Histogram, clients)
	var next atomic.Int64
	var errs atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.SetBytes(int64(payload))
	syncs0 := make([]uint64, len(c.Nodes))
	calls0 := make([]uint64, len(c.Nodes))
	for i, n := range c.Nodes {
		st := n.WALStats()
		syncs0[i], calls0[i] = st.Syncs, st.Calls
	}
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < clients; w++ {
		hists[w] = hdrhistogram.New(1, 60_000_000, 3)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			key := make([]byte, 0, 16)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				key = fmt.Appendf(key[:0], "key-%d", i%100_000)
				t0 := time.Now()
				for {
					l := c.LeaderFor(key)
					if l == nil {
						time.Sleep(time.Millisecond)
						continue
					}
					resp, err := l.Do(ctx, &wire.ClientRequest{Op: wire.OpPut, Key: key, Value: value})
					if err == nil && resp.Status == wire.StatusOK {
						break
					}
					errs.Add(1)
				}
				hists[w].RecordValue(time.Since(t0).Microseconds())
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	h := hdrhistogram.New(1, 60_000_000, 3)
	for _, x := range hists {
		h.Merge(x)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-us")
	b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-us")
	if n := errs.Load(); n > 0 {
		b.ReportMetric(float64(n), "retries")
	}
	if walMetrics {
		var maxSyncs, calls uint64
		for i, n := range c.Nodes {
			st := n.WALStats()
			if d := st.Syncs - syncs0[i]; d > maxSyncs {
				maxSyncs, calls = d, st.Calls-calls0[i]
			}
		}
		b.ReportMetric(float64(maxSyncs)/elapsed.Seconds(), "fsyncs/s")
		b.ReportMetric(float64(calls)/float64(max(maxSyncs, 1)), "appends/fsync")
	}
}
