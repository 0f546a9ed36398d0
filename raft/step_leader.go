package raft

import (
	"errors"
	"fmt"

	"github.com/raftpipe/raftpipe/wire"
)

// stepLeader handles messages as the leader.
func (r *raft) stepLeader(m wire.Message) error {
	switch m.Type {
	case wire.MsgApp, wire.MsgHeartbeat, wire.MsgSnap:
		panic(fmt.Sprintf("raft: invariant violated: two leaders in term %d (%d and %d)", r.term, r.id, m.From))
	}
	pr := r.prs[m.From]
	if pr == nil {
		return nil // not (or no longer) a member
	}
	switch m.Type {
	case wire.MsgAppResp:
		pr.lastHeardTick = r.tickCount
		if m.Reject {
			r.handleAppendReject(m, pr)
		} else {
			r.handleAppendAck(m, pr)
		}
	case wire.MsgHeartbeatResp:
		pr.lastHeardTick = r.tickCount
		pr.MsgAppFlowPaused = false
		if pr.State == StateReplicate && pr.inflights.full() {
			// All in-flight MsgApps may have been lost; let one more go so
			// the follower's rejection (or ack) restarts the flow.
			pr.inflights.freeFirstOne()
		}
		if pr.Match < r.log.lastIndex() || pr.State == StateProbe {
			r.maybeSendAppend(m.From, sendOrProbe)
		}
		if round, lease, quiesced, ok := decodeReadRound(m.Context); ok {
			r.ackReadRound(m.From, pr, round)
			if lease {
				r.ackLeaseRound(pr, round)
			}
			if quiesced {
				r.ackQuiesce(pr, round)
			}
		}
	}
	return nil
}

// handleAppendReject backs the follower's Next up using its hint.
func (r *raft) handleAppendReject(m wire.Message, pr *Progress) {
	next := m.RejectHint
	if m.HintTerm != 0 {
		j := r.log.lastIndexAtMostTerm(m.Index, m.HintTerm)
		if r.log.termOrZero(j) == m.HintTerm && j >= m.RejectHint {
			// We share the follower's conflicting term: by log matching our
			// logs agree through our last entry of it.
			next = j + 1
		} else {
			next = min(j, m.RejectHint-1) + 1
		}
	}
	if m.HintTerm == 0 && m.RejectHint <= pr.Match && pr.State != StateSnapshot {
		// The follower says its log ends below what it acknowledged as
		// durable: it lost its data (a wiped disk). Forget its old match
		// and probe from its real end, so it is brought back (by snapshot
		// if that part of our log is gone). A late rejection from before it
		// caught up looks the same; resetting then costs one probe round,
		// never safety, because the commit index does not move back.
		r.logf("follower log is shorter than its acknowledged match; resetting its progress",
			"follower", m.From, "match", pr.Match, "follower_next", m.RejectHint)
		pr.Match = m.RejectHint - 1
		pr.becomeProbe()
		pr.Next = m.RejectHint
		r.maybeSendAppend(m.From, sendOrCommit)
		return
	}
	if !pr.maybeDecrTo(m.Index, next) {
		return
	}
	if pr.State == StateReplicate {
		pr.becomeProbe()
	}
	r.maybeSendAppend(m.From, sendOrCommit)
}

// handleAppendAck records a follower's durable match and pipelines more.
func (r *raft) handleAppendAck(m wire.Message, pr *Progress) {
	oldPaused := pr.isPaused()
	// An ack of exactly Match still answers a probe (e.g. an empty probe
	// after ReportUnreachable): it proves where the logs match.
	if !pr.maybeUpdate(m.Index) && !(pr.State == StateProbe && m.Index == pr.Match) {
		return
	}
	switch pr.State {
	case StateProbe:
		pr.becomeReplicate()
	case StateSnapshot:
		if pr.Match+1 >= r.log.firstIndex() {
			pr.becomeProbe()
			pr.becomeReplicate()
		}
	case StateReplicate:
		pr.inflights.freeLE(m.Index)
	}
	if r.maybeCommit() {
		if r.role != RoleLeader {
			return // committed our own removal and stepped down
		}
		r.commitBcastPending = true
	} else if oldPaused {
		r.maybeSendAppend(m.From, sendOrCommit)
	}
	// Refill the pipeline.
	for r.maybeSendAppend(m.From, sendEntriesOnly) {
	}
	if m.From == r.leadTransferee && pr.Match == r.log.lastIndex() {
		r.sendTimeoutNow(m.From)
	}
}

