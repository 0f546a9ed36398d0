package raft

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// sim_groups_test.go: the multi-group simulation. Each seed builds 3 or 5
// hosts, each running one RawNode of every one of G groups (2..16), all
// groups with the same members (the host IDs). Every group is a sim of
// sim_test.go (its own cluster, storage and checks); what the groups
// share is what a multi-raft host shares:
//
//   - one link per host pair: the messages of every group queue on it in
//     send order and are delivered in batches, so a partition, a delayed
//     link or a dropped burst (a broken connection) hits all groups at once;
//   - the host itself: a crash loses what is not durable in every group and
//     closes its links, a restart brings all groups back; a tick of its
//     clock ticks every group; a slow disk is slow for all;
//   - one log writer: a persist step may make every group's pending Readys
//     durable together (one fsync for all groups).
//
// Client work goes to a changing set of busy groups; the others idle for
// long stretches (and quiesce, in the seeds with quiescence, where hosts
// may also stop ticking quiesced groups and catch them up with
// TickQuiesced before their next input). After every step each touched
// group's safety properties are checked as in the single-group sim, plus:
// every message carries its sender's group, and every log holds only its
// own group's entries. At the end the network heals, every host restarts,
// every group settles with all its proposals resolved, and then commits a
// fresh write in every group.
//
// The shared network and its faults are in sim_groups_net_test.go.
//
//	go test ./raft -run TestSimGroups -seed 1234          # replay one seed
//	go test ./raft -run TestSimGroups -sim.duration 10m   # run seeds for 10 minutes

// simGroupsDefaultBudget keeps TestSimGroups's share of the default
// `go test ./raft` run short (a seed takes about 0.7 s, 4 s with -race,
// so the race-enabled run stops after the first seed); `make sim` runs it
// for DURATION.
const simGroupsDefaultBudget = 2 * time.Second

// simGroupsStepsFactor scales -sim.steps for a multi-group seed, whose
// steps are spread over many groups.
const simGroupsStepsFactor = 2

func TestSimGroups(t *testing.T) {
	steps := *simSteps * simGroupsStepsFactor
	if *simSeed >= 0 {
		h, err := runSimGroups(uint64(*simSeed), steps)
		if err != nil {
			t.Fatalf("seed %d: %v", *simSeed, err)
		}
		t.Logf("seed %d: %s", *simSeed, h.summary())
		return
	}
	budget := *simDuration
	if budget == 0 {
		budget = simGroupsDefaultBudget
		if testing.Short() {
			budget = time.Second
		}
	}
	deadline := time.Now().Add(budget)
	seeds, groups := 0, 0
	var total simStats
	for seed := uint64(1); time.Now().Before(deadline); seed++ {
		h, err := runSimGroups(seed, steps)
		if err != nil {
			t.Fatalf("seed %d: %v\nreplay: go test ./raft -run 'TestSimGroups$' -seed %d", seed, err, seed)
		}
		total.add(h.stats())
		seeds++
		groups += len(h.groups)
	}
	t.Logf("%d seeds (%d groups) passed; totals: %s", seeds, groups, total)
}

// TestSimGroupsDeterministic replays seeds and requires identical runs.
func TestSimGroupsDeterministic(t *testing.T) {
	for _, seed := range []uint64{3, 7} { // 2 and 6 groups: the final checks cost per group
		a, errA := runSimGroups(seed, 1000)
		b, errB := runSimGroups(seed, 1000)
		if (errA == nil) != (errB == nil) || a.stats() != b.stats() || strings.Join(a.trace.lines, "\n") != strings.Join(b.trace.lines, "\n") {
			t.Fatalf("seed %d: two runs differ:\n%v\n%v", seed, a.stats(), b.stats())
		}
	}
}

// hostLink is the directed link between two hosts.
type hostLink [2]uint64

