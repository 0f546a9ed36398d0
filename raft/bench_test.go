package raft

import (
	"fmt"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// benchCluster is a minimal runtime for benchmarks: in-memory storage,
// synchronous "persistence", messages delivered by direct Step calls.
type benchCluster struct {
	nodes    []*RawNode
	storages []*MemoryStorage
	inbox    []wire.Message
	spare    []wire.Message
	// copyEntries makes the storages copy Ready.Entries instead of keeping
	// the core's arrays (as a WAL would), so that memory measurements see
	// what the core itself holds.
	copyEntries bool
}

func newBenchCluster(b *testing.B, n int) *benchCluster {
	voters := make([]uint64, n)
	for i := range voters {
		voters[i] = uint64(i + 1)
	}
	bc := &benchCluster{}
	for _, id := range voters {
		st := NewMemoryStorage(wire.ConfState{Voters: voters})
		rn, err := NewRawNode(Config{ID: id, ElectionTicks: 10, HeartbeatTicks: 1, Storage: st, MaxInflightMsgs: 256})
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
	if bc.nodes[0].Status().Role != RoleLeader {
		b.Fatal("node 1 did not become leader")
	}
	return bc
}

// handle runs one Ready of node i the way a runtime does, with the
// persistence done synchronously into MemoryStorage.
func (bc *benchCluster) handle(i int) {
	rn := bc.nodes[i]
	rd := rn.Ready()
	bc.inbox = append(bc.inbox, rd.Messages...)
	st := bc.storages[i]
	if rd.Snapshot != nil {
		_ = st.ApplySnapshot(*rd.Snapshot)
	}
	ents := rd.Entries
	if bc.copyEntries {
		ents = slices.Clone(ents)
	}
	if err := st.Append(ents); err != nil {
		panic(err)
	}
	if !rd.HardState.IsEmpty() {
		st.SetHardState(rd.HardState)
	}
	rn.Advance(rd)
	if n := len(rd.Entries); n > 0 {
		rn.AckPersisted(rd.Entries[n-1].Index, rd.Entries[n-1].Term)
	}
	bc.inbox = append(bc.inbox, rd.MessagesAfterPersist...)
}

// run processes Readys and delivers messages until quiescent.
func (bc *benchCluster) run() {
	for {
		did := false
		for i, rn := range bc.nodes {
			if rn.HasReady() {
				bc.handle(i)
				did = true
			}
		}
		if len(bc.inbox) == 0 && !did {
			return
		}
		msgs := bc.inbox
		bc.inbox = bc.spare[:0]
		for _, m := range msgs {
			_ = bc.nodes[m.To-1].Step(m)
		}
		clear(msgs)
		bc.spare = msgs
	}
}

// BenchmarkCoreReplicate measures the consensus core alone: a 3-node
// cluster in memory, each op proposing a batch and driving it to commit on
// every node (the followers apply too). It guards the "< 1 allocation per
// entry" budget: allocs/entry is reported.
func BenchmarkCoreReplicate(b *testing.B) {
	for _, nodes := range []int{3} {
		for _, batch := range []int{64} {
			b.Run(fmt.Sprintf("nodes=%d/batch=%d", nodes, batch), func(b *testing.B) {
				benchReplicate(b, nodes, batch, 128)
			})
		}
	}
}

func benchReplicate(b *testing.B, nodes, batch, size int) {
	bc := newBenchCluster(b, nodes)
	leader := bc.nodes[0]
	data := make([][]byte, batch)
	for i := range data {
		data[i] = make([]byte, size)
	}
	compactEvery := uint64(4096)
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := leader.Propose(data...); err != nil {
			b.Fatal(err)
		}
		bc.run()
		// Keep memory bounded like a runtime would: snapshot + compact.
		if st := bc.storages[0]; st.LastIndex()-st.FirstIndex() > compactEvery {
			for j, s := range bc.storages {
				idx := bc.nodes[j].Status().Applied
				if _, err := s.CreateSnapshot(idx, wire.ConfState{Voters: []uint64{1, 2, 3}}); err == nil {
					_ = s.Compact(idx)
				}
			}
		}
	}
	b.StopTimer()
	cpu := processCPU() - cpu0
	runtime.ReadMemStats(&ms1)
	st := leader.Status()
	want := uint64(b.N*batch) + 1
	if st.Commit < want {
		b.Fatalf("commit %d, want >= %d", st.Commit, want)
	}
	entries := float64(b.N * batch)
	b.ReportMetric(entries/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/entries, "allocs/entry")
	// CPU time of the whole process (GC included) per entry: unlike
	// wall-clock rates it does not depend on how busy the shared machine is.
	b.ReportMetric(float64(cpu.Nanoseconds())/entries, "cpu-ns/entry")
}

// processCPU is the user+system CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
