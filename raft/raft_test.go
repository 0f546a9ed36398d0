package raft

import (
	"errors"
	"fmt"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// electLeader campaigns id and stabilizes; it fails the test if id did not
// win.
func electLeader(t *testing.T, c *cluster, id uint64) {
	t.Helper()
	if err := c.nodes[id].rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	c.stabilize()
	if l := c.leader(); l != id {
		t.Fatalf("leader = %d, want %d", l, id)
	}
}

func TestElectionAndReplication(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			c := newCluster(3, 1, nil)
			c.async = async
			electLeader(t, c, 1)
			ld := c.nodes[1].rn
			for i := 0; i < 10; i++ {
				if err := ld.Propose([]byte(fmt.Sprintf("v%d", i))); err != nil {
					t.Fatal(err)
				}
			}
			c.stabilize()
			for _, id := range c.ids {
				st := c.nodes[id].rn.Status()
				// 3 bootstrap entries + the leader's no-op + 10 proposals.
				if st.Commit != 14 || st.Applied != 14 {
					t.Fatalf("node %d commit %d applied %d, want 14", id, st.Commit, st.Applied)
				}
			}
			if len(c.errs) > 0 {
				t.Fatal(c.errs)
			}
			if h := c.history[14]; h.data != "v9" {
				t.Fatalf("history[14] = %+v", h)
			}
		})
	}
}

func TestElectionByTimeout(t *testing.T) {
	c := newCluster(5, 2, nil)
	for i := 0; i < 40 && c.leader() == 0; i++ {
		c.tickAll()
		c.stabilize()
	}
	if c.leader() == 0 {
		t.Fatal("no leader after 40 ticks")
	}
	// All nodes agree on the leader and term.
	l := c.leader()
	for _, id := range c.ids {
		r := c.nodes[id].rn.r
		if r.lead != l || r.term != c.nodes[l].rn.r.term {
			t.Fatalf("node %d: lead %d term %d; leader %d term %d", id, r.lead, r.term, l, c.nodes[l].rn.r.term)
		}
	}
}

func TestProposeNotLeader(t *testing.T) {
	c := newCluster(3, 3, nil)
	electLeader(t, c, 2)
	err := c.nodes[1].rn.Propose([]byte("x"))
	var nl *NotLeaderError
	if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nl) || nl.Leader != 2 {
		t.Fatalf("err = %v, want NotLeaderError{2}", err)
	}
}

func TestLeaderCountsItselfOnlyWhenDurable(t *testing.T) {
	c := newCluster(1, 4, nil)
	c.async = true
	nd := c.nodes[1]
	if err := nd.rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	c.process()
	if nd.rn.r.role != RoleLeader {
		t.Fatalf("single node did not become leader: %v", nd.rn.r.role)
	}
	if err := nd.rn.Propose([]byte("a")); err != nil {
		t.Fatal(err)
	}
	c.process()
	// Index 1 is the bootstrap entry, 2 the no-op, 3 the proposal.
	if got := nd.rn.Status().Commit; got != 1 {
		t.Fatalf("commit %d before anything new is durable, want 1", got)
	}
	c.persistAll(nd)
	if got := nd.rn.Status().Commit; got != 3 {
		t.Fatalf("commit %d after persisting, want 3", got)
	}
}

func TestReadyDoesNotRepeatEntries(t *testing.T) {
	c := newCluster(1, 5, nil)
	c.async = true
	nd := c.nodes[1]
	_ = nd.rn.Campaign()
	seen := map[uint64]int{}
	for i := 0; i < 5; i++ {
		if nd.rn.r.role == RoleLeader {
			_ = nd.rn.Propose([]byte("x"))
		}
		rd := nd.rn.Ready()
		for _, e := range rd.Entries {
			seen[e.Index]++
		}
		nd.jobs = append(nd.jobs, persistJob{hs: rd.HardState, ents: rd.Entries, msgsAfter: rd.MessagesAfterPersist})
		nd.rn.Advance(rd)
	}
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("entry %d handed out %d times", i, n)
		}
	}
	c.persistAll(nd)
	if !nd.rn.HasReady() {
		t.Fatal("committed entries should be ready after persisting")
	}
}

func TestRestartKeepsState(t *testing.T) {
	c := newCluster(3, 6, nil)
	electLeader(t, c, 1)
	_ = c.nodes[1].rn.Propose([]byte("a"), []byte("b"))
	c.stabilize()
	c.crash(2)
	c.restart(2)
	st := c.nodes[2].rn.Status()
	if st.Term != c.nodes[1].rn.r.term || st.Commit != 6 || st.LastIndex != 6 {
		t.Fatalf("restarted status %+v", st)
	}
	_ = c.nodes[1].rn.Propose([]byte("c"))
	c.stabilize()
	if got := c.nodes[2].rn.Status().Applied; got != 7 {
		t.Fatalf("applied %d after restart, want 7", got)
	}
	if len(c.errs) > 0 {
		t.Fatal(c.errs)
	}
}

