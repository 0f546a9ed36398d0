package raft

import (
	"errors"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

func TestReadIndexBatchedInOneRound(t *testing.T) {
	c := newCluster(3, 21, nil)
	electLeader(t, c, 1)
	ld := c.nodes[1]
	for _, ctx := range []string{"a", "b", "c"} {
		if err := ld.rn.ReadIndex([]byte(ctx)); err != nil {
			t.Fatal(err)
		}
	}
	rd := ld.rn.Ready()
	heartbeats := 0
	for _, m := range rd.Messages {
		if m.Type == wire.MsgHeartbeat {
			heartbeats++
		}
	}
	if heartbeats != 2 {
		t.Fatalf("three reads sent %d heartbeats, want one round (2)", heartbeats)
	}
	c.send(rd.Messages)
	ld.rn.Advance(rd)
	c.stabilize()
	if len(ld.readStates) != 3 {
		t.Fatalf("read states %+v", ld.readStates)
	}
	for _, rs := range ld.readStates {
		if rs.Index != ld.rn.r.log.committed {
			t.Fatalf("read %s at %d, commit %d", rs.Ctx, rs.Index, ld.rn.r.log.committed)
		}
	}
}

func TestReadIndexWaitsForCommitInTerm(t *testing.T) {
	c := newCluster(3, 22, nil)
	ld := c.nodes[1].rn
	_ = ld.Campaign()
	for i := 0; i < 20 && ld.r.role != RoleLeader; i++ {
		c.process()
		if len(c.msgs) > 0 {
			c.deliverOne(0)
		}
	}
	if ld.r.role != RoleLeader || ld.r.committedInTerm {
		t.Fatalf("setup: role %v committedInTerm %v", ld.r.role, ld.r.committedInTerm)
	}
	if err := ld.ReadIndex([]byte("early")); err != nil {
		t.Fatal(err)
	}
	if len(ld.r.readOnly.waiting) != 1 {
		t.Fatal("read before the first commit of the term must wait")
	}
	c.stabilize()
	nd := c.nodes[1]
	if len(nd.readStates) != 1 || nd.readStates[0].Index < 4 {
		t.Fatalf("read states %+v (want index >= the no-op at 4)", nd.readStates)
	}
	if err := c.nodes[2].rn.ReadIndex([]byte("x")); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower ReadIndex: %v", err)
	}
}
