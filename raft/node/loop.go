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
func (rep *replica) run() {
	defer rep.wg.Done()
	defer close(rep.loopDone)
	rep.clock.start(rep.cfg.TickInterval, time.Now())
	rep.ticksSeen = rep.host.ticks.Load()
	var props [][]byte
	var waiters []*proposal
	for {
		props, waiters = props[:0], waiters[:0]
		var reads []*readReq
		select {
		case <-rep.stopc:
			return
		case <-rep.tickc:
			rep.onTick()
		case m := <-rep.inbox:
			rep.beforeInput()
			rep.step(m)
		case p := <-rep.propc:
			rep.beforeInput()
			props, waiters = append(props, p.data), append(waiters, p)
		case r := <-rep.readc:
			rep.beforeInput()
			reads = append(reads, r)
		case <-rep.persisted:
			rep.ackPersisted()
		case fn := <-rep.eventc:
			rep.beforeInput()
			fn()
		}
		props, waiters, reads = rep.drain(props, waiters, reads)
		if len(props) > 0 {
			rep.propose(props, waiters)
		}
		if len(reads) > 0 {
			rep.readIndex(reads)
		}
		if rep.rn.HasReady() {
			if err := rep.handleReady(); err != nil {
				rep.failFatal(err)
				return
			}
		}
		rep.noteQuiesced()
	}
}

