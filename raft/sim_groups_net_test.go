package raft

import (
	"fmt"
	"slices"

	"github.com/raftpipe/raftpipe/wire"
)

// sim_groups_net_test.go: the shared network of the multi-group
// simulation (sim_groups_test.go): one queue per directed host pair that
// carries every group's messages, and the faults that hit a link or a
// host's links, and so every group, at once.

// pickLink returns a random link with messages on it; with ready set,
// only one that is not delayed.
func (h *hostSim) pickLink(ready bool) (hostLink, bool) {
	var ls []hostLink
	for _, l := range h.linkOrder {
		if len(h.links[l]) > 0 && (!ready || h.step >= h.delayedUntil[l]) {
			ls = append(ls, l)
		}
	}
	if len(ls) == 0 {
		return hostLink{}, false
	}
	return ls[h.rnd.IntN(len(ls))], true
}

// deliver delivers from one link: everything queued on it, or a batch
// from its head (the frames one read returns), or now and then one
// message out of order.
func (h *hostSim) deliver() {
	l, ok := h.pickLink(true)
	if !ok {
		return
	}
	q := h.links[l]
	var batch []wire.Message
	switch k := h.rnd.IntN(8); {
	case k == 0:
		i := h.rnd.IntN(len(q))
		batch = []wire.Message{q[i]}
		q = slices.Delete(q, i, i+1)
	case k < 4:
		batch, q = q, nil
	default:
		n := 1 + h.rnd.IntN(len(q))
		batch = slices.Clone(q[:n])
		q = q[n:]
	}
	h.links[l] = q
	for _, m := range batch {
		g := int(m.Group) - 1
		h.tracef("deliver %s", groupMsgString(m))
		h.catchUp(g, m.To)
		if m.Type == wire.MsgSnap {
			h.catchUp(g, m.From) // the delivery reports to the sender
		}
		h.groups[g].c.deliver(m)
		h.delivered++
		h.touch(g)
	}
}

// lose drops m as lost in transit (a snapshot's sender hears of it).
func (h *hostSim) lose(m wire.Message) {
	g := int(m.Group) - 1
	h.catchUp(g, m.From)
	h.groups[g].c.lost(m)
	h.touch(g)
}

// collect moves what the groups sent onto the host links. Every message
// must carry its sender's group.
func (h *hostSim) collect() error {
	for g, s := range h.groups {
		for _, m := range s.c.msgs {
			if m.Group != uint64(g+1) {
				return fmt.Errorf("group %d sent a message stamped with group %d: %s", g+1, m.Group, groupMsgString(m))
			}
			if m.From == m.To || !slices.Contains(h.hosts, m.To) {
				return fmt.Errorf("group %d sent a message to no other host: %s", g+1, groupMsgString(m))
			}
			l := hostLink{m.From, m.To}
			h.links[l] = append(h.links[l], m)
		}
		s.c.msgs = s.c.msgs[:0]
	}
	return nil
}

// partition isolates a host or cuts one direction of a link, for every
// group at once.
func (h *hostSim) partition() {
	id := h.pick(h.hosts)
	if h.rnd.IntN(2) == 0 {
		h.groups[0].c.isolate(id) // the cut map is shared
		h.tracef("isolate host %d", id)
		for g, s := range h.groups {
			h.catchUpGroup(g)
			s.maybeReportDown(id)
			h.touch(g)
		}
		return
	}
	if o := h.pick(h.hosts); o != id {
		h.cut[[2]uint64{id, o}] = true
		h.tracef("cut %d->%d", id, o)
	}
}

// heal restores every link and its speed.
func (h *hostSim) heal() {
	clear(h.cut)
	clear(h.delayedUntil)
}

// dropBurst loses everything queued on one link, as a connection that
// broke; both ends' transports notice, in every group.
func (h *hostSim) dropBurst() {
	l, ok := h.pickLink(false)
	if !ok {
		return
	}
	q := h.links[l]
	delete(h.links, l)
	h.burstsDropped++
	h.tracef("drop burst %d->%d (%d messages)", l[0], l[1], len(q))
	for _, m := range q {
		h.lose(m)
	}
	if h.quiesce {
		h.reportUnreachable(l[0], l[1])
		if h.up(l[1]) {
			h.reportUnreachable(l[1], l[0])
		}
	}
}

// reportUnreachable has host id's transport report host o unreachable
// in every group.
func (h *hostSim) reportUnreachable(id, o uint64) {
	if !h.up(id) {
		return
	}
	for g, s := range h.groups {
		h.catchUp(g, id)
		s.c.nodes[id].rn.ReportUnreachable(o)
		h.touch(g)
	}
	h.tracef("host %d reports %d unreachable in every group", id, o)
}

// groupMsgString is msgString with the message's group.
func groupMsgString(m wire.Message) string {
	return fmt.Sprintf("g%d %s", m.Group, msgString(m))
}
