package raft

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/raftpipe/raftpipe/wire"
)

// harness_test.go: an in-memory cluster that plays the runtime for unit
// tests, scenario scripts and the simulation. Each node persists its
// Readys into a MemoryStorage either at once (sync) or later (async: a
// queue of not-yet-durable Readys that a crash loses).

// persistJob is one Ready whose durable part is not yet written.
type persistJob struct {
	hs        wire.HardState
	snap      *wire.SnapshotMeta
	ents      []wire.Entry
	msgsAfter []wire.Message
}

// appliedEntry is what a node's state machine applied at one index.
type appliedEntry struct {
	term uint64
	typ  wire.EntryType
	data string
}

// testNode is one node with its runtime state.
type testNode struct {
	id      uint64
	rn      *RawNode
	storage *MemoryStorage
	cfg     Config
	// jobs are Readys handed out but not yet durable (async mode).
	jobs []persistJob
	// appliedIndex is the state machine's applied index; smHash a running
	// digest of what it applied (for snapshots).
	appliedIndex uint64
	appliedConf  wire.ConfState
	// readStates collects ReadIndex answers.
	readStates []ReadState
	// down marks a crashed node.
	down bool
}

// cluster is a set of nodes plus a network of queued messages.
type cluster struct {
	nodes map[uint64]*testNode
	ids   []uint64
	// msgs are in flight, in send order.
	msgs []wire.Message
	// cut[from][to] drops messages on that link.
	cut map[[2]uint64]bool
	// async makes persistence lazy: Readys are queued as jobs and made
	// durable by persist().
	async bool
	// history is the global applied history index -> entry, for safety
	// checks.
	history map[uint64]appliedEntry
	// snapHash keeps, per snapshot index, nothing but its existence: the
	// harness state machine is the history itself.
	cfgFn func(*Config)
	rnd   *rand.Rand
	// onApply observes every applied entry (scenario output).
	onApply func(id uint64, e wire.Entry)
	// errs collects safety violations detected during apply.
	errs []string
	// snapEvery makes nodes snapshot+compact after this many applied
	// entries beyond their last snapshot (0 = never).
	snapEvery uint64
	// confAt is the membership after each applied conf-change index, as
	// the first node to apply it computed it.
	confAt map[uint64]wire.ConfState
	// snapshotsSent counts MsgSnap deliveries.
	snapshotsSent int
	// snapKeep is how many entries below the snapshot stay uncompacted.
	snapKeep uint64
	// sent counts the messages nodes handed to the network (Ready.Messages
	// and, once durable, Ready.MessagesAfterPersist), cut links included.
	sent int
}

// newCluster starts n voters with IDs 1..n.
func newCluster(n int, seed uint64, cfgFn func(*Config)) *cluster {
	c := &cluster{
		nodes:   map[uint64]*testNode{},
		cut:     map[[2]uint64]bool{},
		history: map[uint64]appliedEntry{},
		confAt:  map[uint64]wire.ConfState{},
		cfgFn:   cfgFn,
		rnd:     rand.New(rand.NewPCG(seed, 99)),
	}
	voters := make([]uint64, n)
	for i := range voters {
		voters[i] = uint64(i + 1)
	}
	for _, id := range voters {
		c.addNode(id, wire.ConfState{Voters: voters})
	}
	return c
}

// addNode starts a fresh node whose storage has membership cs.
func (c *cluster) addNode(id uint64, cs wire.ConfState) *testNode {
	st := NewMemoryStorage(cs)
	cfg := Config{
		ID: id, ElectionTicks: 10, HeartbeatTicks: 1, Storage: st,
		MaxSizePerMsgBytes: 4096, MaxInflightMsgs: 8, PreVote: true, CheckQuorum: true,
		Rand: rand.New(rand.NewPCG(id, c.rnd.Uint64())),
	}
	if c.cfgFn != nil {
		c.cfgFn(&cfg)
	}
	rn, err := NewRawNode(cfg)
	if err != nil {
		panic(err)
	}
	nd := &testNode{id: id, rn: rn, storage: st, cfg: cfg}
	c.nodes[id] = nd
	c.ids = append(c.ids, id)
	slices.Sort(c.ids)
	return nd
}

// crash loses everything not durable: the node restarts from its storage.
func (c *cluster) crash(id uint64) {
	nd := c.nodes[id]
	nd.jobs = nil
	nd.down = true
	nd.readStates = nil
}

// restart brings a crashed node back from its durable storage.
func (c *cluster) restart(id uint64) {
	nd := c.nodes[id]
	cfg := nd.cfg
	cfg.Applied = nd.appliedIndex
	cfg.Rand = rand.New(rand.NewPCG(id, c.rnd.Uint64()))
	// The state machine survives only as far as durable: our harness state
	// machine is durable at appliedIndex (like a Pebble DB synced on apply).
	rn, err := NewRawNode(cfg)
	if err != nil {
		panic(fmt.Sprintf("restart %d: %v", id, err))
	}
	nd.rn = rn
	nd.down = false
}