func TestVoteResponseAfterPersist(t *testing.T) {
	c := newCluster(3, 7, func(cfg *Config) { cfg.PreVote = false })
	_ = c.nodes[1].rn.Campaign()
	rd := c.nodes[1].rn.Ready()
	for _, m := range rd.Messages {
		if m.Type == wire.MsgVote {
			t.Fatalf("vote request in Messages (before persist): %+v", m)
		}
	}
	if len(rd.MessagesAfterPersist) != 2 || rd.HardState.Vote != 1 {
		t.Fatalf("want 2 vote requests after persisting vote for self; got %+v hs %+v", rd.MessagesAfterPersist, rd.HardState)
	}
	c.nodes[1].rn.Advance(rd)
	for _, m := range rd.MessagesAfterPersist {
		_ = c.nodes[m.To].rn.Step(m)
		rd2 := c.nodes[m.To].rn.Ready()
		if len(rd2.Messages) != 0 || len(rd2.MessagesAfterPersist) != 1 || rd2.MessagesAfterPersist[0].Type != wire.MsgVoteResp || rd2.HardState.Vote != 1 {
			t.Fatalf("voter %d ready: %+v", m.To, rd2)
		}
		c.nodes[m.To].rn.Advance(rd2)
	}
}

func TestProposalBackpressure(t *testing.T) {
	c := newCluster(3, 8, func(cfg *Config) { cfg.MaxUncommittedEntriesBytes = 1000 })
	electLeader(t, c, 1)
	c.isolate(2)
	c.isolate(3)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		err = c.nodes[1].rn.Propose(make([]byte, 100))
		c.stabilize()
	}
	if !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("err = %v, want ErrProposalDropped", err)
	}
	c.heal()
	for i := 0; i < 3; i++ {
		c.tickAll()
		c.stabilize()
	}
	if err := c.nodes[1].rn.Propose(make([]byte, 100)); err != nil {
		t.Fatalf("after heal: %v", err)
	}
}

func TestReportUnreachableProbesThenReplicates(t *testing.T) {
	c := newCluster(3, 9, nil)
	electLeader(t, c, 1)
	ld := c.nodes[1].rn
	ld.ReportUnreachable(2)
	if st := ld.Status().Progress[2].State; st != StateProbe {
		t.Fatalf("after ReportUnreachable: %v", st)
	}
	c.tickAll() // heartbeat round: the answer triggers a probe
	c.stabilize()
	if st := ld.Status().Progress[2].State; st != StateReplicate {
		t.Fatalf("after a heartbeat round: %v, want replicate", st)
	}
	_ = ld.Propose([]byte("x"))
	c.stabilize()
	if got := c.nodes[2].rn.Status().Applied; got != ld.Status().Commit {
		t.Fatalf("follower applied %d, leader commit %d", got, ld.Status().Commit)
	}
}

func TestFailedSnapshotIsRetried(t *testing.T) {
	c := newCluster(3, 10, nil)
	electLeader(t, c, 1)
	c.isolate(3)
	for i := 0; i < 5; i++ {
		_ = c.nodes[1].rn.Propose([]byte("x"))
	}
	c.stabilize()
	if err := c.nodes[1].storage.CreateSnapshotAndCompact(c.nodes[1].appliedIndex); err != nil {
		t.Fatal(err)
	}
	c.heal()
	// First snapshot attempt fails in transit.
	c.tickAll()
	dropped := 0
	for i := 0; i < 10; i++ {
		c.process()
		for j := len(c.msgs) - 1; j >= 0; j-- {
			if c.msgs[j].Type == wire.MsgSnap && dropped == 0 {
				c.drop(j) // reports failure to the leader
				dropped++
			}
		}
		for len(c.msgs) > 0 {
			c.deliverOne(0)
		}
	}
	if dropped != 1 {
		t.Fatalf("dropped %d snapshots, want 1", dropped)
	}
	if st := c.nodes[1].rn.Status().Progress[3].State; st == StateSnapshot {
		t.Fatal("leader still waiting on a failed snapshot")
	}
	for i := 0; i < 3; i++ {
		c.tickAll()
		c.stabilize()
	}
	if got, want := c.nodes[3].rn.Status().Applied, c.nodes[1].rn.Status().Commit; got != want {
		t.Fatalf("follower 3 applied %d, want %d after the retried snapshot", got, want)
	}
}

func TestLeaderSendsBeforePersistFollowerAcksAfter(t *testing.T) {
	c := newCluster(3, 13, nil)
	electLeader(t, c, 1)
	ld := c.nodes[1].rn
	_ = ld.Propose([]byte("x"))
	rd := ld.Ready()
	if len(rd.Entries) != 1 {
		t.Fatalf("leader Ready entries %d", len(rd.Entries))
	}
	apps := 0
	for _, m := range rd.Messages {
		if m.Type == wire.MsgApp && len(m.Entries) == 1 {
			apps++
		}
	}
	if apps != 2 {
		t.Fatalf("leader must send MsgApp before its own fsync: %d in Messages", apps)
	}
	ld.Advance(rd)
	f := c.nodes[2].rn
	for _, m := range rd.Messages {
		if m.To == 2 {
			_ = f.Step(m)
		}
	}
	frd := f.Ready()
	if len(frd.Messages) != 0 || len(frd.MessagesAfterPersist) != 1 || frd.MessagesAfterPersist[0].Type != wire.MsgAppResp {
		t.Fatalf("follower ack must wait for persistence: %+v / %+v", frd.Messages, frd.MessagesAfterPersist)
	}
	f.Advance(frd)
}
