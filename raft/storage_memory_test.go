package raft

import (
	"errors"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

func TestMemoryStorageBootstrap(t *testing.T) {
	ms := NewMemoryStorage(wire.ConfState{Voters: []uint64{3, 1, 2}, Learners: []uint64{4}})
	hs, cs, _ := ms.InitialState()
	if hs.Term != 1 || hs.Commit != 4 || len(cs.Voters) != 0 {
		t.Fatalf("hard state %+v conf %+v", hs, cs)
	}
	es, _ := ms.Entries(1, 5, 1<<20)
	var h confHistory
	h.reset(0, wire.ConfState{})
	h.observe(es)
	got := h.current()
	if len(got.Voters) != 3 || got.Voters[0] != 1 || len(got.Learners) != 1 {
		t.Fatalf("replayed membership %+v", got)
	}
}

func TestMemoryStorageSegments(t *testing.T) {
	ms := NewMemoryStorageWithBase(wire.ConfState{})
	_ = ms.Append(ents(1, 1, 1))
	_ = ms.Append(ents(3, 1, 1))
	_ = ms.Append(ents(5, 2))
	got, err := ms.Entries(2, 6, 1<<20)
	if err != nil || len(got) != 4 || got[0].Index != 2 || got[3].Index != 5 {
		t.Fatalf("across segments: %v %v", got, err)
	}
	// Overwrite from the middle of a segment.
	_ = ms.Append(ents(4, 3, 3, 3))
	if ms.LastIndex() != 6 {
		t.Fatalf("last %d", ms.LastIndex())
	}
	for i, want := range []uint64{1, 1, 1, 3, 3, 3} {
		if tm, _ := ms.Term(uint64(i + 1)); tm != want {
			t.Fatalf("term(%d) = %d, want %d", i+1, tm, want)
		}
	}
	if _, err := ms.Term(7); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("term beyond last: %v", err)
	}
	if _, err := ms.CreateSnapshot(4, wire.ConfState{Voters: []uint64{1}}); err != nil {
		t.Fatal(err)
	}
	if err := ms.Compact(4); err != nil {
		t.Fatal(err)
	}
	if ms.FirstIndex() != 5 {
		t.Fatalf("first %d", ms.FirstIndex())
	}
	if tm, err := ms.Term(4); err != nil || tm != 3 {
		t.Fatalf("term at compaction point: %d %v", tm, err)
	}
	if _, err := ms.Entries(4, 5, 100); !errors.Is(err, ErrCompacted) {
		t.Fatalf("compacted read: %v", err)
	}
	if err := ms.ApplySnapshot(wire.SnapshotMeta{Index: 10, Term: 5}); err != nil {
		t.Fatal(err)
	}
	if ms.FirstIndex() != 11 || ms.LastIndex() != 10 {
		t.Fatalf("after snapshot: first %d last %d", ms.FirstIndex(), ms.LastIndex())
	}
}