// hostSim is one seeded multi-group run.
type hostSim struct {
	seed uint64
	rnd  *rand.Rand
	step int
	// hosts are the host IDs, also every group's member IDs.
	hosts []uint64
	// groups[g-1] is group g (group IDs start at 1, so a message that
	// was never stamped, Group 0, belongs to none).
	groups []*sim
	// links hold the messages in flight per directed host pair, in send
	// order; linkOrder lists the links in a fixed order (map iteration
	// would make runs differ).
	links     map[hostLink][]wire.Message
	linkOrder []hostLink
	// cut is the one cut map every group's cluster shares: cutting a link
	// cuts it for all groups.
	cut map[[2]uint64]bool
	// delayedUntil holds a link's messages back until that step.
	delayedUntil map[hostLink]int
	// busy are the groups that get client work; the others idle.
	busy []bool
	// slowDisk is a host whose log writer lags (0: none).
	slowDisk uint64
	// quiesce: the groups run with QuiesceAfterTicks. skipQuiesced: hosts
	// do not tick quiesced replicas but count the ticks (skipped, per
	// group and host) and hand them over with TickQuiesced before the
	// replica's next input.
	quiesce      bool
	skipQuiesced bool
	skipped      []map[uint64]uint64
	// calmUntil: before this step no faults are injected (no drops,
	// duplicates, partitions, delays, bursts, crashes, campaigns, wakes or
	// false suspicions), so groups settle, and idle ones quiesce, between
	// storms. A calm stretch starts with a healed network.
	calmUntil int
	// dirty marks the groups touched since their last check.
	dirty []bool
	// delivered counts messages delivered; burstsDropped, links reset;
	// ticksHandedOver, ticks skipped and then given with TickQuiesced.
	delivered, burstsDropped int
	ticksHandedOver          uint64
	// trace interleaves the host actions and every group's; setup says
	// what the seed chose, for failure messages.
	trace traceLog
	setup string
}

// runSimGroups runs one seed for steps steps and the final heal/check.
func runSimGroups(seed uint64, steps int) (h *hostSim, err error) {
	h = newHostSim(seed)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic at step %d: %v\nset-up: %s\nlast actions:\n%s", h.step, p, h.setup, h.lastTrace())
		} else if err != nil {
			err = fmt.Errorf("step %d: %w\nset-up: %s\nlast actions:\n%s", h.step, err, h.setup, h.lastTrace())
		}
	}()
	for h.step = 0; h.step < steps; h.step++ {
		for _, s := range h.groups {
			s.step = h.step
		}
		h.randomStep()
		if err := h.collect(); err != nil {
			return h, err
		}
		if err := h.check(); err != nil {
			return h, err
		}
	}
	return h, h.finish()
}

// newHostSim builds the hosts and groups of one seed.
func newHostSim(seed uint64) *hostSim {
	h := &hostSim{
		seed:         seed,
		trace:        traceLog{keep: 300, show: 100},
		rnd:          rand.New(rand.NewPCG(seed, 0x67726f757073)),
		links:        map[hostLink][]wire.Message{},
		cut:          map[[2]uint64]bool{},
		delayedUntil: map[hostLink]int{},
	}
	nGroups := 2 + h.rnd.IntN(15)
	for g := uint64(1); g <= uint64(nGroups); g++ {
		s := newSim(seed, false, g)
		s.c.cut = h.cut
		s.traceSink = func(line string) { h.tracef("g%d %s", g, line) }
		h.groups = append(h.groups, s)
		h.busy = append(h.busy, h.rnd.IntN(2) == 0)
		h.dirty = append(h.dirty, true)
		h.skipped = append(h.skipped, map[uint64]uint64{})
	}
	h.busy[h.rnd.IntN(nGroups)] = true
	first := h.groups[0]
	h.hosts = slices.Clone(first.c.ids)
	for _, a := range h.hosts {
		for _, b := range h.hosts {
			if a != b {
				h.linkOrder = append(h.linkOrder, hostLink{a, b})
			}
		}
	}
	h.quiesce = first.quiesce
	h.skipQuiesced = h.quiesce && h.rnd.IntN(2) == 0
	if h.rnd.IntN(2) == 0 {
		h.slowDisk = h.pick(h.hosts)
	}
	for i, s := range h.groups {
		s.slowDisk = h.slowDisk
		if h.skipQuiesced {
			g := i
			s.tickNode = func(nd *testNode) { h.tickReplica(g, nd) }
		}
	}
	h.setup = fmt.Sprintf("hosts=%d groups=%d busy=%v quiesce=%v skipQuiesced=%v slowDisk=%d; group 1 (the others differ in snapEvery only): %s",
		len(h.hosts), nGroups, h.busy, h.quiesce, h.skipQuiesced, h.slowDisk, strings.TrimSpace(first.trace.last()))
	h.tracef("%s", h.setup)
	return h
}

