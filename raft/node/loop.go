package node

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/raftpipe/raftpipe/raft"
	"github.com/raftpipe/raftpipe/wire"
)

// maxDrainPerTurn bounds how many queued inputs one loop turn takes before
// it produces a Ready, so a flood of one kind cannot starve the others.
const maxDrainPerTurn = 8192

// run is the loop goroutine: it owns the RawNode. Each turn it takes every
// input that is already queued (up to maxDrainPerTurn), so that proposals
// arriving while the previous Ready was handled become one batch, then
// handles one Ready.
func (n *Node) run() {
	defer n.wg.Done()
	defer close(n.loopDone)
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	n.clock.start(n.cfg.TickInterval, time.Now())
	var props [][]byte
	var waiters []*proposal
	for {
		props, waiters = props[:0], waiters[:0]
		var reads []*readReq
		select {
		case <-n.stopc:
			return
		case <-ticker.C:
			n.tick()
		case m := <-n.inbox:
			n.step(m)
		case p := <-n.propc:
			props, waiters = append(props, p.data), append(waiters, p)
		case r := <-n.readc:
			reads = append(reads, r)
		case <-n.persisted:
			n.ackPersisted()
		case fn := <-n.eventc:
			fn()
		}
		props, waiters, reads = n.drain(props, waiters, reads)
		if len(props) > 0 {
			n.propose(props, waiters)
		}
		if len(reads) > 0 {
			n.readIndex(reads)
		}
		if n.rn.HasReady() {
			if err := n.handleReady(); err != nil {
				n.failFatal(err)
				return
			}
		}
	}
}

// drain takes every input already queued, up to maxDrainPerTurn in all,
// so that one Ready covers them. Each channel is emptied with single-case
// non-blocking receives, which the compiler turns into a cheap direct
// receive; a five-way select per input (tried first) spent about 9% of a
// 3-node cluster's CPU in selectgo at 256 clients. It loops over the
// channels until none yields, so a steady stream on one cannot starve the
// others for longer than maxDrainPerTurn inputs.
func (n *Node) drain(props [][]byte, waiters []*proposal, reads []*readReq) ([][]byte, []*proposal, []*readReq) {
	budget := maxDrainPerTurn
	for budget > 0 {
		took := budget
		select {
		case <-n.persisted:
			n.ackPersisted()
		default:
		}
	inbox:
		for ; budget > 0; budget-- {
			select {
			case m := <-n.inbox:
				n.step(m)
			default:
				break inbox
			}
		}
	proposals:
		for ; budget > 0; budget-- {
			select {
			case p := <-n.propc:
				props, waiters = append(props, p.data), append(waiters, p)
			default:
				break proposals
			}
		}
	readq:
		for ; budget > 0; budget-- {
			select {
			case r := <-n.readc:
				reads = append(reads, r)
			default:
				break readq
			}
		}
	events:
		for ; budget > 0; budget-- {
			select {
			case fn := <-n.eventc:
				fn()
			default:
				break events
			}
		}
		if budget == took {
			break // nothing was queued
		}
	}
	return props, waiters, reads
}

// maxTerm bounds the terms accepted from peers. Terms grow by one per
// election, so no honest cluster gets near it; a message claiming more
// (from a buggy or hostile peer that passed the handshake) would push the
// node's term to where the next increment wraps to 0, and a term must never
// go backwards.
const maxTerm = 1 << 62

// step validates one peer message at the boundary and feeds it to the core.
// Messages from senders this node has never heard of (not in the address
// book, which holds every configured member and every member added by a
// conf change this node has appended) and messages with absurd terms are
// dropped.
func (n *Node) step(m wire.Message) {
	if m.Term >= maxTerm {
		n.log.Warn("dropping peer message with an impossible term", "from", m.From, "type", m.Type, "term", m.Term)
		return
	}
	if _, known := n.members.member(m.From); !known {
		n.log.Warn("dropping message from an unknown node", "from", m.From, "type", m.Type)
		return
	}
	if n.stepMembership(&m) {
		return
	}
	n.metrics.rtt.onRecv(&m)
	if err := n.rn.Step(m); err != nil {
		n.log.Debug("step failed", "type", m.Type, "from", m.From, "err", err)
	}
	if n.stages.following() && m.Type == wire.MsgAppResp && !m.Reject {
		n.stages.acked(m.From, m.Index, m.Term)
	}
}