// send puts messages on the network unless their link is cut.
func (c *cluster) send(msgs []wire.Message) {
	c.sent += len(msgs)
	for _, m := range msgs {
		if c.cut[[2]uint64{m.From, m.To}] {
			c.lost(m)
			continue
		}
		c.msgs = append(c.msgs, m)
	}
}

// handleReady processes one Ready of node nd: persists it (sync) or queues
// it (async), sends, applies.
func (c *cluster) handleReady(nd *testNode) {
	rd := nd.rn.Ready()
	c.send(rd.Messages)
	job := persistJob{hs: rd.HardState, snap: rd.Snapshot, ents: rd.Entries, msgsAfter: rd.MessagesAfterPersist}
	nd.jobs = append(nd.jobs, job)
	c.apply(nd, rd)
	nd.readStates = append(nd.readStates, rd.ReadStates...)
	nd.rn.Advance(rd)
	if !c.async {
		c.persistAll(nd)
	}
}

// persistOne makes the oldest queued Ready of nd durable and acks it.
func (c *cluster) persistOne(nd *testNode) {
	job := nd.jobs[0]
	nd.jobs = nd.jobs[1:]
	if job.snap != nil {
		if err := nd.storage.ApplySnapshot(*job.snap); err != nil {
			panic(fmt.Sprintf("node %d: %v", nd.id, err))
		}
		// The state machine is restored once the snapshot is durable in
		// the log: a crash in between leaves both at the old state.
		nd.appliedIndex = job.snap.Index
		nd.appliedConf = cloneConfState(job.snap.Conf)
	}
	if err := nd.storage.Append(job.ents); err != nil {
		panic(err)
	}
	if !job.hs.IsEmpty() {
		nd.storage.SetHardState(job.hs)
	}
	switch {
	case len(job.ents) > 0:
		e := job.ents[len(job.ents)-1]
		nd.rn.AckPersisted(e.Index, e.Term)
	case job.snap != nil:
		nd.rn.AckPersisted(job.snap.Index, job.snap.Term)
	}
	c.send(job.msgsAfter)
	if len(nd.jobs) == 0 {
		c.maybeSnapshot(nd)
	}
}

// maybeSnapshot takes a snapshot at the applied index and compacts, as a
// runtime would, once everything handed out is durable (so Storage agrees
// with the applied state).
func (c *cluster) maybeSnapshot(nd *testNode) {
	if c.snapEvery == 0 || nd.appliedIndex <= c.snapKeep {
		return
	}
	snap, _ := nd.storage.Snapshot()
	si := nd.appliedIndex - c.snapKeep
	if si >= snap.Index+c.snapEvery && si <= nd.storage.LastIndex() && si >= nd.storage.FirstIndex() {
		if _, err := nd.storage.CreateSnapshot(si, nd.rn.r.confs.at(si)); err == nil {
			if err := nd.storage.Compact(si); err != nil {
				panic(err)
			}
		}
	}
}

// persistAll makes every queued Ready of nd durable.
func (c *cluster) persistAll(nd *testNode) {
	for len(nd.jobs) > 0 {
		c.persistOne(nd)
	}
}

// apply applies a Ready's snapshot and committed entries to nd's state
// machine, checking state machine safety against the global history.
func (c *cluster) apply(nd *testNode, rd Ready) {
	for _, e := range rd.CommittedEntries {
		if e.Index != nd.appliedIndex+1 {
			c.errs = append(c.errs, fmt.Sprintf("node %d applied %d after %d", nd.id, e.Index, nd.appliedIndex))
		}
		nd.appliedIndex = e.Index
		ae := appliedEntry{term: e.Term, typ: e.Type, data: string(e.Data)}
		if h, ok := c.history[e.Index]; ok && h != ae {
			c.errs = append(c.errs, fmt.Sprintf("state machine safety: node %d applied %+v at %d, history has %+v", nd.id, ae, e.Index, h))
		} else if !ok {
			c.history[e.Index] = ae
		}
		if e.Type == wire.EntryConfChange {
			cc, err := DecodeConfChange(e.Data)
			if err == nil {
				nd.appliedConf = nd.rn.ApplyConfChange(cc)
			}
			if prev, ok := c.confAt[e.Index]; ok && (!slices.Equal(prev.Voters, nd.appliedConf.Voters) || !slices.Equal(prev.Learners, nd.appliedConf.Learners)) {
				c.errs = append(c.errs, fmt.Sprintf("node %d: membership after %d is %v, another node had %v", nd.id, e.Index, nd.appliedConf, prev))
			} else if !ok {
				c.confAt[e.Index] = cloneConfState(nd.appliedConf)
			}
			if want := nd.rn.r.confs.at(e.Index); !slices.Equal(want.Voters, nd.appliedConf.Voters) || !slices.Equal(want.Learners, nd.appliedConf.Learners) {
				c.errs = append(c.errs, fmt.Sprintf("node %d: ApplyConfChange at %d gives %v, log membership %v", nd.id, e.Index, nd.appliedConf, want))
			}
		}
		if c.onApply != nil {
			c.onApply(nd.id, e)
		}
	}
}

