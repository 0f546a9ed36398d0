package raft

import (
	"errors"
	"slices"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

func ccEntry(index, term uint64, t wire.ConfChangeType, id uint64) wire.Entry {
	return wire.Entry{Index: index, Term: term, Type: wire.EntryConfChange, Data: encodeConfChange(wire.ConfChange{Type: t, NodeID: id})}
}

func TestApplyConfChange(t *testing.T) {
	cs := wire.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	for _, tc := range []struct {
		cc      wire.ConfChange
		voters  []uint64
		learner []uint64
		err     bool
	}{
		{wire.ConfChange{Type: wire.ConfAddVoter, NodeID: 4}, []uint64{1, 2, 3, 4}, []uint64{}, false},
		{wire.ConfChange{Type: wire.ConfAddVoter, NodeID: 1}, nil, nil, true},
		{wire.ConfChange{Type: wire.ConfAddLearner, NodeID: 5}, []uint64{1, 2, 3}, []uint64{4, 5}, false},
		{wire.ConfChange{Type: wire.ConfAddLearner, NodeID: 2}, nil, nil, true},
		{wire.ConfChange{Type: wire.ConfRemove, NodeID: 2}, []uint64{1, 3}, []uint64{4}, false},
		{wire.ConfChange{Type: wire.ConfRemove, NodeID: 4}, []uint64{1, 2, 3}, []uint64{}, false},
		{wire.ConfChange{Type: wire.ConfRemove, NodeID: 9}, nil, nil, true},
		{wire.ConfChange{Type: 77, NodeID: 9}, nil, nil, true},
		{wire.ConfChange{Type: wire.ConfAddVoter, NodeID: 0}, nil, nil, true},
	} {
		got, err := applyConfChange(cs, tc.cc)
		if tc.err {
			if !errors.Is(err, ErrInvalidConfChange) {
				t.Errorf("%+v: err %v, want ErrInvalidConfChange", tc.cc, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got.Voters, tc.voters) || !slices.Equal(got.Learners, tc.learner) && len(got.Learners)+len(tc.learner) > 0 {
			t.Errorf("%+v: got %+v %v", tc.cc, got, err)
		}
	}
	if _, err := applyConfChange(wire.ConfState{Voters: []uint64{1}}, wire.ConfChange{Type: wire.ConfRemove, NodeID: 1}); err == nil {
		t.Error("removing the last voter must fail")
	}
}

func TestConfHistoryAppendTimeAndTruncate(t *testing.T) {
	var h confHistory
	h.reset(0, wire.ConfState{Voters: []uint64{1, 2, 3}})
	h.observe([]wire.Entry{ccEntry(5, 2, wire.ConfAddLearner, 4)})
	h.observe([]wire.Entry{ccEntry(8, 2, wire.ConfAddVoter, 4)})
	if !slices.Equal(h.current().Voters, []uint64{1, 2, 3, 4}) {
		t.Fatalf("current %+v", h.current())
	}
	if got := h.at(6); !slices.Equal(got.Learners, []uint64{4}) || len(got.Voters) != 3 {
		t.Fatalf("at(6) = %+v", got)
	}
	// A new leader overwrites index 8: the promotion is undone.
	if !h.truncateFrom(7) {
		t.Fatal("truncate reported no change")
	}
	if len(h.current().Voters) != 3 || h.lastIndex() != 5 {
		t.Fatalf("after truncation %+v last %d", h.current(), h.lastIndex())
	}
	h.compact(6)
	if len(h.records) != 1 || h.records[0].index != 5 {
		t.Fatalf("after compact: %+v", h.records)
	}
	// Invalid changes are skipped identically everywhere.
	_, skipped := h.observe([]wire.Entry{ccEntry(9, 2, wire.ConfRemove, 42)})
	if len(skipped) != 1 || h.lastIndex() != 5 {
		t.Fatalf("invalid change not skipped: %v %d", skipped, h.lastIndex())
	}
}

func TestProposeConfChangeRules(t *testing.T) {
	c := newCluster(3, 11, nil)
	ld := c.nodes[1].rn
	_ = ld.Campaign()
	// Drive the election, but do not let the no-op commit yet.
	for i := 0; i < 20 && ld.r.role != RoleLeader; i++ {
		c.process()
		if len(c.msgs) > 0 {
			c.deliverOne(0)
		}
	}
	if ld.r.role != RoleLeader {
		t.Fatal("no leader")
	}
	err := ld.ProposeConfChange(wire.ConfChange{Type: wire.ConfAddLearner, NodeID: 4})
	if !errors.Is(err, ErrConfChangePending) {
		t.Fatalf("before committing an entry of its term: %v, want ErrConfChangePending", err)
	}
	c.stabilize()
	if err := ld.ProposeConfChange(wire.ConfChange{Type: wire.ConfRemove, NodeID: 9}); !errors.Is(err, ErrInvalidConfChange) {
		t.Fatalf("removing a non-member: %v", err)
	}
	if err := ld.ProposeConfChange(wire.ConfChange{Type: wire.ConfAddLearner, NodeID: 4}); err != nil {
		t.Fatal(err)
	}
	if err := ld.ProposeConfChange(wire.ConfChange{Type: wire.ConfAddVoter, NodeID: 4}); !errors.Is(err, ErrConfChangePending) {
		t.Fatalf("second change while the first is uncommitted: %v", err)
	}
	// The learner is in effect at once (append time) on the leader.
	if !slices.Equal(ld.r.confs.current().Learners, []uint64{4}) {
		t.Fatalf("leader membership %+v", ld.r.confs.current())
	}
}

func TestRemovedLeaderStepsDownAfterCommit(t *testing.T) {
	c := newCluster(3, 12, nil)
	electLeader(t, c, 1)
	if err := c.nodes[1].rn.ProposeConfChange(wire.ConfChange{Type: wire.ConfRemove, NodeID: 1}); err != nil {
		t.Fatal(err)
	}
	if c.nodes[1].rn.r.role != RoleLeader {
		t.Fatal("leader stepped down before its removal committed")
	}
	c.stabilize()
	if r := c.nodes[1].rn.r; r.role == RoleLeader || r.promotable() {
		t.Fatalf("removed node: role %v promotable %v", r.role, r.promotable())
	}
	for _, id := range []uint64{2, 3} {
		if got := c.nodes[id].rn.r.confs.current().Voters; !slices.Equal(got, []uint64{2, 3}) {
			t.Fatalf("node %d voters %v", id, got)
		}
	}
	// The remaining voters elect a leader on their own.
	for i := 0; i < 50 && c.leader() == 0 || c.leader() == 1; i++ {
		c.tickAll()
		c.stabilize()
	}
	if l := c.leader(); l != 2 && l != 3 {
		t.Fatalf("leader after removal: %d", l)
	}
}
