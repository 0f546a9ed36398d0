package client

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkClientPipelined measures Put throughput with 1, 16 and 256
// concurrent callers sharing one Client (one connection) against the
// in-process fake server. The client itself allocates nothing per Put; the
// reported allocations are the fake server's (it copies key and value into
// its map). The fake server's own CPU is included, so this is a lower bound
// on the client's capacity; compare runs by ratio, not absolute numbers.
func BenchmarkClientPipelined(b *testing.B) {
	for _, callers := range []int{1, 16, 256} {
		b.Run("callers="+strconv.Itoa(callers), func(b *testing.B) {
			s := newFakeServer(b, testClusterID)
			c, err := New(Config{Addrs: []string{s.addr}, ClusterID: testClusterID})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			key, val := []byte("bench-key"), make([]byte, 100)
			if _, err := c.Put(ctx, key, val); err != nil { // connect outside the timer
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(key) + len(val)))
			b.ResetTimer()
			runCallers(b, callers, func() error {
				_, err := c.Put(ctx, key, val)
				return err
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkClientGet measures linearizable Get throughput (a value is copied
// out per call) with 64 concurrent callers.
func BenchmarkClientGet(b *testing.B) {
	s := newFakeServer(b, testClusterID)
	c, err := New(Config{Addrs: []string{s.addr}, ClusterID: testClusterID})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	key := []byte("bench-key")
	if _, err := c.Put(ctx, key, make([]byte, 100)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	runCallers(b, 64, func() error {
		_, _, err := c.Get(ctx, key)
		return err
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkClientPutZeroAlloc guards the client's zero-allocation Put path:
// the server discards requests and allocates nothing, so allocs/op is the
// client's alone and should read 0.
func BenchmarkClientPutZeroAlloc(b *testing.B) {
	s := newFakeServer(b, testClusterID)
	s.discard.Store(true)
	c, err := New(Config{Addrs: []string{s.addr}, ClusterID: testClusterID})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	key, val := []byte("bench-key"), make([]byte, 100)
	if _, err := c.Put(ctx, key, val); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	runCallers(b, 64, func() error {
		_, err := c.Put(ctx, key, val)
		return err
	})
}

// runCallers runs op b.N times in total, spread over exactly callers
// goroutines (b.RunParallel would tie the count to GOMAXPROCS).
func runCallers(b *testing.B, callers int, op func() error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkClientGroups measures Put throughput with 256 callers spread
// over the 16 groups of a fake 3-node cluster: the cost of routing by key
// (hash, per-group route) with three connections in use. The three fake
// servers share the machine's cores with the client, so compare it with
// BenchmarkClientPipelined/callers=256 by ratio only.
func BenchmarkClientGroups(b *testing.B) {
	srvs, _ := newFakeCluster(b, 3, 16)
	c, err := New(Config{Addrs: []string{srvs[0].addr}, ClusterID: testClusterID})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	val := make([]byte, 100)
	keys := make([][]byte, 256)
	for i := range keys {
		keys[i] = []byte("bench-key-" + strconv.Itoa(i))
		if _, err := c.Put(ctx, keys[i], val); err != nil { // connect and route outside the timer
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	runCallers(b, len(keys), func() error {
		_, err := c.Put(ctx, keys[next.Add(1)%int64(len(keys))], val)
		return err
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
