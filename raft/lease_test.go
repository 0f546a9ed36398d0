package raft

import (
	"errors"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// leaseCluster is a 3-node LeaseReads cluster (ElectionTicks 10, drift 2:
// an 8-tick lease) with node 1 elected and its lease taken by one
// heartbeat round.
func leaseCluster(t *testing.T) *cluster {
	t.Helper()
	c := newCluster(3, 7, func(cfg *Config) {
		cfg.LeaseReads, cfg.LeaseDriftTicks = true, 2
	})
	// A starting node stays quiet for an election timeout (it cannot know
	// when it last heard from a leader): Campaign is a no-op until then.
	if err := c.nodes[1].rn.Campaign(); err != nil || c.nodes[1].rn.r.role != RoleFollower {
		t.Fatalf("campaign during the start-up quiet window: err %v role %v", err, c.nodes[1].rn.r.role)
	}
	for i := 0; i < 10; i++ {
		c.nodes[1].rn.Tick()
	}
	for _, id := range []uint64{2, 3} {
		for i := 0; i < 10; i++ {
			c.nodes[id].rn.Tick()
		}
	}
	electLeader(t, c, 1)
	c.nodes[1].rn.Tick() // heartbeat round
	c.stabilize()
	if !c.nodes[1].rn.r.leaseValid() {
		t.Fatal("leader holds no lease after a heartbeat round")
	}
	return c
}

// readNow issues a read at id and returns the ReadStates of the next Ready
// without delivering any message.
func readNow(t *testing.T, c *cluster, id uint64, ctx string) []ReadState {
	t.Helper()
	nd := c.nodes[id]
	if err := nd.rn.ReadIndex([]byte(ctx)); err != nil {
		t.Fatal(err)
	}
	nd.readStates = nil
	c.handleReady(nd)
	return nd.readStates
}

func TestLeaseNeedsCheckQuorum(t *testing.T) {
	_, err := NewRawNode(Config{ID: 1, Storage: NewMemoryStorage(wire.ConfState{Voters: []uint64{1}}), LeaseReads: true})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("LeaseReads without CheckQuorum: err %v, want ErrInvalidConfig", err)
	}
	_, err = NewRawNode(Config{ID: 1, Storage: NewMemoryStorage(wire.ConfState{Voters: []uint64{1}}), LeaseReads: true, CheckQuorum: true, LeaseDriftTicks: 10})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("LeaseDriftTicks = ElectionTicks: err %v, want ErrInvalidConfig", err)
	}
}

func TestLeaseReadServedLocallyUntilExpiry(t *testing.T) {
	c := leaseCluster(t)
	ld := c.nodes[1]
	rs := readNow(t, c, 1, "a")
	if len(rs) != 1 || !rs[0].Lease || rs[0].Index != ld.rn.r.log.committed {
		t.Fatalf("read under lease: %+v, want one lease ReadState at commit %d", rs, ld.rn.r.log.committed)
	}
	// Cut the leader off: heartbeats go unanswered. The lease started at
	// the tick of the last answered round (s) and lasts 10-2 = 8 ticks.
	c.isolate(1)
	start := ld.rn.r.readOnly.lease.start
	for ld.rn.r.tickCount < start+7 {
		ld.rn.Tick()
	}
	if rs := readNow(t, c, 1, "b"); len(rs) != 1 || !rs[0].Lease {
		t.Fatalf("read at tick s+7: %+v, want a lease read", rs)
	}
	ld.rn.Tick() // s+8: the lease is over
	if rs := readNow(t, c, 1, "c"); len(rs) != 0 {
		t.Fatalf("read at tick s+8 answered without a heartbeat round: %+v", rs)
	}
}

func TestLeaseNotBeforeCommitInTerm(t *testing.T) {
	c := leaseCluster(t)
	// Node 2 takes over by transfer. Stop as soon as it leads: its no-op
	// is not committed yet, so it must not serve lease reads even if a
	// heartbeat round was answered.
	c.nodes[1].rn.TransferLeadership(2)
	r := c.nodes[2].rn.r
	for i := 0; i < 100 && r.role != RoleLeader; i++ {
		c.process()
		for _, id := range c.ids {
			c.persistAll(c.nodes[id])
		}
		if len(c.msgs) > 0 {
			c.deliverOne(0)
		}
	}
	if r.role != RoleLeader || r.committedInTerm {
		t.Fatalf("node 2: role %v committedInTerm %v", r.role, r.committedInTerm)
	}
	r.readOnly.lease = leaseState{held: true, start: r.tickCount} // as if a round had been answered
	if rs := readNow(t, c, 2, "a"); len(rs) != 0 {
		t.Fatalf("new leader answered a read before committing in its term: %+v", rs)
	}
	c.stabilize()
	if rs := c.nodes[2].readStates; len(rs) != 1 || rs[0].Index < r.log.committed-1 {
		t.Fatalf("read after the no-op committed: %+v (commit %d)", rs, r.log.committed)
	}
}