// drain takes every input already queued, up to maxDrainPerTurn in all,
// so that one Ready covers them. Each channel is emptied with single-case
// non-blocking receives, which the compiler turns into a cheap direct
// receive; a five-way select per input (tried first) spent about 9% of a
// 3-node cluster's CPU in selectgo at 256 clients. It loops over the
// channels until none yields, so a steady stream on one cannot starve the
// others for longer than maxDrainPerTurn inputs.
func (rep *replica) drain(props [][]byte, waiters []*proposal, reads []*readReq) ([][]byte, []*proposal, []*readReq) {
	// The turn may have started with a tick or a WAL ack, which do not
	// catch a quiesced core up; whatever is drained below is input.
	rep.beforeInput()
	budget := maxDrainPerTurn
	for budget > 0 {
		took := budget
		select {
		case <-rep.persisted:
			rep.ackPersisted()
		default:
		}
	inbox:
		for ; budget > 0; budget-- {
			select {
			case m := <-rep.inbox:
				rep.step(m)
			default:
				break inbox
			}
		}
	proposals:
		for ; budget > 0; budget-- {
			select {
			case p := <-rep.propc:
				props, waiters = append(props, p.data), append(waiters, p)
			default:
				break proposals
			}
		}
	readq:
		for ; budget > 0; budget-- {
			select {
			case r := <-rep.readc:
				reads = append(reads, r)
			default:
				break readq
			}
		}
	events:
		for ; budget > 0; budget-- {
			select {
			case fn := <-rep.eventc:
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
func (rep *replica) step(m wire.Message) {
	if m.Term >= maxTerm {
		rep.log.Warn("dropping peer message with an impossible term", "from", m.From, "type", m.Type, "term", m.Term)
		return
	}
	if _, known := rep.members.member(m.From); !known {
		rep.log.Warn("dropping message from an unknown node", "from", m.From, "type", m.Type)
		return
	}
	if rep.stepMembership(&m) {
		return
	}
	if rep.group == 0 {
		rep.metrics.rtt.onRecv(&m) // loop-owned state: group 0's loop only
	}
	if err := rep.rn.Step(m); err != nil {
		rep.log.Debug("step failed", "type", m.Type, "from", m.From, "err", err)
	}
	if rep.stages.following() && m.Type == wire.MsgAppResp && !m.Reject {
		rep.stages.acked(m.From, m.Index, m.Term)
	}
}

// ackPersisted reports the WAL's latest durable position to the core.
func (rep *replica) ackPersisted() {
	rep.persistedAt.Lock()
	idx, term, fresh := rep.persistedAt.index, rep.persistedAt.term, rep.persistedAt.fresh
	rep.persistedAt.fresh = false
	rep.persistedAt.Unlock()
	if fresh {
		rep.rn.AckPersisted(idx, term)
	}
}

// propose hands a batch of client writes to the core and registers their
// waiters under the (index, term) the entries got.
func (rep *replica) propose(data [][]byte, ws []*proposal) {
	err := rep.rn.Propose(data...)
	if err != nil {
		res := proposalRefused(err, rep)
		rep.metrics.proposalFailed(failReasonOf(res.status), len(ws))
		for _, w := range ws {
			w.finish(res)
		}
		return
	}
	last, term := rep.rn.LastIndex(), rep.rn.Term()
	first := last - uint64(len(ws)) + 1
	for i, w := range ws {
		w.index, w.term = first+uint64(i), term
		if w.sample != nil {
			rep.stageProposed(w)
		}
	}
	rep.ap.register(ws)
	if rep.group == 0 {
		rep.metrics.sampler.proposed(last, term)
	}
	rep.adjustLeaderSyncDelay()
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
func (rep *replica) adjustLeaderSyncDelay() {
	// With many groups the delay is the host's one WAL's, and replicas
	// that lead and follow would switch it against each other; it is not
	// used there (Config.LeaderSyncDelay).
	if rep.cfg.LeaderSyncDelay <= 0 || rep.cfg.Groups > 1 || !rep.isLeader.Load() {
		return
	}
	on := rep.ap.pending.Load() >= leaderSyncDelayMinPending
	if on == rep.leaderDelayOn {
		return
	}
	rep.leaderDelayOn = on
	if on {
		rep.host.setSyncDelay(rep.cfg.LeaderSyncDelay)
	} else {
		rep.host.setSyncDelay(rep.cfg.WAL.SyncDelay)
	}
}

// proposalRefused maps a core refusal to the answer a client sees. Every
// refusal here means the entry was not appended: safe to retry.
func proposalRefused(err error, rep *replica) proposalResult {
	switch {
	case errors.Is(err, raft.ErrNotLeader): // *raft.NotLeaderError matches too (its Is)
		return proposalResult{status: wire.StatusNotLeader, leaderHint: rep.leaderHint()}
	case errors.Is(err, raft.ErrProposalDropped), errors.Is(err, raft.ErrTransferInProgress):
		return proposalResult{status: wire.StatusBusy}
	}
	return proposalResult{status: wire.StatusError, err: err}
}

// readIndex starts one ReadIndex round for a batch of linearizable reads.
func (rep *replica) readIndex(reads []*readReq) {
	if !rep.rn.IsLeader() {
		for _, r := range reads {
			r.finish(readResult{status: wire.StatusNotLeader, leaderHint: rep.leaderHint()})
		}
		return
	}
	if rep.cfg.ReadMode == ReadModeLease {
		rep.catchUpTicks() // the lease check must see every elapsed tick
	}
	rep.readSeq++
	var ctx [8]byte
	binary.LittleEndian.PutUint64(ctx[:], rep.readSeq)
	if err := rep.rn.ReadIndex(ctx[:]); err != nil {
		res := readResult{status: wire.StatusBusy}
		if errors.Is(err, raft.ErrNotLeader) {
			res = readResult{status: wire.StatusNotLeader, leaderHint: rep.leaderHint()}
		}
		for _, r := range reads {
			r.finish(res)
		}
		return
	}
	rep.pendingReads[rep.readSeq] = reads
}

// handleReady performs one Ready: persist (asynchronously), send, apply.
// See the call contract in raft/doc.go.
func (rep *replica) handleReady() error {
	rd := rep.rn.Ready()
	if rep.group == 0 {
		// The leader-change, election and RTT counters follow group 0
		// (their loop-owned state cannot be shared by many loops).
		rep.metrics.observeReady(&rd)
	}
	if rd.SoftState != nil {
		rep.onSoftState(*rd.SoftState)
	}
	// 3a. Messages that may leave now: the leader's MsgApps replicate while
	// its own fsync runs.
	for i := range rd.Messages {
		if rep.stages.following() {
			rep.stages.sent(&rd.Messages[i])
		}
		rep.send(&rd.Messages[i])
	}
	// 3b. Persist. A snapshot is installed synchronously (rare); entries and
	// hard state go to the WAL's group commit and the loop moves on.
	if rd.Snapshot != nil {
		if err := rep.installSnapshot(*rd.Snapshot); err != nil {
			return err
		}
		rep.lastHanded.index, rep.lastHanded.term = rd.Snapshot.Index, rd.Snapshot.Term
	}
	if k := len(rd.Entries); k > 0 && rd.Entries[0].Index <= rep.lastHanded.index {
		// A conflicting append: the WAL truncates from here, so proposals
		// waiting at these indexes lose their entries.
		rep.ap.dropFrom(rd.Entries[0].Index)
	}
	if k := len(rd.Entries); k > 0 {
		rep.learnAddresses(rd.Entries)
		rep.lastHanded.index, rep.lastHanded.term = rd.Entries[k-1].Index, rd.Entries[k-1].Term
	}
	hs := rep.hardStateToPersist(&rd)
	if len(rd.Entries) > 0 || hs != nil || rd.Snapshot != nil || len(rd.MessagesAfterPersist) > 0 {
		ack := len(rd.Entries) > 0 || rd.Snapshot != nil
		idx, term, after := rep.lastHanded.index, rep.lastHanded.term, rd.MessagesAfterPersist
		for i := range after {
			// Stamped here, on the loop: the WAL's callback only reads them.
			after[i].Group = rep.group
		}
		var sampled []*stageSample
		if rep.stages.following() && len(rd.Entries) > 0 {
			sampled = rep.stages.handedOff(rd.Entries)
		}
		rep.wal.AppendAsync(rd.Entries, hs, func(err error) {
			if err != nil {
				rep.failFatal(err)
				return
			}
			if sampled != nil {
				rep.stages.walDurable(sampled)
			}
			for i := range after {
				rep.sendAfterPersist(&after[i])
			}
			if ack {
				rep.persistedAt.Lock()
				rep.persistedAt.index, rep.persistedAt.term, rep.persistedAt.fresh = idx, term, true
				rep.persistedAt.Unlock()
				select {
				case rep.persisted <- struct{}{}:
				default:
				}
			}
		})
	}
	// 3c. Apply: conf changes take effect in the core here (ApplyConfChange),
	// the state machine applies the batch on the apply goroutine.
	if len(rd.CommittedEntries) > 0 {
		members, membersAt := rep.applyConfChanges(rd.CommittedEntries)
		sampled := rep.stages.following() && rep.stages.committed(rd.CommittedEntries)
		rep.ap.enqueue(applyTask{entries: rd.CommittedEntries, members: members, membersAt: membersAt, sampled: sampled})
		if idx := rep.removedAt; idx != 0 {
			rep.removedAt = 0
			rep.stopAfterApplied(idx)
		}
	}
	// 3d. Reads confirmed by a heartbeat round are served once applied.
	for _, rs := range rd.ReadStates {
		if len(rs.Ctx) != 8 {
			continue
		}
		seq := binary.LittleEndian.Uint64(rs.Ctx)
		if reads, ok := rep.pendingReads[seq]; ok {
			delete(rep.pendingReads, seq)
			rep.metrics.readBatches[b2i(rs.Lease)].Add(1)
			rep.ap.enqueue(applyTask{readIndex: rs.Index, reads: reads})
		}
	}
	rep.rn.Advance(rd)
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
func (rep *replica) hardStateToPersist(rd *raft.Ready) *wire.HardState {
	if !rd.HardState.IsEmpty() {
		rep.hardState.latest = rd.HardState
	}
	latest, handed := rep.hardState.latest, rep.hardState.handed
	if latest == handed {
		return nil
	}
	if latest.Term == handed.Term && latest.Vote == handed.Vote && len(rd.Entries) == 0 && rd.Snapshot == nil {
		return nil
	}
	rep.hardState.handed = latest
	// A pointer into the replica, not to a local: the WAL copies the hard
	// state before AppendAsync returns (logView), and through the
	// interface the compiler cannot see that, so a local would be moved to
	// the heap on every Ready that writes one.
	return &rep.hardState.handed
}

// onSoftState records leadership changes. Reads waiting for a ReadIndex
// round are failed when leadership is lost (reads are safe to retry);
// pending writes keep waiting for their index to apply, which tells
// whether they committed (raft/doc.go, "Proposals are never lost
// silently").
func (rep *replica) onSoftState(ss raft.SoftState) {
	wasLeader := rep.isLeader.Load()
	rep.isLeader.Store(ss.Role == raft.RoleLeader)
	if wasLeader && ss.Role != raft.RoleLeader && rep.leaderDelayOn {
		rep.leaderDelayOn = false
		rep.host.setSyncDelay(rep.cfg.WAL.SyncDelay)
	}
	rep.leaderID.Store(ss.Lead)
	addr := ""
	if m, ok := rep.members.member(ss.Lead); ok {
		addr = m.ClientAddr
	}
	rep.leaderClientAddr.Store(&addr)
	if wasLeader && ss.Role != raft.RoleLeader {
		rep.stages.dropAll()
		for seq, reads := range rep.pendingReads {
			delete(rep.pendingReads, seq)
			for _, r := range reads {
				r.finish(readResult{status: wire.StatusNotLeader, leaderHint: addr})
			}
		}
	}
	rep.log.Info("role change", "role", ss.Role.String(), "leader", ss.Lead, "term", rep.rn.Term())
}

// leaderHint is the leader's client address, if known.
func (rep *replica) leaderHint() string {
	if p := rep.leaderClientAddr.Load(); p != nil {
		return *p
	}
	return ""
}

// send hands one message to the transport; snapshots get their own
// goroutine. A dropped MsgApp makes the leader probe the follower.
func (rep *replica) send(m *wire.Message) {
	m.Group = rep.group
	if rep.group == 0 {
		rep.metrics.rtt.onSend(m)
	}
	if m.Type == wire.MsgSnap {
		rep.startSnapshotSend(*m)
		return
	}
	if !rep.tr.Send(m) && m.Type == wire.MsgApp {
		rep.rn.ReportUnreachable(m.To)
	}
}

// sendAfterPersist runs on the WAL's completion callback: it may only use
// the transport (the core belongs to the loop). handleReady stamped the
// messages with the group already.
func (rep *replica) sendAfterPersist(m *wire.Message) {
	if m.Type == wire.MsgSnap {
		// The core waits for a ReportSnapshot for every MsgSnap, so this
		// hand-off must not be dropped; the WAL's goroutine must not block
		// either, so a short-lived goroutine waits (it ends with the node).
		snap := *m
		go rep.submitEvent(context.Background(), func() { rep.startSnapshotSend(snap) })
		return
	}
	rep.tr.Send(m)
}

// submitEventAsync queues fn for the loop without waiting; dropped if the
// event queue is full (used only for rare, retryable work).
func (rep *replica) submitEventAsync(fn func()) {
	select {
	case rep.eventc <- fn:
	default:
	}
}

// learnAddresses registers the addresses of members added by conf-change
// entries as soon as they are appended: membership takes effect at append
// time in the core, so the leader must be able to reach a new member
// before the change commits.
func (rep *replica) learnAddresses(ents []wire.Entry) {
	for i := range ents {
		if m, ok := addedMember(&ents[i]); ok {
			rep.members.setMember(m)
			rep.host.addPeer(m)
		}
	}
}

// applyConfChanges applies the conf changes among committed entries to the
// core's applied membership and returns the encoded membership after them
// with the index of the last one, or nil if no entry changed the
// membership. The apply goroutine records it (memberHist) for snapshots.
func (rep *replica) applyConfChanges(ents []wire.Entry) ([]byte, uint64) {
	var changedAt uint64
	for i := range ents {
		if ents[i].Type != wire.EntryConfChange {
			continue
		}
		var cc wire.ConfChange
		if err := wire.DecodeConfChange(ents[i].Data, &cc); err != nil {
			rep.log.Error("undecodable conf change entry", "index", ents[i].Index, "err", err)
			continue
		}
		rep.members.conf = rep.rn.ApplyConfChange(cc)
		if cc.Type != wire.ConfRemove && len(cc.Context) > 0 {
			if m, err := decodeMemberContext(cc.Context); err == nil && m.ID == cc.NodeID {
				rep.members.setMember(m)
			}
		}
		switch {
		case cc.Type == wire.ConfRemove && cc.NodeID != rep.cfg.ID:
			rep.onRemovedPeer(cc.NodeID)
		case cc.Type == wire.ConfRemove:
			rep.removedAt = ents[i].Index // handleReady stops the node once it applied
		}
		changedAt = ents[i].Index
	}
	if changedAt == 0 {
		return nil, 0
	}
	return encodeMembership(nil, &rep.members), changedAt
}