// maybeCommit advances the commit index to what a quorum of voters holds
// durably, if that entry is of our term. It reports whether commit moved.
func (r *raft) maybeCommit() bool {
	mci := committedIndex(r.voters(), r.matchOf)
	if !r.log.maybeCommit(mci, r.term) {
		return false
	}
	r.onCommit()
	return true
}

// matchOf is a voter's durable match index (for committedIndex).
func (r *raft) matchOf(id uint64) uint64 {
	if pr := r.prs[id]; pr != nil {
		return pr.Match
	}
	return 0
}

// onCommit runs the leader's follow-ups of a commit advance.
func (r *raft) onCommit() {
	if !r.committedInTerm {
		r.committedInTerm = true
		r.releaseWaitingReads()
	}
	if !isVoter(r.confs.current(), r.id) && r.confs.lastIndex() <= r.log.committed {
		// Our removal is committed: stop leading (thesis §4.2.2). The
		// remaining voters elect a new leader after a timeout.
		r.logf("stepping down: removal from the configuration committed")
		r.bcastAppend() // let followers learn the commit first
		r.becomeFollower(r.term, 0)
	}
}

// sendMode says when maybeSendAppend may send a MsgApp without entries.
type sendMode uint8

const (
	// sendEntriesOnly sends only if there are entries (pipeline refill).
	sendEntriesOnly sendMode = iota
	// sendOrCommit also sends an empty MsgApp to a probing follower, or
	// to a replicating one whose known commit index is stale.
	sendOrCommit
	// sendOrProbe always sends: an empty MsgApp at Next-1 detects a gap
	// left by lost messages (the follower rejects it and we back up).
	sendOrProbe
)

// maybeSendAppend sends the next batch to follower to, if flow control
// allows; mode says whether an empty MsgApp is worth sending. It reports
// whether it sent anything.
func (r *raft) maybeSendAppend(to uint64, mode sendMode) bool {
	pr := r.prs[to]
	if to == r.id || pr == nil || pr.isPaused() {
		return false
	}
	prevIndex := pr.Next - 1
	prevTerm, errt := r.log.term(prevIndex)
	var ents []wire.Entry
	var erre error
	last := r.log.lastIndex()
	if errt == nil && pr.Next <= last {
		ents, erre = r.log.slice(pr.Next, last+1, r.maxMsgBytes)
	}
	if errt != nil || erre != nil {
		// The entries the follower needs are compacted: send a snapshot.
		if !errors.Is(errt, ErrCompacted) && !errors.Is(erre, ErrCompacted) {
			panic(fmt.Sprintf("raft: invariant violated: follower %d next %d outside log (last %d): %v %v", to, pr.Next, last, errt, erre))
		}
		return r.maybeSendSnapshot(to, pr)
	}
	commit := r.log.committed
	if len(ents) == 0 {
		if mode == sendEntriesOnly {
			return false
		}
		if mode == sendOrCommit && pr.State == StateReplicate && commit <= pr.sentCommit {
			return false // nothing new to say
		}
	}
	var bytes uint64
	if len(ents) > 0 {
		bytes = entriesSize(ents)
	}
	r.send(wire.Message{To: to, Type: wire.MsgApp, Index: prevIndex, LogTerm: prevTerm, Entries: ents, Commit: commit})
	lastSent := prevIndex + uint64(len(ents))
	pr.sentEntries(lastSent, len(ents), bytes, commit)
	return true
}

// maybeSendSnapshot asks the runtime to stream the latest snapshot to a
// follower whose next entries were compacted.
func (r *raft) maybeSendSnapshot(to uint64, pr *Progress) bool {
	if !r.recentActive(to, pr) {
		return false // do not start a large transfer to a silent member
	}
	s, err := r.log.storage.Snapshot()
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return false // not ready yet; retried on the next heartbeat answer
		}
		panic(fmt.Sprintf("raft: storage failed reading snapshot: %v", err))
	}
	if s.Index+1 < r.log.firstIndex() {
		panic(fmt.Sprintf("raft: invariant violated: snapshot %d does not cover compacted log (first index %d)", s.Index, r.log.firstIndex()))
	}
	r.send(wire.Message{To: to, Type: wire.MsgSnap, Snapshot: s})
	pr.becomeSnapshot(s.Index)
	return true
}

