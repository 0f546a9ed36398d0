package kv

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// runGroupApply is runApply for a group of an engine whose neighbour
// groups hold data too (neighbours groups, each with a few keys), so the
// batch goes into a shared memtable as it would on a node.
func runGroupApply(b *testing.B, batch, valueBytes int, op wire.Op, neighbours int) {
	e := openEngineT(b, b.TempDir(), Options{DisableWAL: true})
	defer e.Close()
	for i := 0; i < neighbours; i++ {
		n := groupT(b, e, uint64(1000+i))
		applyG(b, n, entries(1, putCmd("k1", "v"), putCmd("k2", "v")))
	}
	g := groupT(b, e, 1)
	batches := benchBatches(batch, valueBytes, 1<<20, op)
	results := make([]Result, batch)
	next := uint64(1)
	b.ReportAllocs()
	b.SetBytes(int64(batch * (benchKeyBytes + valueBytes)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		es := batches[i%len(batches)]
		for j := range es {
			es[j].Index = next
			binary.BigEndian.PutUint64(es[j].Data[benchKeyOffset+8:], next*0x9E3779B97F4A7C15)
			next++
		}
		if err := g.Apply(es, results); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkGroupApply is BenchmarkApply for one group of an engine with 100
// other groups: the same batch, behind a 9-byte group prefix instead of 1,
// with a pooled batch instead of the Store's own. Like BenchmarkApply,
// allocs/op should stay a small constant per batch.
func BenchmarkGroupApply(b *testing.B) {
	for _, batch := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d/size=128", batch), func(b *testing.B) {
			runGroupApply(b, batch, 128, wire.OpPut, 100)
		})
	}
}

// BenchmarkGroupApplyCAS is BenchmarkApplyCAS for a group.
func BenchmarkGroupApplyCAS(b *testing.B) {
	b.Run("batch=64/size=128", func(b *testing.B) { runGroupApply(b, 64, 128, wire.OpCAS, 100) })
}

// BenchmarkGroupGet is BenchmarkGet for a group (zero allocations
// expected with a reused buffer).
func BenchmarkGroupGet(b *testing.B) {
	e := openEngineT(b, b.TempDir(), Options{DisableWAL: true})
	defer e.Close()
	g := groupT(b, e, 1)
	const keys = 10000
	var data [][]byte
	for i := 0; i < keys; i++ {
		data = append(data, putCmd(fmt.Sprintf("key-%08d", i), "value-of-some-length"))
	}
	applyG(b, g, entries(1, data...))
	var buf []byte
	key := []byte("key-00000000")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(key[4:], fmt.Appendf(key[4:4], "%08d", i%keys))
		var ok bool
		var err error
		buf, ok, err = g.AppendValue(buf[:0], key)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
