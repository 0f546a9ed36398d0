package raft

import (
	"maps"
	"slices"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// quiesceAfter is the QuiesceAfterTicks of the tests here.
const quiesceAfter = 5

// newQuiesceCluster starts n voters with quiescence on, elects node 1 and
// commits one proposal.
func newQuiesceCluster(t *testing.T, n int, cfgFn func(*Config)) *cluster {
	t.Helper()
	return newQuiesceClusterSeed(t, n, 7, cfgFn)
}

// newQuiesceClusterSeed is newQuiesceCluster with the cluster's seed.
func newQuiesceClusterSeed(t *testing.T, n int, seed uint64, cfgFn func(*Config)) *cluster {
	t.Helper()
	c := newCluster(n, seed, func(cfg *Config) {
		cfg.QuiesceAfterTicks = quiesceAfter
		if cfgFn != nil {
			cfgFn(cfg)
		}
	})
	if c.nodes[1].cfg.LeaseReads {
		// Let the start-up quiet window pass (lease_test.go).
		for _, id := range c.ids {
			for i := 0; i < c.nodes[id].cfg.ElectionTicks; i++ {
				c.nodes[id].rn.Tick()
			}
		}
	}
	electLeader(t, c, 1)
	if err := c.nodes[1].rn.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	c.stabilize()
	return c
}

// allQuiesced reports whether every live node is quiesced.
func (c *cluster) allQuiesced() bool {
	for _, id := range c.ids {
		if nd := c.nodes[id]; !nd.down && !nd.rn.Quiesced() {
			return false
		}
	}
	return true
}

// settleQuiesced ticks and stabilizes until every live node is quiesced;
// it returns the ticks that took.
func settleQuiesced(t *testing.T, c *cluster) int {
	t.Helper()
	for i := 1; i <= 100; i++ {
		c.tickAll()
		c.stabilize()
		if c.allQuiesced() {
			return i
		}
	}
	t.Fatalf("not quiesced after 100 ticks:\n%s", (&sim{c: c}).dump())
	return 0
}

// tickCounting ticks every live node n times, handling Readys and
// delivering messages after each tick, and returns how many messages the
// Readys held.
func tickCounting(c *cluster, n int) int {
	before := c.sent
	for i := 0; i < n; i++ {
		c.tickAll()
		c.stabilize()
	}
	return c.sent - before
}

func TestQuiesceSilentGroup(t *testing.T) {
	c := newQuiesceCluster(t, 3, nil)
	ticks := settleQuiesced(t, c)
	// Idle for quiesceAfter ticks, then one notice round.
	if ticks > quiesceAfter+1 {
		t.Errorf("quiesced after %d ticks, want <= %d", ticks, quiesceAfter+1)
	}
	if n := tickCounting(c, 1000); n != 0 {
		t.Fatalf("quiesced group sent %d messages over 1000 ticks, want 0", n)
	}
	for _, id := range c.ids {
		st := c.nodes[id].rn.Status()
		if !st.Quiesced || st.Term != 2 {
			t.Fatalf("node %d after 1000 quiet ticks: quiesced=%v term=%d", id, st.Quiesced, st.Term)
		}
	}
	if c.nodes[1].rn.Status().Role != RoleLeader {
		t.Fatal("leader stepped down while quiesced (CheckQuorum must not run)")
	}
	// Without quiescence the same group heartbeats every tick.
	c2 := newCluster(3, 7, nil)
	electLeader(t, c2, 1)
	if n := tickCounting(c2, 100); n < 200 {
		t.Fatalf("idle group without quiescence sent %d messages over 100 ticks", n)
	}
}

func TestQuiesceWakeOnPropose(t *testing.T) {
	c := newQuiesceCluster(t, 3, nil)
	settleQuiesced(t, c)
	tickCounting(c, 50)
	ld := c.nodes[1].rn
	if err := ld.Propose([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if ld.Quiesced() {
		t.Fatal("leader still quiesced after a proposal")
	}
	c.stabilize()
	for _, id := range c.ids {
		st := c.nodes[id].rn.Status()
		if st.Quiesced || st.Commit != st.LastIndex || st.Commit != c.nodes[1].rn.LastIndex() {
			t.Fatalf("node %d after proposal: %+v", id, st)
		}
	}
	// Heartbeats resume; CheckQuorum does not depose the leader for the
	// silence before the wake.
	c.tickAll()
	if !c.nodes[1].rn.HasReady() {
		t.Fatal("woken leader does not heartbeat")
	}
	c.stabilize()
	settleQuiesced(t, c)
	if c.leader() != 1 {
		t.Fatal("leadership changed")
	}
}

// TestQuiesceLeaderDown: the leader crashes while the group is quiesced;
// the runtime reports it unreachable at the followers (both, or only one)
// and a new leader is elected after the usual election timeout: the same
// number of ticks as when an awake group loses its leader, seed for seed.
func TestQuiesceLeaderDown(t *testing.T) {
	// electAfter ticks every live node until a leader is elected.
	electAfter := func(c *cluster) int {
		ticks := 0
		for ; ticks < 10*c.nodes[2].cfg.ElectionTicks && c.leader() == 0; ticks++ {
			c.tickAll()
			c.stabilize()
		}
		return ticks
	}
	hist := map[string][]int{}
	for seed := uint64(1); seed <= 20; seed++ {
		for _, reportBoth := range []bool{true, false} {
			c := newQuiesceClusterSeed(t, 3, seed, nil)
			settleQuiesced(t, c)
			tickCounting(c, 200)
			c.crash(1)
			c.nodes[2].rn.ReportUnreachable(1)
			if reportBoth {
				c.nodes[3].rn.ReportUnreachable(1)
			}
			if c.nodes[2].rn.Quiesced() {
				t.Fatal("follower still quiesced after its leader was reported unreachable")
			}
			ticks := electAfter(c)
			e := c.nodes[2].cfg.ElectionTicks
			// A follower campaigns after a timeout in [E, 2E); a split
			// vote (both time out in one tick) costs one more timeout.
			if ticks < e || ticks >= 4*e {
				t.Fatalf("seed %d reportBoth=%v: elected %d ticks after the report, want within [%d, %d)", seed, reportBoth, ticks, e, 4*e)
			}
			key := "quiesced, leader reported at one follower"
			if reportBoth {
				key = "quiesced, leader reported at both followers"
			}
			hist[key] = append(hist[key], ticks)
		}
		// The same without quiescence: the leader crashes right after a
		// heartbeat reached both followers.
		c := newCluster(3, seed, nil)
		electLeader(t, c, 1)
		c.tickAll()
		c.stabilize()
		c.crash(1)
		hist["awake"] = append(hist["awake"], electAfter(c))
	}
	for _, k := range slices.Sorted(maps.Keys(hist)) {
		v := hist[k]
		slices.Sort(v)
		t.Logf("%s: ticks to a new leader over 20 seeds: min %d, median %d, max %d", k, v[0], v[len(v)/2], v[len(v)-1])
	}
}

// TestQuiesceFalseSuspicion: a follower wrongly suspects the leader; its
// poke wakes the leader, which heartbeats, and no election happens.
func TestQuiesceFalseSuspicion(t *testing.T) {
	for _, how := range []string{"report", "wake"} {
		c := newQuiesceCluster(t, 3, nil)
		settleQuiesced(t, c)
		if how == "report" {
			c.nodes[3].rn.ReportUnreachable(1)
		} else {
			c.nodes[3].rn.Wake()
		}
		c.stabilize()
		if c.nodes[1].rn.Quiesced() {
			t.Fatalf("%s: leader not woken by the follower's poke", how)
		}
		for i := 0; i < 30; i++ {
			c.tickAll()
			c.stabilize()
		}
		if c.leader() != 1 || c.nodes[1].rn.Term() != 2 {
			t.Fatalf("%s: leader %d term %d, want 1 in term 2", how, c.leader(), c.nodes[1].rn.Term())
		}
		if !c.allQuiesced() {
			t.Fatalf("%s: group did not quiesce again", how)
		}
	}
}

// TestQuiesceFollowerSuspected: the leader's transport reports a follower
// down; the leader wakes and CheckQuorum runs again.
func TestQuiesceFollowerSuspected(t *testing.T) {
	c := newQuiesceCluster(t, 3, nil)
	settleQuiesced(t, c)
	tickCounting(c, 100)
	c.isolate(1)
	c.nodes[1].rn.ReportUnreachable(2)
	if c.nodes[1].rn.Quiesced() {
		t.Fatal("leader still quiesced after a follower was reported unreachable")
	}
	e := c.nodes[1].cfg.ElectionTicks
	for i := 0; i < e-1; i++ {
		c.nodes[1].rn.Tick()
		c.stabilize()
	}
	if !c.nodes[1].rn.IsLeader() {
		t.Fatal("woken leader stepped down before an election timeout passed (stale CheckQuorum readings)")
	}
	c.nodes[1].rn.Tick()
	if c.nodes[1].rn.IsLeader() {
		t.Fatal("isolated leader still leads an election timeout after waking")
	}
}

// TestQuiesceFollowerBehind: a follower that lacks entries never
// quiesces, and its leader does not either.
func TestQuiesceFollowerBehind(t *testing.T) {
	c := newQuiesceCluster(t, 3, nil)
	c.cut[[2]uint64{1, 3}] = true
	if err := c.nodes[1].rn.Propose([]byte("y")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3*quiesceAfter; i++ {
		c.nodes[1].rn.Tick()
		c.nodes[2].rn.Tick()
		c.stabilize()
	}
	if c.nodes[1].rn.Quiesced() || c.nodes[2].rn.Quiesced() || c.nodes[3].rn.Quiesced() {
		t.Fatal("quiesced while a follower is behind")
	}
	// A notice that reaches a behind follower (forged here) is refused.
	f := c.nodes[3].rn
	last := c.nodes[1].rn.LastIndex()
	m := wire.Message{From: 1, To: 3, Term: f.Term(), Type: wire.MsgHeartbeat, Commit: last,
		Context: []byte{0, 0, 0, 0, 0, 0, 0, 9, quiesceNoticeMarker}}
	if err := f.Step(m); err != nil {
		t.Fatal(err)
	}
	if f.Quiesced() {
		t.Fatal("a follower that is behind quiesced on a notice")
	}
	rd := f.Ready()
	for _, m := range rd.Messages {
		if _, _, q, _ := decodeReadRound(m.Context); q {
			t.Fatal("a follower that is behind answered a notice as quiesced")
		}
	}
	f.Advance(rd)
	delete(c.cut, [2]uint64{1, 3})
	settleQuiesced(t, c)
}

// TestQuiesceLostNotice: notices are retried until every follower
// answered; answers to earlier notices do not wake the quiesced leader.
func TestQuiesceLostNotice(t *testing.T) {
	c := newQuiesceCluster(t, 3, nil)
	c.cut[[2]uint64{1, 3}] = true
	for i := 0; i < 3*quiesceAfter; i++ {
		c.tickAll()
		c.stabilize()
	}
	if c.nodes[1].rn.Quiesced() || !c.nodes[2].rn.Quiesced() || c.nodes[3].rn.Quiesced() {
		t.Fatalf("quiesced: %v %v %v, want false true false", c.nodes[1].rn.Quiesced(), c.nodes[2].rn.Quiesced(), c.nodes[3].rn.Quiesced())
	}
	delete(c.cut, [2]uint64{1, 3})
	// Keep node 2's answers of the next notice round back, let node 3's
	// through, then deliver node 2's late.
	c.tickAll()
	c.process()
	c.deliverMatching(func(m wire.Message) bool { return m.From == 1 })
	c.process()
	late := c.takeMatching(func(m wire.Message) bool { return m.From == 2 })
	c.stabilize()
	if !c.allQuiesced() {
		t.Fatalf("not all quiesced after the notice reached node 3")
	}
	c.msgs = append(c.msgs, late...)
	c.stabilize()
	if !c.nodes[1].rn.Quiesced() {
		t.Fatal("a late quiesce answer woke the leader")
	}
}

// TestQuiesceReads: a read wakes a quiesced leader; with LeaseReads, an
// expired lease is not used: the read takes a heartbeat round.
func TestQuiesceReads(t *testing.T) {
	c := newQuiesceCluster(t, 3, func(cfg *Config) { cfg.LeaseReads = true })
	settleQuiesced(t, c)
	tickCounting(c, 3*c.nodes[1].cfg.ElectionTicks)
	ld := c.nodes[1].rn
	if err := ld.ReadIndex([]byte("r1")); err != nil {
		t.Fatal(err)
	}
	if ld.Quiesced() {
		t.Fatal("leader still quiesced after ReadIndex")
	}
	if !ld.HasReady() {
		t.Fatal("read queued no heartbeat round")
	}
	rd := ld.Ready()
	if len(rd.ReadStates) != 0 {
		t.Fatalf("read answered at once on a lease that expired while quiesced: %+v", rd.ReadStates)
	}
	c.send(rd.Messages)
	ld.Advance(rd)
	c.stabilize()
	rs := c.nodes[1].readStates
	if len(rs) != 1 || rs[0].Lease || string(rs[0].Ctx) != "r1" {
		t.Fatalf("read states %+v, want one round-confirmed read r1", rs)
	}
	// The round renewed the lease: the next read is a lease read.
	if err := ld.ReadIndex([]byte("r2")); err != nil {
		t.Fatal(err)
	}
	c.stabilize()
	if rs := c.nodes[1].readStates; len(rs) != 2 || !rs[1].Lease {
		t.Fatalf("read states %+v, want r2 under the lease", rs)
	}
}

// TestQuiesceNoLeaseAcrossQuiescence: a lease taken before quiescence is
// not used after it, even when the leader counted no ticks meanwhile (a
// runtime that skipped them): the first read after a wake takes a round.
func TestQuiesceNoLeaseAcrossQuiescence(t *testing.T) {
	c := newQuiesceCluster(t, 3, func(cfg *Config) { cfg.LeaseReads = true })
	settleQuiesced(t, c)
	ld := c.nodes[1].rn
	// Ticks-wise the lease from the notice rounds is still running.
	if l := &ld.r.readOnly.lease; !l.held || ld.r.tickCount >= l.start+uint64(ld.r.leaseTicks) {
		t.Fatalf("test needs a lease that is unexpired by ticks: %+v at tick %d", *l, ld.r.tickCount)
	}
	if ld.r.leaseValid() {
		t.Fatal("quiesced leader holds a valid lease")
	}
	if rs := readNow(t, c, 1, "r1"); len(rs) != 0 {
		t.Fatalf("read after quiescence answered at once: %+v", rs)
	}
	c.stabilize()
	if rs := c.nodes[1].readStates; len(rs) != 1 || rs[0].Lease {
		t.Fatalf("read states %+v, want one round-confirmed read", rs)
	}
}

// TestQuiesceTickQuiesced: skipping ticks and accounting for them later
// gives the same state as ticking all along.
func TestQuiesceTickQuiesced(t *testing.T) {
	a := newQuiesceCluster(t, 3, nil)
	b := newQuiesceCluster(t, 3, nil)
	settleQuiesced(t, a)
	settleQuiesced(t, b)
	tickCounting(a, 500)
	for _, id := range b.ids {
		b.nodes[id].rn.TickQuiesced(500)
	}
	for _, id := range a.ids {
		ra, rb := a.nodes[id].rn.r, b.nodes[id].rn.r
		if ra.tickCount != rb.tickCount || ra.electionElapsed != rb.electionElapsed || ra.quiesced != rb.quiesced {
			t.Fatalf("node %d: ticked %d/%d/%v, skipped %d/%d/%v", id, ra.tickCount, ra.electionElapsed, ra.quiesced, rb.tickCount, rb.electionElapsed, rb.quiesced)
		}
	}
}

// TestQuiesceConfig: the field is validated; nodes without it never
// quiesce, and a leader whose follower lacks it keeps heartbeating.
func TestQuiesceConfig(t *testing.T) {
	if _, err := NewRawNode(Config{ID: 1, Storage: NewMemoryStorage(wire.ConfState{Voters: []uint64{1}}), QuiesceAfterTicks: -1}); err == nil {
		t.Fatal("negative QuiesceAfterTicks accepted")
	}
	c := newCluster(3, 7, func(cfg *Config) {
		if cfg.ID != 3 {
			cfg.QuiesceAfterTicks = quiesceAfter
		}
	})
	electLeader(t, c, 1)
	for i := 0; i < 4*quiesceAfter; i++ {
		c.tickAll()
		c.stabilize()
	}
	if c.nodes[1].rn.Quiesced() || c.nodes[3].rn.Quiesced() {
		t.Fatal("quiesced although node 3 does not support it")
	}
}

// deliverMatching delivers, in order, the queued messages that match.
func (c *cluster) deliverMatching(f func(wire.Message) bool) {
	for _, m := range c.takeMatching(f) {
		c.msgs = append(c.msgs, m)
		c.deliverOne(len(c.msgs) - 1)
	}
}

// takeMatching removes and returns the queued messages that match.
func (c *cluster) takeMatching(f func(wire.Message) bool) []wire.Message {
	var took, keep []wire.Message
	for _, m := range c.msgs {
		if f(m) {
			took = append(took, m)
		} else {
			keep = append(keep, m)
		}
	}
	c.msgs = keep
	return took
}