// bcastAppend sends to every member what it is missing (or the commit).
func (r *raft) bcastAppend() {
	for _, id := range r.prIDs {
		if id != r.id {
			r.maybeSendAppend(id, sendOrCommit)
		}
	}
}

// bcastHeartbeat sends a heartbeat to every member. It closes the open
// ReadIndex round (if any) and carries the latest round, so answering it
// confirms every read queued before it. With notice set the heartbeats
// are quiesce notices (quiesce.go).
func (r *raft) bcastHeartbeat(notice bool) {
	if r.leaseReads || notice {
		// Every heartbeat opens its own round: an answer to it proves the
		// follower heard from us at or after this tick (lease.go), or
		// names the quiesce notice it answers.
		r.readOnly.roundOpen = true
	}
	ctx := r.readOnly.closeRound()
	if r.leaseReads {
		r.readOnly.lease.noteRoundSent(r.readOnly.lastRound, r.tickCount, r.leaseTicks)
	}
	if notice {
		if r.quiesceFromRound == 0 {
			r.quiesceFromRound = r.readOnly.lastRound
		}
		ctx = append(ctx[:len(ctx):len(ctx)], quiesceNoticeMarker)
	}
	for _, id := range r.prIDs {
		if id == r.id {
			continue
		}
		pr := r.prs[id]
		// Never tell a follower a commit index beyond what it holds.
		r.send(wire.Message{To: id, Type: wire.MsgHeartbeat, Commit: min(pr.Match, r.log.committed), Context: ctx})
	}
}

// sendTimeoutNow tells the transfer target to campaign immediately.
func (r *raft) sendTimeoutNow(to uint64) {
	r.send(wire.Message{To: to, Type: wire.MsgTimeoutNow})
}

// appendEntries assigns term and index to ents (a scratch slice the caller
// owns), appends them to the log and accounts their bytes.
func (r *raft) appendEntries(ents []wire.Entry) {
	last := r.log.lastIndex()
	for i := range ents {
		ents[i].Term = r.term
		ents[i].Index = last + 1 + uint64(i)
	}
	r.uncommittedBytes += entriesSize(ents)
	r.appendToLog(ents)
	// A single-voter cluster commits when its own append is durable
	// (AckPersisted), not here.
}

// propose appends normal entries with the given data (leader only).
func (r *raft) propose(data [][]byte) error {
	if r.role != RoleLeader {
		return r.errNotLeader()
	}
	r.noteActivity()
	if r.leadTransferee != 0 {
		return fmt.Errorf("leader %d transferring to %d: %w", r.id, r.leadTransferee, ErrTransferInProgress)
	}
	if len(data) == 0 {
		return nil
	}
	if _, ok := r.prs[r.id]; !ok {
		return fmt.Errorf("leader %d is being removed: %w", r.id, ErrProposalDropped)
	}
	var size uint64
	for _, d := range data {
		size += uint64(len(d)) + entryOverheadBytes
	}
	if r.uncommittedBytes > 0 && r.uncommittedBytes+size > r.maxUncommittedBytes {
		return fmt.Errorf("%d uncommitted bytes + %d over limit %d: %w", r.uncommittedBytes, size, r.maxUncommittedBytes, ErrProposalDropped)
	}
	r.appendProposals(data, size)
	r.bcastAppend()
	return nil
}

// appendProposals appends one normal entry per data straight into the
// unstable log (no intermediate slice: this is the hot path). Normal
// entries never change membership and a leader never truncates its own
// log, so appendToLog's extra work is not needed.
func (r *raft) appendProposals(data [][]byte, size uint64) {
	u := &r.log.unstable
	last := r.log.lastIndex()
	if u.offset+uint64(len(u.entries)) != last+1 {
		panic(fmt.Sprintf("raft: invariant violated: unstable ends at %d, log at %d", u.offset+uint64(len(u.entries))-1, last))
	}
	u.reserve(len(data))
	for i, d := range data {
		u.entries = append(u.entries, wire.Entry{Term: r.term, Index: last + 1 + uint64(i), Type: wire.EntryNormal, Data: d})
	}
	r.uncommittedBytes += size
}