func (h *hostSim) tracef(format string, args ...any) {
	h.trace.add(h.step, fmt.Sprintf(format, args...))
}

func (h *hostSim) lastTrace() string { return h.trace.last() }

func (h *hostSim) pick(ids []uint64) uint64 { return pickID(h.rnd, ids) }

func (h *hostSim) calm() bool { return h.step < h.calmUntil }

// up reports whether host id is up (every group agrees: hosts crash whole).
func (h *hostSim) up(id uint64) bool { return !h.groups[0].c.nodes[id].down }

func (h *hostSim) liveHosts() []uint64 {
	var ids []uint64
	for _, id := range h.hosts {
		if h.up(id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// tickReplica is a host's tick of group g's replica nd when hosts skip
// quiesced replicas.
func (h *hostSim) tickReplica(g int, nd *testNode) {
	if nd.rn.Quiesced() {
		h.skipped[g][nd.id]++
		return
	}
	if h.skipped[g][nd.id] > 0 {
		panic(fmt.Sprintf("group %d: replica %d woke with %d skipped ticks not handed over", g+1, nd.id, h.skipped[g][nd.id]))
	}
	nd.rn.Tick()
}

// catchUp hands group g's replica at host id the ticks its host skipped
// while it was quiesced. Call it before any input to the replica.
func (h *hostSim) catchUp(g int, id uint64) {
	if n := h.skipped[g][id]; n > 0 {
		delete(h.skipped[g], id)
		h.ticksHandedOver += n
		if nd := h.groups[g].c.nodes[id]; !nd.down {
			nd.rn.TickQuiesced(n)
		}
	}
}

// catchUpGroup is catchUp for every replica of group g.
func (h *hostSim) catchUpGroup(g int) {
	for _, id := range h.hosts {
		h.catchUp(g, id)
	}
}

// touch marks group g for checking.
func (h *hostSim) touch(g int) { h.dirty[g] = true }

// randomStep performs one random host-level action.
func (h *hostSim) randomStep() {
	rnd := h.rnd
	if !h.calm() && rnd.IntN(1000) < 4 {
		h.calmUntil = h.step + 200 + rnd.IntN(600)
		h.heal()
		h.tracef("calm until step %d (heal)", h.calmUntil)
	}
	calm := h.calm()
	switch k := rnd.IntN(1000); {
	case k < 20: // one host's clock ticks: every replica on it
		if id := h.pick(h.liveHosts()); id != 0 {
			for g, s := range h.groups {
				s.tickAhead(id)
				h.touch(g)
			}
			h.tracef("tick host %d", id)
		}
	case k < 40: // real time advances: every host ticks
		for g, s := range h.groups {
			s.tickAll()
			h.touch(g)
		}
		h.tracef("tick all")
	case k < 380:
		h.deliver()
	case k < 392: // drop one message
		if l, ok := h.pickLink(false); ok && !calm {
			q := h.links[l]
			i := rnd.IntN(len(q))
			m := q[i]
			h.links[l] = slices.Delete(q, i, i+1)
			h.tracef("drop %s", groupMsgString(m))
			h.lose(m)
		}
	case k < 396: // duplicate one message
		if l, ok := h.pickLink(false); ok && !calm {
			q := h.links[l]
			m := q[rnd.IntN(len(q))]
			h.links[l] = append(q, m)
			h.tracef("dup %s", groupMsgString(m))
		}
	case k < 650:
		h.ready()
	case k < 810:
		h.persist()
	case k < 880: // client writes to a random busy group
		if g := h.pickBusy(); g >= 0 {
			s := h.groups[g]
			h.catchUpGroup(g)
			if id := s.anyLeader(); id != 0 {
				s.propose(id)
			}
			h.touch(g)
		}
	case k < 884 && !calm:
		h.partition()
	case k < 889:
		h.heal()
		h.tracef("heal")
	case k < 892 && !calm: // a slow link: its messages wait
		l := h.linkOrder[rnd.IntN(len(h.linkOrder))]
		h.delayedUntil[l] = h.step + 10 + rnd.IntN(50)
		h.tracef("delay %d->%d until step %d", l[0], l[1], h.delayedUntil[l])
	case k < 895 && !calm:
		h.dropBurst()
	case k < 897 && !calm:
		h.crash()
	case k < 907:
		h.restart()
	case k < 912: // leadership transfer in a busy group
		if g := h.pickBusy(); g >= 0 {
			s := h.groups[g]
			h.catchUpGroup(g)
			if id := s.c.leader(); id != 0 {
				to := s.pick(s.c.nodes[id].rn.r.voters())
				s.c.nodes[id].rn.TransferLeadership(to)
				h.tracef("g%d transfer %d -> %d", g+1, id, to)
			}
			h.touch(g)
		}
	case k < 930: // read in a busy group
		if g := h.pickBusy(); g >= 0 {
			h.catchUpGroup(g)
			h.groups[g].read()
			h.touch(g)
		}
	case k < 935: // campaign in a busy group
		if g := h.pickBusy(); g >= 0 && !calm {
			if id := h.pick(h.liveHosts()); id != 0 {
				h.catchUp(g, id)
				_ = h.groups[g].c.nodes[id].rn.Campaign()
				h.tracef("g%d campaign %d", g+1, id)
			}
			h.touch(g)
		}
	case k < 943: // a group turns busy or idle
		g := rnd.IntN(len(h.groups))
		h.busy[g] = !h.busy[g]
		h.tracef("g%d busy=%v", g+1, h.busy[g])
	case k < 946 && h.quiesce && !calm: // a host's transport reconnects: wake all
		if id := h.pick(h.liveHosts()); id != 0 {
			for g, s := range h.groups {
				h.catchUp(g, id)
				s.c.nodes[id].rn.Wake()
				h.touch(g)
			}
			h.tracef("wake host %d", id)
		}
	case k < 949 && h.quiesce: // a false suspicion, in every group at once
		id, o := h.pick(h.liveHosts()), h.pick(h.hosts)
		if id != 0 && o != id && !calm {
			h.reportUnreachable(id, o)
		}
	}
	if lease := h.groups[0].lease; lease && rnd.IntN(3) == 0 {
		// As in the single-group sim, lease reads are frequent.
		if g := h.pickBusy(); g >= 0 {
			h.catchUpGroup(g)
			h.groups[g].read()
			h.touch(g)
		}
	}
}

// pickBusy returns a random busy group's index, or -1.
func (h *hostSim) pickBusy() int {
	var gs []int
	for g, b := range h.busy {
		if b {
			gs = append(gs, g)
		}
	}
	if len(gs) == 0 {
		return -1
	}
	return gs[h.rnd.IntN(len(gs))]
}

// ready runs one loop turn of a host: one group's Ready, or every
// group's that has one.
func (h *hostSim) ready() {
	type rep struct {
		g  int
		id uint64
	}
	var rs []rep
	for g, s := range h.groups {
		for _, id := range h.liveHosts() {
			if s.c.nodes[id].rn.HasReady() {
				rs = append(rs, rep{g, id})
			}
		}
	}
	if len(rs) == 0 {
		return
	}
	r := rs[h.rnd.IntN(len(rs))]
	if h.rnd.IntN(4) == 0 {
		h.tracef("g%d ready %d", r.g+1, r.id)
		h.groups[r.g].c.handleReady(h.groups[r.g].c.nodes[r.id])
		h.touch(r.g)
		return
	}
	h.tracef("ready host %d (all groups)", r.id)
	for g, s := range h.groups {
		if nd := s.c.nodes[r.id]; nd.rn.HasReady() {
			s.c.handleReady(nd)
			h.touch(g)
		}
	}
}

// persist runs the log writer of a host with pending Readys: one group's
// oldest, or (one fsync for all) every group's.
func (h *hostSim) persist() {
	var busy []uint64
	for _, id := range h.liveHosts() {
		for _, s := range h.groups {
			if len(s.c.nodes[id].jobs) > 0 {
				busy = append(busy, id)
				break
			}
		}
	}
	id := h.pick(busy)
	if id == 0 || (id == h.slowDisk && h.rnd.IntN(5) != 0) {
		return
	}
	var gs []int
	for g, s := range h.groups {
		if len(s.c.nodes[id].jobs) > 0 {
			gs = append(gs, g)
		}
	}
	if h.rnd.IntN(4) == 0 {
		g := gs[h.rnd.IntN(len(gs))]
		h.tracef("g%d persist %d", g+1, id)
		h.catchUp(g, id)
		h.groups[g].c.persistOne(h.groups[g].c.nodes[id])
		h.touch(g)
		return
	}
	h.tracef("persist host %d (all groups)", id)
	for _, g := range gs {
		h.catchUp(g, id)
		h.groups[g].c.persistAll(h.groups[g].c.nodes[id])
		h.touch(g)
	}
}

// crash crashes a host: every group loses what is not durable there, and
// the host's connections close with what was queued on them.
func (h *hostSim) crash() {
	live := h.liveHosts()
	if len(live) < 2 {
		return
	}
	// Prefer a host with Readys not yet durable.
	var pending []uint64
	for _, id := range live {
		for _, s := range h.groups {
			if len(s.c.nodes[id].jobs) > 0 {
				pending = append(pending, id)
				break
			}
		}
	}
	id := h.pick(live)
	if len(pending) > 0 && h.rnd.IntN(4) != 0 {
		id = h.pick(pending)
	}
	h.tracef("crash host %d", id)
	for g, s := range h.groups {
		s.c.crash(id)
		s.ahead[id] = 0
		s.stats.crashes++
		delete(h.skipped[g], id)
		h.touch(g)
	}
	for _, l := range h.linkOrder {
		if l[0] == id || l[1] == id {
			q := h.links[l]
			delete(h.links, l)
			for _, m := range q {
				h.lose(m)
			}
		}
	}
	for g, s := range h.groups {
		h.catchUpGroup(g)
		s.maybeReportDown(id)
	}
}

// restart brings a crashed host back: every group from its durable state.
func (h *hostSim) restart() {
	var down []uint64
	for _, id := range h.hosts {
		if !h.up(id) {
			down = append(down, id)
		}
	}
	id := h.pick(down)
	if id == 0 {
		return
	}
	h.tracef("restart host %d", id)
	for g, s := range h.groups {
		s.c.restart(id)
		h.touch(g)
	}
}

// check runs each touched group's safety checks, and checks that its
// logs hold only its own entries.
func (h *hostSim) check() error {
	for g, s := range h.groups {
		if !h.dirty[g] {
			continue
		}
		h.dirty[g] = false
		if err := s.check(); err != nil {
			return fmt.Errorf("group %d: %w", g+1, err)
		}
		if err := checkOwnEntries(s); err != nil {
			return err
		}
	}
	return nil
}

// checkOwnEntries checks that every live replica of s's group holds only
// entries proposed in that group (or no data: no-ops, bootstrap).
func checkOwnEntries(s *sim) error {
	for _, id := range s.c.ids {
		nd := s.c.nodes[id]
		if nd.down {
			continue
		}
		_, ents := nodeLog(nd)
		for _, e := range ents {
			if e.Type == wire.EntryNormal && len(e.Data) > 0 && !strings.HasPrefix(string(e.Data), s.dataPrefix) {
				return fmt.Errorf("group %d: node %d holds entry %d/%d %q of another group", s.group, id, e.Term, e.Index, e.Data)
			}
		}
	}
	return nil
}

// finish heals the network, hands every message still in flight to its
// group, catches up skipped ticks, and runs each group's final checks
// (sim.finish: settle, every proposal resolved, identical histories;
// quiescence if on). Then every group must commit a fresh write.
func (h *hostSim) finish() error {
	h.step = -1
	h.heal()
	for _, l := range h.linkOrder {
		for _, m := range h.links[l] {
			c := h.groups[m.Group-1].c
			c.msgs = append(c.msgs, m)
		}
	}
	clear(h.links)
	for g, s := range h.groups {
		h.catchUpGroup(g)
		s.tickNode = nil
		s.step = -1
	}
	h.tracef("final heal")
	for g, s := range h.groups {
		if err := s.finish(); err != nil {
			return fmt.Errorf("group %d: %w", g+1, err)
		}
		if err := checkOwnEntries(s); err != nil {
			return err
		}
	}
	for g, s := range h.groups {
		if err := s.finalWrite(); err != nil {
			return fmt.Errorf("group %d: %w", g+1, err)
		}
	}
	return nil
}

// finalWrite proposes one more entry at the settled group's leader and
// requires every member to apply it: the group makes progress after
// healing (and after quiescing, when on). A leader that refuses (a
// transfer still under way) is asked again after a tick, and a write
// that a new leader overwrote is written again.
func (s *sim) finalWrite() error {
	c := s.c
	data := s.dataPrefix + "final"
	var at simProposal // where a leader accepted the write; index 0: nowhere yet
	for round := 0; round < 100; round++ {
		if h, ok := c.history[at.index]; at.index != 0 && ok && h.term != at.term {
			at = simProposal{}
		}
		if lead := c.leader(); at.index == 0 && lead != 0 {
			rn := c.nodes[lead].rn
			last := rn.r.log.lastIndex()
			if err := rn.Propose([]byte(data)); err == nil {
				at = simProposal{index: last + 1, term: rn.r.term, data: data}
			} else {
				s.tracef("final write at %d: %v", lead, err)
			}
		}
		c.stabilize()
		if at.index != 0 && s.allApplied(at) {
			return s.check()
		}
		c.tickAll()
	}
	return fmt.Errorf("liveness: final write %q not applied everywhere (accepted at %d/%d):\n%s", data, at.index, at.term, s.dump())
}

// allApplied reports whether every live node applied p.
func (s *sim) allApplied(p simProposal) bool {
	if h, ok := s.c.history[p.index]; !ok || h.term != p.term || h.data != p.data {
		return false
	}
	for _, id := range s.c.ids {
		if nd := s.c.nodes[id]; !nd.down && nd.appliedIndex < p.index {
			return false
		}
	}
	return true
}

// stats sums the groups' stats.
func (h *hostSim) stats() simStats {
	var t simStats
	for _, s := range h.groups {
		t.add(s.stats)
	}
	return t
}

func (h *hostSim) summary() string {
	return fmt.Sprintf("hosts=%d groups=%d quiesce=%v skipQuiesced=%v delivered=%d burstsDropped=%d ticksHandedOver=%d %s",
		len(h.hosts), len(h.groups), h.quiesce, h.skipQuiesced, h.delivered, h.burstsDropped, h.ticksHandedOver, h.stats())
}

// TestSimGroupsCatchesMixups makes sure the cross-group checks bite: a
// replica that stamps another group on its messages, and a log that
// holds another group's entry, are both reported.
func TestSimGroupsCatchesMixups(t *testing.T) {
	h := newHostSim(3)
	h.groups[0].c.nodes[1].rn.r.group = 2
	var err error
	for h.step = 0; h.step < 2000 && err == nil; h.step++ {
		h.randomStep()
		err = h.collect()
	}
	if err == nil || !strings.Contains(err.Error(), "stamped with group 2") {
		t.Fatalf("a replica stamping the wrong group went unnoticed: %v", err)
	}

	h = newHostSim(3)
	s := h.groups[0]
	s.c.tickAll()
	_ = s.c.nodes[1].rn.Campaign()
	s.c.stabilize()
	if err := checkOwnEntries(s); err != nil {
		t.Fatal(err)
	}
	if err := s.c.nodes[1].rn.Propose([]byte(h.groups[1].dataPrefix + "p1")); err != nil {
		t.Fatal(err)
	}
	s.c.stabilize()
	if err := checkOwnEntries(s); err == nil || !strings.Contains(err.Error(), "of another group") {
		t.Fatalf("another group's entry in a log went unnoticed: %v", err)
	}
}