// process handles the Readys of every live node once; reports whether any.
func (c *cluster) process() bool {
	did := false
	for _, id := range c.ids {
		nd := c.nodes[id]
		if !nd.down && nd.rn.HasReady() {
			c.handleReady(nd)
			did = true
		}
	}
	return did
}

// deliverOne delivers the message at position i.
func (c *cluster) deliverOne(i int) {
	m := c.msgs[i]
	c.msgs = append(c.msgs[:i], c.msgs[i+1:]...)
	c.deliver(m)
}

// deliver steps m into its recipient, or loses it if the recipient is
// down or the link is cut. m is no longer in c.msgs.
func (c *cluster) deliver(m wire.Message) {
	nd := c.nodes[m.To]
	if nd == nil || nd.down || c.cut[[2]uint64{m.From, m.To}] {
		c.lost(m)
		return
	}
	if m.Type == wire.MsgSnap {
		c.snapshotsSent++
		// The "runtime" streamed the data; the leader side reports it.
		defer func() {
			if s := c.nodes[m.From]; s != nil && !s.down {
				s.rn.ReportSnapshot(m.To, false)
			}
		}()
	}
	if err := nd.rn.Step(m); err != nil {
		panic(fmt.Sprintf("step %+v: %v", m, err))
	}
}

// lost tells the sender's runtime that a snapshot transfer failed (a real
// transport always reports the outcome of a snapshot stream).
func (c *cluster) lost(m wire.Message) {
	if m.Type != wire.MsgSnap {
		return
	}
	if s := c.nodes[m.From]; s != nil && !s.down {
		s.rn.ReportSnapshot(m.To, true)
	}
}

// drop removes the message at position i from the network as lost.
func (c *cluster) drop(i int) {
	m := c.msgs[i]
	c.msgs = append(c.msgs[:i], c.msgs[i+1:]...)
	c.lost(m)
}

// stabilize processes and delivers until nothing is left (persisting
// everything in async mode too). It gives up after maxRounds.
func (c *cluster) stabilize() {
	for round := 0; round < 10000; round++ {
		did := c.process()
		for _, id := range c.ids {
			if nd := c.nodes[id]; !nd.down && len(nd.jobs) > 0 {
				c.persistAll(nd)
				did = true
			}
		}
		if len(c.msgs) > 0 {
			msgs := c.msgs
			c.msgs = nil
			for _, m := range msgs {
				c.msgs = append(c.msgs, m)
				c.deliverOne(len(c.msgs) - 1)
			}
			did = true
		}
		if !did {
			return
		}
	}
	panic("stabilize: no quiescence after 10000 rounds")
}

// tickAll ticks every live node once.
func (c *cluster) tickAll() {
	for _, id := range c.ids {
		if nd := c.nodes[id]; !nd.down {
			nd.rn.Tick()
		}
	}
}

// leader returns the ID of a live leader with the highest term (0 if none).
func (c *cluster) leader() uint64 {
	var best, term uint64
	for _, id := range c.ids {
		nd := c.nodes[id]
		if nd.down {
			continue
		}
		if st := nd.rn.r; st.role == RoleLeader && st.term >= term {
			best, term = id, st.term
		}
	}
	return best
}

// isolate cuts every link to and from id.
func (c *cluster) isolate(id uint64) {
	for _, o := range c.ids {
		if o != id {
			c.cut[[2]uint64{id, o}] = true
			c.cut[[2]uint64{o, id}] = true
		}
	}
}

// heal restores every link. It clears cut in place, so that clusters
// sharing one cut map (the groups of a multi-group simulation) heal
// together.
func (c *cluster) heal() { clear(c.cut) }

// logString renders a node's log as "term/index" pairs for scenarios.
func (nd *testNode) logString() string {
	l := nd.rn.r.log
	var b strings.Builder
	first, last := l.firstIndex(), l.lastIndex()
	if first > 1 {
		fmt.Fprintf(&b, "[snap %d/%d] ", l.termOrZero(first-1), first-1)
	}
	ents, err := l.slice(first, last+1, 1<<62)
	if err != nil {
		return err.Error()
	}
	for i, e := range ents {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d/%d", e.Term, e.Index)
		if e.Type == wire.EntryConfChange {
			b.WriteString("(cc)")
		} else if len(e.Data) > 0 {
			fmt.Fprintf(&b, "(%s)", e.Data)
		}
	}
	return b.String()
}