// proposeConfChange appends a single-server membership change.
func (r *raft) proposeConfChange(cc wire.ConfChange) error {
	if r.role != RoleLeader {
		return r.errNotLeader()
	}
	r.noteActivity()
	if r.leadTransferee != 0 {
		return fmt.Errorf("leader %d transferring to %d: %w", r.id, r.leadTransferee, ErrTransferInProgress)
	}
	if !r.committedInTerm {
		// The fix for the single-server change bug (Ongaro, raft-dev
		// 2015): a leader must commit an entry of its term first.
		return fmt.Errorf("leader has not committed an entry of term %d yet: %w", r.term, ErrConfChangePending)
	}
	if ci := r.confs.lastIndex(); ci > r.log.committed {
		return fmt.Errorf("conf change at %d not committed (commit %d): %w", ci, r.log.committed, ErrConfChangePending)
	}
	if len(cc.Context) > maxConfChangeContextBytes {
		return fmt.Errorf("context of %d bytes over %d: %w", len(cc.Context), maxConfChangeContextBytes, ErrInvalidConfChange)
	}
	if _, err := applyConfChange(r.confs.current(), cc); err != nil {
		return err
	}
	if cc.Type == wire.ConfRemove && cc.NodeID == r.id && len(r.voters()) == 2 {
		// Allowed, but note: the remaining single voter then leads alone.
		r.logf("removing self from a two-voter cluster")
	}
	ents := append(r.propBuf[:0], wire.Entry{Type: wire.EntryConfChange, Data: encodeConfChange(cc)})
	r.appendEntries(ents)
	r.propBuf = ents
	r.bcastAppend()
	// Membership may have shrunk: a smaller quorum may already hold
	// everything.
	if r.maybeCommit() && r.role == RoleLeader {
		r.bcastAppend()
	}
	return nil
}

// transferLeadership starts handing leadership to `to`.
func (r *raft) transferLeadership(to uint64) {
	if r.role != RoleLeader || to == r.id || !isVoter(r.confs.current(), to) {
		return
	}
	r.noteActivity()
	if r.leadTransferee == to {
		return // already under way
	}
	r.abortLeaderTransfer()
	r.leadTransferee = to
	// MsgTimeoutNow lets `to` win votes from followers in their quiet
	// window, and a delayed one can arrive after this transfer aborted:
	// no lease reads for the rest of the term.
	r.readOnly.lease.revoked = true
	// The transfer must finish within an election timeout.
	r.electionElapsed = 0
	pr := r.prs[to]
	if pr.Match == r.log.lastIndex() {
		r.sendTimeoutNow(to)
		return
	}
	// Probe even if nothing new is due: messages to a lagging target may
	// have been lost, and the transfer has only an election timeout.
	r.maybeSendAppend(to, sendOrProbe)
}

// abortLeaderTransfer forgets a transfer in progress.
func (r *raft) abortLeaderTransfer() { r.leadTransferee = 0 }

// ackPersisted counts the leader's own durable entries towards commit.
func (r *raft) ackPersisted() {
	if r.role != RoleLeader {
		return
	}
	pr := r.prs[r.id]
	if pr == nil || !pr.maybeUpdate(r.log.durableIndex()) {
		return
	}
	if r.maybeCommit() && r.role == RoleLeader {
		r.commitBcastPending = true
	}
}

// flushCommitBcast tells every follower a commit index that advanced since
// the last Ready, once. Acks advance the commit index one at a time, and
// proposals arriving in the same loop turn send entries (which carry the
// latest commit) anyway; broadcasting at each advance sent an extra
// commit-only MsgApp per follower per ack, each answered by a MsgAppResp
// and, on the follower, a WAL round. maybeSendAppend's sentCommit check
// drops the broadcast for followers that an entries MsgApp already told.
func (r *raft) flushCommitBcast() {
	if r.commitBcastPending && r.role == RoleLeader {
		r.bcastAppend()
	}
	r.commitBcastPending = false
}

// reportSnapshot ends a snapshot transfer to `to`.
func (r *raft) reportSnapshot(to uint64, failed bool) {
	pr := r.prs[to]
	if r.role != RoleLeader || pr == nil || pr.State != StateSnapshot {
		return
	}
	if failed {
		pr.PendingSnapshot = 0
	}
	// Probe from past the snapshot (or from Match after a failure); wait
	// for the next heartbeat answer before probing, as the follower may
	// still be restoring.
	pr.becomeProbe()
	pr.MsgAppFlowPaused = true
}

// reportUnreachable drops a follower out of optimistic replication, and
// wakes a quiesced node whose leader, or one of whose followers, is
// suspected down.
func (r *raft) reportUnreachable(to uint64) {
	r.reportUnreachableQuiesced(to)
	pr := r.prs[to]
	if r.role == RoleLeader && pr != nil && pr.State == StateReplicate {
		pr.becomeProbe()
	}
}
