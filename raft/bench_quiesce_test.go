package raft

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// newIdleBenchCluster is a 3-voter benchCluster with node 1 leading, one
// entry committed, and QuiesceAfterTicks = quiesceAfter (0: never).
func newIdleBenchCluster(b *testing.B, quiesceAfter int) *benchCluster {
	b.Helper()
	voters := []uint64{1, 2, 3}
	bc := &benchCluster{copyEntries: true}
	for _, id := range voters {
		st := NewMemoryStorage(wire.ConfState{Voters: voters})
		rn, err := NewRawNode(Config{ID: id, ElectionTicks: 10, HeartbeatTicks: 1, Storage: st,
			PreVote: true, CheckQuorum: true, QuiesceAfterTicks: quiesceAfter})
		if err != nil {
			b.Fatal(err)
		}
		bc.nodes = append(bc.nodes, rn)
		bc.storages = append(bc.storages, st)
	}
	if err := bc.nodes[0].Campaign(); err != nil {
		b.Fatal(err)
	}
	bc.run()
	if err := bc.nodes[0].Propose([]byte("x")); err != nil {
		b.Fatal(err)
	}
	bc.run()
	return bc
}

// tickGroup ticks every node of the group once and runs it until quiet:
// what a runtime does for one group per tick.
func (bc *benchCluster) tickGroup() {
	for _, rn := range bc.nodes {
		rn.Tick()
	}
	bc.run()
}

// BenchmarkTickIdle is the cost of one tick of an idle 3-voter group that
// does not quiesce: the leader heartbeats every tick, the followers answer
// (Ready, Advance and delivery included, as in a runtime minus I/O).
func BenchmarkTickIdle(b *testing.B) {
	bc := newIdleBenchCluster(b, 0)
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bc.tickGroup()
	}
	b.StopTimer()
	reportCPUPerOp(b, cpu0, "cpu-ns/tick")
	if bc.nodes[0].Quiesced() || !bc.nodes[0].IsLeader() {
		b.Fatal("idle group changed state")
	}
}

// BenchmarkTickQuiesced is the same tick of the same group, quiesced: no
// message, no Ready, and zero allocations.
func BenchmarkTickQuiesced(b *testing.B) {
	bc := newIdleBenchCluster(b, 3)
	for i := 0; i < 10; i++ {
		bc.tickGroup()
	}
	for _, rn := range bc.nodes {
		if !rn.Quiesced() {
			b.Fatal("group did not quiesce")
		}
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bc.tickGroup()
	}
	b.StopTimer()
	reportCPUPerOp(b, cpu0, "cpu-ns/tick")
	if !bc.nodes[0].Quiesced() || !bc.nodes[0].IsLeader() {
		b.Fatal("quiesced group woke")
	}
}

// BenchmarkTickQuiescedNode is one Tick and HasReady of one quiesced
// RawNode (the leader): the per-replica cost a runtime pays per tick.
func BenchmarkTickQuiescedNode(b *testing.B) {
	bc := newIdleBenchCluster(b, 3)
	for i := 0; i < 10; i++ {
		bc.tickGroup()
	}
	rn := bc.nodes[0]
	if !rn.Quiesced() {
		b.Fatal("leader did not quiesce")
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rn.Tick()
		if rn.HasReady() {
			b.Fatal("quiesced leader has a Ready")
		}
	}
	b.StopTimer()
	reportCPUPerOp(b, cpu0, "cpu-ns/tick")
}

// reportCPUPerOp reports the process CPU time since cpu0 per op: unlike
// ns/op it does not grow when the shared machine is busy elsewhere.
func reportCPUPerOp(b *testing.B, cpu0 time.Duration, unit string) {
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), unit)
}

// BenchmarkQuiescedReplicaMemory reports the heap held per replica of
// 1000 idle 3-voter groups with an empty log (bootstrap entries, a no-op
// and one entry): the heap growth after GC divided by their 3000
// replicas. "bytes/replica" counts the RawNode with its MemoryStorage
// (which copies the entries, as a WAL would, rather than keeping the
// core's arrays); "storage-bytes/replica" is the MemoryStorage alone (a
// runtime's WAL adapter replaces it), so the core's share is the
// difference. quiesced=false is the same groups awake, for comparison
// (they keep the unstable log's spare chunk and the in-flight rings).
// Run with -benchtime 1x.
func BenchmarkQuiescedReplicaMemory(b *testing.B) {
	const groups = 1000
	for _, quiesced := range []bool{true, false} {
		b.Run(fmt.Sprintf("quiesced=%v", quiesced), func(b *testing.B) {
			after := 0
			if quiesced {
				after = 3
			}
			for i := 0; i < b.N; i++ {
				storeOnly := heapDelta(func() any {
					sts := make([]*MemoryStorage, 0, 3*groups)
					for g := 0; g < groups; g++ {
						sts = append(sts, newIdleBenchCluster(b, after).storages...)
					}
					return sts
				})
				all := heapDelta(func() any {
					gs := make([]*benchCluster, 0, groups)
					for g := 0; g < groups; g++ {
						bc := newIdleBenchCluster(b, after)
						for t := 0; t < 10; t++ {
							bc.tickGroup()
						}
						if bc.nodes[0].Quiesced() != quiesced {
							b.Fatalf("quiesced = %v", bc.nodes[0].Quiesced())
						}
						bc.inbox, bc.spare = nil, nil
						gs = append(gs, bc)
					}
					return gs
				})
				b.ReportMetric(float64(all)/(3*groups), "bytes/replica")
				b.ReportMetric(float64(storeOnly)/(3*groups), "storage-bytes/replica")
			}
		})
	}
}

// heapDelta is the live heap that build's result keeps, after GC.
func heapDelta(build func() any) int64 {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	keep := build()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	runtime.KeepAlive(keep)
	return int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
}
