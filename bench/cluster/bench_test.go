package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/raftpipe/raftpipe/wire"
)

// BenchmarkCluster drives an embedded 3-node cluster (real TCP on loopback,
// fsynced WAL, Pebble) in direct mode with C closed-loop clients writing
// 128-byte values, and reports throughput and commit latency percentiles.
// One op is one acknowledged (applied) write.
func BenchmarkCluster(b *testing.B) {
	for _, clients := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("clients=%d/payload=128", clients), func(b *testing.B) {
			benchCluster(b, clients, 128)
		})
	}
}

func benchCluster(b *testing.B, clients, payload int) {
	ctx := context.Background()
	c, err := Start(ctx, Options{Dir: b.TempDir()})
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
					l := c.Leader()
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
}
