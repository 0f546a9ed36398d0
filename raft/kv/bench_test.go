package kv

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// benchKeyBytes is the key size of the benchmark workloads.
const benchKeyBytes = 16

// benchKeyOffset is where the key starts in an encoded command with a
// benchKeyBytes key: the 3-byte header and a 1-byte length.
const benchKeyOffset = commandHeaderBytes + 1

// benchBatches builds ring batches of put (or CAS) commands over a key
// space of keySpace keys. Entry indexes are rewritten per iteration.
func benchBatches(batch, valueBytes, keySpace int, op wire.Op) [][]wire.Entry {
	const ring = 64
	out := make([][]wire.Entry, ring)
	value := make([]byte, valueBytes)
	key := make([]byte, benchKeyBytes)
	n := 0
	for r := range out {
		out[r] = make([]wire.Entry, batch)
		for i := range out[r] {
			binary.BigEndian.PutUint64(key[8:], uint64((n*7919)%keySpace))
			n++
			req := wire.ClientRequest{Op: op, Key: key, Value: value}
			if op == wire.OpCAS {
				req.Flags = wire.FlagExpectAbsent
			}
			out[r][i] = wire.Entry{Term: 1, Type: wire.EntryNormal, Data: EncodeCommand(nil, &req)}
		}
	}
	return out
}

func runApply(b *testing.B, batch, valueBytes int, op wire.Op) {
	s := openT(b, b.TempDir(), Options{DisableWAL: true})
	defer s.Close()
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
			// A fresh, scattered key per entry (bytes 12..20 of the encoded
			// command are the key's last 8 bytes): every CAS with
			// FlagExpectAbsent succeeds, and puts insert rather than
			// overwrite a small hot set.
			binary.BigEndian.PutUint64(es[j].Data[benchKeyOffset+8:], next*0x9E3779B97F4A7C15)
			next++
		}
		if err := s.Apply(es, results); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkApply measures the apply hot path: one Pebble batch of puts per
// call, WAL off, as the node runs it. allocs/op should stay a small
// constant per batch (none per entry).
func BenchmarkApply(b *testing.B) {
	for _, batch := range []int{1, 64, 512} {
		for _, size := range []int{128} {
			b.Run(fmt.Sprintf("batch=%d/size=%d", batch, size), func(b *testing.B) {
				runApply(b, batch, size, wire.OpPut)
			})
		}
	}
}

// BenchmarkApplyCAS measures batches of CAS commands, which need the
// indexed batch and a read per entry.
func BenchmarkApplyCAS(b *testing.B) {
	b.Run("batch=64/size=128", func(b *testing.B) { runApply(b, 64, 128, wire.OpCAS) })
}

// BenchmarkGet measures a local read through AppendValue with a reused
// buffer (zero allocations expected).
func BenchmarkGet(b *testing.B) {
	s := openT(b, b.TempDir(), Options{DisableWAL: true})
	defer s.Close()
	const keys = 10000
	var data [][]byte
	for i := 0; i < keys; i++ {
		data = append(data, putCmd(fmt.Sprintf("key-%08d", i), "value-of-some-length"))
	}
	apply(b, s, entries(1, data...))
	var buf []byte
	key := []byte("key-00000000")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(key[4:], fmt.Appendf(key[4:4], "%08d", i%keys))
		var ok bool
		var err error
		buf, ok, err = s.AppendValue(buf[:0], key)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkDecodeCommand guards the zero-allocation decode.
func BenchmarkDecodeCommand(b *testing.B) {
	data := EncodeCommand(nil, &wire.ClientRequest{Op: wire.OpPut, Key: make([]byte, 16), Value: make([]byte, 128)})
	var r wire.ClientRequest
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := DecodeCommand(data, &r); err != nil {
			b.Fatal(err)
		}
	}
}