// ackPersisted reports the WAL's latest durable position to the core.
func (n *Node) ackPersisted() {
	n.persistedAt.Lock()
	idx, term, fresh := n.persistedAt.index, n.persistedAt.term, n.persistedAt.fresh
	n.persistedAt.fresh = false
	n.persistedAt.Unlock()
	if fresh {
		n.rn.AckPersisted(idx, term)
	}
}

// propose hands a batch of client writes to the core and registers their
// waiters under the (index, term) the entries got.
func (n *Node) propose(data [][]byte, ws []*proposal) {
	err := n.rn.Propose(data...)
	if err != nil {
		res := proposalRefused(err, n)
		n.metrics.proposalFailed(failReasonOf(res.status), len(ws))
		for _, w := range ws {
			w.finish(res)
		}
		return
	}
	last, term := n.rn.LastIndex(), n.rn.Term()
	first := last - uint64(len(ws)) + 1
	for i, w := range ws {
		w.index, w.term = first+uint64(i), term
		if w.sample != nil {
			n.stageProposed(w)
		}
	}
	n.ap.register(ws)
	n.metrics.sampler.proposed(last, term)
	n.adjustLeaderSyncDelay()
}

// leaderSyncDelayMinPending is how many writes must be waiting before a
// leader delays its fsyncs (Config.LeaderSyncDelay). With few writes in
// flight the leader's own fsync is often the faster half of the quorum,
// and the delay then adds straight to every write: measured at 1 client,
// 300 µs took the p50 from 328 to 629 µs, while at 64 and 256 clients it
// saved 5-6% CPU per write and raised throughput by about 8% (medians of
// 3, scripts/ab.sh, raftbench -mode direct).
const leaderSyncDelayMinPending = 64

// adjustLeaderSyncDelay turns the leader's fsync delay on while enough
// writes are pending for batching to pay, and off otherwise. Owned by the
// loop; SetSyncDelay is an atomic store, done only on a change.
func (n *Node) adjustLeaderSyncDelay() {
	if n.cfg.LeaderSyncDelay <= 0 || !n.isLeader.Load() {
		return
	}
	on := n.ap.pending.Load() >= leaderSyncDelayMinPending
	if on == n.leaderDelayOn {
		return
	}
	n.leaderDelayOn = on
	if on {
		n.wal.SetSyncDelay(n.cfg.LeaderSyncDelay)
	} else {
		n.wal.SetSyncDelay(n.cfg.WAL.SyncDelay)
	}
}

// proposalRefused maps a core refusal to the answer a client sees. Every
// refusal here means the entry was not appended: safe to retry.
func proposalRefused(err error, n *Node) proposalResult {
	switch {
	case errors.Is(err, raft.ErrNotLeader): // *raft.NotLeaderError matches too (its Is)
		return proposalResult{status: wire.StatusNotLeader, leaderHint: n.leaderHint()}
	case errors.Is(err, raft.ErrProposalDropped), errors.Is(err, raft.ErrTransferInProgress):
		return proposalResult{status: wire.StatusBusy}
	}
	return proposalResult{status: wire.StatusError, err: err}
}

// readIndex starts one ReadIndex round for a batch of linearizable reads.
func (n *Node) readIndex(reads []*readReq) {
	if !n.rn.IsLeader() {
		for _, r := range reads {
			r.finish(readResult{status: wire.StatusNotLeader, leaderHint: n.leaderHint()})
		}
		return
	}
	if n.cfg.ReadMode == ReadModeLease {
		n.catchUpTicks() // the lease check must see every elapsed tick
	}
	n.readSeq++
	var ctx [8]byte
	binary.LittleEndian.PutUint64(ctx[:], n.readSeq)
	if err := n.rn.ReadIndex(ctx[:]); err != nil {
		res := readResult{status: wire.StatusBusy}
		if errors.Is(err, raft.ErrNotLeader) {
			res = readResult{status: wire.StatusNotLeader, leaderHint: n.leaderHint()}
		}
		for _, r := range reads {
			r.finish(res)
		}
		return
	}
	n.pendingReads[n.readSeq] = reads
}

