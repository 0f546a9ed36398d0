package raft

import (
	"fmt"

	"github.com/raftpipe/raftpipe/wire"
)

// stepFollower handles messages as a follower.
func (r *raft) stepFollower(m wire.Message) error {
	switch m.Type {
	case wire.MsgApp:
		r.electionElapsed = 0
		r.lead = m.From
		r.handleAppend(m)
	case wire.MsgHeartbeat:
		r.electionElapsed = 0
		r.lead = m.From
		r.handleHeartbeat(m)
	case wire.MsgSnap:
		r.electionElapsed = 0
		r.lead = m.From
		r.handleSnapshot(m)
	case wire.MsgTimeoutNow:
		// The leader hands over: campaign at once, skipping PreVote and
		// the voters' lease check (the current leader agreed).
		r.logf("campaigning on MsgTimeoutNow", "from", m.From)
		r.hup(campaignTransfer)
	}
	return nil
}

// handleAppend answers a MsgApp: append what matches, reject with a hint
// otherwise. Acks are sent only after the appended entries are durable.
func (r *raft) handleAppend(m wire.Message) {
	if m.Index < r.log.committed {
		// Everything up to our commit index is known to match.
		r.send(wire.Message{To: m.From, Type: wire.MsgAppResp, Index: r.log.committed})
		return
	}
	lastNew, toAppend, ok := r.log.findAppend(m.Index, m.LogTerm, m.Entries)
	if !ok {
		hint, hintTerm := r.rejectHint(m.Index)
		r.send(wire.Message{To: m.From, Type: wire.MsgAppResp, Index: m.Index, Reject: true, RejectHint: hint, HintTerm: hintTerm})
		return
	}
	if len(toAppend) > 0 {
		r.appendToLog(toAppend)
	}
	r.log.commitTo(min(m.Commit, lastNew))
	r.send(wire.Message{To: m.From, Type: wire.MsgAppResp, Index: lastNew})
}

// rejectHint tells the leader where to probe next after rejecting a MsgApp
// whose previous index was rejected: our last index + 1 if our log is
// short (hintTerm 0), else the first index of our conflicting term, so the
// leader backs up a whole term per round trip.
func (r *raft) rejectHint(rejected uint64) (hint, hintTerm uint64) {
	last := r.log.lastIndex()
	if rejected > last {
		return last + 1, 0
	}
	t, err := r.log.term(rejected)
	if err != nil {
		panic(fmt.Sprintf("raft: invariant violated: rejected index %d above commit %d has no term: %v", rejected, r.log.committed, err))
	}
	return r.log.firstIndexOfTerm(rejected, t), t
}

// handleHeartbeat learns the commit index (bounded by our match at the
// leader, so it never exceeds our durable log) and echoes the context.
//
// A commit index beyond our last entry means the leader's record of our
// match is stale: this node lost its log (a wiped disk). Nothing from such
// a heartbeat can be trusted, so the commit index stays put until the
// leader, told by our append rejection, re-probes us.
func (r *raft) handleHeartbeat(m wire.Message) {
	if m.Commit > r.log.lastIndex() {
		r.logf("heartbeat commit beyond our log; ignoring it", "commit", m.Commit, "last", r.log.lastIndex())
	} else {
		r.log.commitTo(m.Commit)
	}
	ctx := m.Context
	quiesce := false
	if len(ctx) == readRoundBytes+1 && ctx[readRoundBytes] == quiesceNoticeMarker {
		// A quiesce notice: its Commit is the leader's last index. Stop
		// the timer only if our log is exactly that, all committed; a
		// follower that is behind keeps counting (quiesce.go).
		ctx = ctx[:readRoundBytes]
		last := r.log.lastIndex()
		quiesce = r.quiesceAfterTicks > 0 && m.Commit == last && r.log.committed == last
	}
	if quiesce {
		r.enterQuiescence()
	}
	if (r.leaseReads || quiesce) && len(ctx) == readRoundBytes {
		out := append(make([]byte, 0, readRoundBytes+2), ctx...)
		if r.leaseReads {
			// Tell the leader its lease may count on us (lease.go).
			out = append(out, leaseMarker)
		}
		if quiesce {
			out = append(out, quiesceAckMarker)
		}
		ctx = out
	}
	r.send(wire.Message{To: m.From, Type: wire.MsgHeartbeatResp, Context: ctx})
}

// handleSnapshot installs a snapshot whose data the runtime has received.
func (r *raft) handleSnapshot(m wire.Message) {
	s := m.Snapshot
	if r.restore(s) {
		r.logf("restoring snapshot", "index", s.Index, "snapTerm", s.Term)
		r.send(wire.Message{To: m.From, Type: wire.MsgAppResp, Index: r.log.lastIndex()})
		return
	}
	r.send(wire.Message{To: m.From, Type: wire.MsgAppResp, Index: r.log.committed})
}

// restore makes snapshot s the base of our log unless we already have it.
// It reports whether the log was replaced.
func (r *raft) restore(s wire.SnapshotMeta) bool {
	if s.Index <= r.log.committed {
		return false
	}
	if r.role != RoleFollower {
		panic(fmt.Sprintf("raft: invariant violated: %v restoring a snapshot", r.role))
	}
	if r.log.matchTerm(s.Index, s.Term) {
		// Our log already holds the snapshot's last entry: the prefix
		// matches, so just learn that it is committed.
		r.log.commitTo(s.Index)
		return false
	}
	r.log.restore(s)
	r.confs.reset(s.Index, s.Conf)
	r.applyMembership()
	return true
}