func TestLeaseTransferEndsLease(t *testing.T) {
	c := leaseCluster(t)
	c.isolate(3)
	c.nodes[1].rn.TransferLeadership(3) // target unreachable: stalls, then aborts
	if c.nodes[1].rn.r.leaseValid() {
		t.Fatal("lease still valid once a transfer started")
	}
	for i := 0; i < 12; i++ {
		c.tickAll()
		c.stabilize()
	}
	r := c.nodes[1].rn.r
	if r.role != RoleLeader || r.leadTransferee != 0 {
		t.Fatalf("leader 1: role %v transferee %d, want leader with the transfer aborted", r.role, r.leadTransferee)
	}
	if r.leaseValid() {
		t.Fatal("lease valid again in the term of an aborted transfer (a delayed MsgTimeoutNow may still arrive)")
	}
	if rs := readNow(t, c, 1, "a"); len(rs) != 0 {
		t.Fatalf("read answered under lease after a transfer: %+v", rs)
	}
}

func TestLeaseQuietWindow(t *testing.T) {
	c := leaseCluster(t)
	f := c.nodes[2].rn.r
	// A message of a newer term that is not a vote request (here a stale
	// append answer) moves the follower to that term and forgets the
	// leader; it must still refuse a vote in that term while quiet.
	c.nodes[2].rn.Step(wire.Message{From: 3, To: 2, Term: f.term + 1, Type: wire.MsgAppResp})
	if f.lead != 0 || f.term != c.nodes[1].rn.r.term+1 {
		t.Fatalf("follower lead %d term %d", f.lead, f.term)
	}
	c.nodes[2].rn.Step(wire.Message{From: 3, To: 2, Term: f.term, Type: wire.MsgVote, Index: 100, LogTerm: 100})
	c.nodes[2].rn.Step(wire.Message{From: 3, To: 2, Term: f.term + 1, Type: wire.MsgPreVote, Index: 100, LogTerm: 100})
	for _, m := range append(f.msgs, f.msgsAfterPersist...) {
		if (m.Type == wire.MsgVoteResp || m.Type == wire.MsgPreVoteResp) && !m.Reject {
			t.Fatalf("quiet follower granted %v", m.Type)
		}
	}
	if f.vote == 3 {
		t.Fatal("quiet follower recorded a vote for 3")
	}
	// Nor does it campaign itself.
	if c.nodes[2].rn.Campaign(); f.role != RoleFollower {
		t.Fatalf("quiet follower campaigned: %v", f.role)
	}
	// A restarted node is quiet for an election timeout.
	c.crash(3)
	c.restart(3)
	r3 := c.nodes[3].rn.r
	c.nodes[3].rn.Step(wire.Message{From: 2, To: 3, Term: r3.term + 1, Type: wire.MsgVote, Index: 100, LogTerm: 100})
	if r3.vote == 2 || r3.term != c.nodes[1].rn.r.term {
		t.Fatalf("restarted node voted (vote %d term %d)", r3.vote, r3.term)
	}
	for i := 0; i < 10; i++ {
		c.nodes[3].rn.Tick()
	}
	c.nodes[3].rn.Step(wire.Message{From: 2, To: 3, Term: r3.term + 1, Type: wire.MsgVote, Index: 100, LogTerm: 100})
	if r3.vote != 2 {
		t.Fatalf("node 3 refuses votes an election timeout after restart (vote %d)", r3.vote)
	}
}

// A follower without LeaseReads does not mark its heartbeat answers, so a
// LeaseReads leader never counts it towards a lease.
func TestLeaseMixedClusterCountsOnlyMarkedAnswers(t *testing.T) {
	c := newCluster(3, 7, func(cfg *Config) {
		cfg.LeaseReads, cfg.LeaseDriftTicks = cfg.ID == 1, 2
	})
	for i := 0; i < 10; i++ {
		c.nodes[1].rn.Tick()
	}
	electLeader(t, c, 1)
	for i := 0; i < 3; i++ {
		c.nodes[1].rn.Tick()
		c.stabilize()
	}
	if c.nodes[1].rn.r.leaseValid() {
		t.Fatal("lease taken from followers that do not honour it")
	}
	if rs := readNow(t, c, 1, "a"); len(rs) != 0 {
		t.Fatalf("read answered without a heartbeat round: %+v", rs)
	}
	c.stabilize()
	if rs := c.nodes[1].readStates; len(rs) != 1 || rs[0].Lease {
		t.Fatalf("ReadIndex fallback: %+v", rs)
	}
}