// handleReady performs one Ready: persist (asynchronously), send, apply.
// See the call contract in raft/doc.go.
func (n *Node) handleReady() error {
	rd := n.rn.Ready()
	n.metrics.observeReady(&rd)
	if rd.SoftState != nil {
		n.onSoftState(*rd.SoftState)
	}
	// 3a. Messages that may leave now: the leader's MsgApps replicate while
	// its own fsync runs.
	for i := range rd.Messages {
		if n.stages.following() {
			n.stages.sent(&rd.Messages[i])
		}
		n.send(&rd.Messages[i])
	}
	// 3b. Persist. A snapshot is installed synchronously (rare); entries and
	// hard state go to the WAL's group commit and the loop moves on.
	if rd.Snapshot != nil {
		if err := n.installSnapshot(*rd.Snapshot); err != nil {
			return err
		}
		n.lastHanded.index, n.lastHanded.term = rd.Snapshot.Index, rd.Snapshot.Term
	}
	if k := len(rd.Entries); k > 0 && rd.Entries[0].Index <= n.lastHanded.index {
		// A conflicting append: the WAL truncates from here, so proposals
		// waiting at these indexes lose their entries.
		n.ap.dropFrom(rd.Entries[0].Index)
	}
	if k := len(rd.Entries); k > 0 {
		n.learnAddresses(rd.Entries)
		n.lastHanded.index, n.lastHanded.term = rd.Entries[k-1].Index, rd.Entries[k-1].Term
	}
	hs := n.hardStateToPersist(&rd)
	if len(rd.Entries) > 0 || hs != nil || rd.Snapshot != nil || len(rd.MessagesAfterPersist) > 0 {
		ack := len(rd.Entries) > 0 || rd.Snapshot != nil
		idx, term, after := n.lastHanded.index, n.lastHanded.term, rd.MessagesAfterPersist
		var sampled []*stageSample
		if n.stages.following() && len(rd.Entries) > 0 {
			sampled = n.stages.handedOff(rd.Entries)
		}
		n.wal.AppendAsync(rd.Entries, hs, func(err error) {
			if err != nil {
				n.failFatal(err)
				return
			}
			if sampled != nil {
				n.stages.walDurable(sampled)
			}
			for i := range after {
				n.sendAfterPersist(&after[i])
			}
			if ack {
				n.persistedAt.Lock()
				n.persistedAt.index, n.persistedAt.term, n.persistedAt.fresh = idx, term, true
				n.persistedAt.Unlock()
				select {
				case n.persisted <- struct{}{}:
				default:
				}
			}
		})
	}
	// 3c. Apply: conf changes take effect in the core here (ApplyConfChange),
	// the state machine applies the batch on the apply goroutine.
	if len(rd.CommittedEntries) > 0 {
		meta := n.applyConfChanges(rd.CommittedEntries)
		sampled := n.stages.following() && n.stages.committed(rd.CommittedEntries)
		n.ap.enqueue(applyTask{entries: rd.CommittedEntries, meta: meta, sampled: sampled})
		if idx := n.removedAt; idx != 0 {
			n.removedAt = 0
			n.stopAfterApplied(idx)
		}
	}
	// 3d. Reads confirmed by a heartbeat round are served once applied.
	for _, rs := range rd.ReadStates {
		if len(rs.Ctx) != 8 {
			continue
		}
		seq := binary.LittleEndian.Uint64(rs.Ctx)
		if reads, ok := n.pendingReads[seq]; ok {
			delete(n.pendingReads, seq)
			n.metrics.readBatches[b2i(rs.Lease)].Add(1)
			n.ap.enqueue(applyTask{readIndex: rs.Index, reads: reads})
		}
	}
	n.rn.Advance(rd)
	return nil
}

// hardStateToPersist returns the hard state to write with this Ready's
// batch, or nil. Term and vote are written as soon as they change: they
// must be durable before any message that depends on them leaves
// (MessagesAfterPersist, raft/doc.go). A change of the commit index alone
// is not: Raft does not need the commit index to be durable (a restarted
// node relearns it, and InitialState raises it to the state machine's
// applied index), so it is written with the next batch that has entries
// or a snapshot anyway. Before this, every commit advance that arrived in
// a loop turn without new entries cost a WAL round with its own fdatasync:
// at 256 clients the leader synced 3.2 times as often as its followers
// (13272 against about 4100 fsyncs in 12 s, raftbench -mode direct).
func (n *Node) hardStateToPersist(rd *raft.Ready) *wire.HardState {
	if !rd.HardState.IsEmpty() {
		n.hardState.latest = rd.HardState
	}
	latest, handed := n.hardState.latest, n.hardState.handed
	if latest == handed {
		return nil
	}
	if latest.Term == handed.Term && latest.Vote == handed.Vote && len(rd.Entries) == 0 && rd.Snapshot == nil {
		return nil
	}
	n.hardState.handed = latest
	return &latest
}

// onSoftState records leadership changes. Reads waiting for a ReadIndex
// round are failed when leadership is lost (reads are safe to retry);
// pending writes keep waiting for their index to apply, which tells
// whether they committed (raft/doc.go, "Proposals are never lost
// silently").
func (n *Node) onSoftState(ss raft.SoftState) {
	wasLeader := n.isLeader.Load()
	n.isLeader.Store(ss.Role == raft.RoleLeader)
	if wasLeader && ss.Role != raft.RoleLeader && n.leaderDelayOn {
		n.leaderDelayOn = false
		n.wal.SetSyncDelay(n.cfg.WAL.SyncDelay)
	}
	n.leaderID.Store(ss.Lead)
	addr := ""
	if m, ok := n.members.member(ss.Lead); ok {
		addr = m.ClientAddr
	}
	n.leaderClientAddr.Store(&addr)
	if wasLeader && ss.Role != raft.RoleLeader {
		n.stages.dropAll()
		for seq, reads := range n.pendingReads {
			delete(n.pendingReads, seq)
			for _, r := range reads {
				r.finish(readResult{status: wire.StatusNotLeader, leaderHint: addr})
			}
		}
	}
	n.log.Info("role change", "role", ss.Role.String(), "leader", ss.Lead, "term", n.rn.Term())
}

// leaderHint is the leader's client address, if known.
func (n *Node) leaderHint() string {
	if p := n.leaderClientAddr.Load(); p != nil {
		return *p
	}
	return ""
}

// send hands one message to the transport; snapshots get their own
// goroutine. A dropped MsgApp makes the leader probe the follower.
func (n *Node) send(m *wire.Message) {
	n.metrics.rtt.onSend(m)
	if m.Type == wire.MsgSnap {
		n.startSnapshotSend(*m)
		return
	}
	if !n.tr.Send(m) && m.Type == wire.MsgApp {
		n.rn.ReportUnreachable(m.To)
	}
}

// sendAfterPersist runs on the WAL's completion callback: it may only use
// the transport (the core belongs to the loop).
func (n *Node) sendAfterPersist(m *wire.Message) {
	if m.Type == wire.MsgSnap {
		// The core waits for a ReportSnapshot for every MsgSnap, so this
		// hand-off must not be dropped; the WAL's goroutine must not block
		// either, so a short-lived goroutine waits (it ends with the node).
		snap := *m
		go n.submitEvent(context.Background(), func() { n.startSnapshotSend(snap) })
		return
	}
	n.tr.Send(m)
}

// submitEventAsync queues fn for the loop without waiting; dropped if the
// event queue is full (used only for rare, retryable work).
func (n *Node) submitEventAsync(fn func()) {
	select {
	case n.eventc <- fn:
	default:
	}
}

// learnAddresses registers the addresses of members added by conf-change
// entries as soon as they are appended: membership takes effect at append
// time in the core, so the leader must be able to reach a new member
// before the change commits.
func (n *Node) learnAddresses(ents []wire.Entry) {
	for i := range ents {
		if ents[i].Type != wire.EntryConfChange {
			continue
		}
		var cc wire.ConfChange
		if wire.DecodeConfChange(ents[i].Data, &cc) != nil || cc.Type == wire.ConfRemove || len(cc.Context) == 0 {
			continue
		}
		m, err := decodeMemberContext(cc.Context)
		if err != nil || m.ID != cc.NodeID {
			continue
		}
		n.members.setMember(m)
		n.addPeer(m)
	}
}

// applyConfChanges applies the conf changes among committed entries to the
// core's applied membership and returns the state machine's new Meta blob,
// or nil if no entry changed the membership.
func (n *Node) applyConfChanges(ents []wire.Entry) []byte {
	changed := false
	for i := range ents {
		if ents[i].Type != wire.EntryConfChange {
			continue
		}
		var cc wire.ConfChange
		if err := wire.DecodeConfChange(ents[i].Data, &cc); err != nil {
			n.log.Error("undecodable conf change entry", "index", ents[i].Index, "err", err)
			continue
		}
		n.members.conf = n.rn.ApplyConfChange(cc)
		if cc.Type != wire.ConfRemove && len(cc.Context) > 0 {
			if m, err := decodeMemberContext(cc.Context); err == nil && m.ID == cc.NodeID {
				n.members.setMember(m)
			}
		}
		switch {
		case cc.Type == wire.ConfRemove && cc.NodeID != n.cfg.ID:
			n.onRemovedPeer(cc.NodeID)
		case cc.Type == wire.ConfRemove:
			n.removedAt = ents[i].Index // handleReady stops the node once it applied
		}
		changed = true
	}
	if !changed {
		return nil
	}
	return encodeMembership(nil, &n.members)
}
