package raft

import "github.com/raftpipe/raftpipe/wire"

// quiesce.go: quiescence (Config.QuiesceAfterTicks). A group with nothing
// to do stops its timers: the leader stops heartbeating and the followers
// stop counting towards an election, so an idle group costs a counter
// increment per tick and sends nothing. The rules and the safety argument
// are in doc.go, "Quiescence"; in short:
//
//   - A leader that has been idle (quiesceEligible) for QuiesceAfterTicks
//     ticks marks its heartbeats as quiesce notices: a heartbeat round
//     whose context ends in quiesceNoticeMarker, carrying Commit = its last
//     index.
//   - A follower that gets a notice from its leader and holds exactly that
//     log, all of it committed, quiesces and says so by appending
//     quiesceAckMarker to its answer. One that is behind answers without
//     the marker and keeps its timer running.
//   - The leader quiesces once every other member answered a notice of
//     the current attempt with the marker. Until then it keeps sending
//     notices at the heartbeat interval, so a lost notice or answer is
//     retried.
//   - Client work, a peer reported unreachable, Wake, and any message of
//     our term or newer (a quiesce answer aside) wake the node. Any role or
//     term change leaves quiescence.
//
// The notice and its answer ride in the heartbeat Context, which only the
// core reads (read_only.go), so quiescence needs no change to the wire
// format: a node without the feature echoes a notice without the answer
// marker and the leader never quiesces. Rejected: a new message type or a
// Message field, which would need a new ProtocolVersion for one bit.

// quiesceNoticeMarker, after the round in a heartbeat's Context, asks the
// follower to quiesce. It differs from quiesceAckMarker so that a node
// that only echoes Context (one without quiescence) never looks as if it
// had quiesced.
const quiesceNoticeMarker = 'q'

// quiesceAckMarker, appended to a heartbeat answer, says: "I quiesced on
// this notice: my log ends at your commit index and my timer is stopped".
const quiesceAckMarker = 'Q'

// quiesceEligible reports whether the leader has nothing in flight:
// everything is committed and held by every member, no read, conf change
// or transfer is pending. Only then may it count idle ticks.
func (r *raft) quiesceEligible() bool {
	if r.role != RoleLeader || !r.committedInTerm || r.leadTransferee != 0 ||
		r.readOnly.len() > 0 || r.readOnly.roundOpen {
		return false
	}
	last := r.log.lastIndex()
	if r.log.committed != last || r.confs.lastIndex() > r.log.committed {
		return false
	}
	if _, ok := r.prs[r.id]; !ok {
		return false // being removed
	}
	for _, id := range r.prIDs {
		pr := r.prs[id]
		if pr.Match != last || (id != r.id && pr.State != StateReplicate) {
			return false
		}
	}
	return true
}

// tickIdle counts the leader's idle ticks; it reports whether the next
// heartbeat should be a quiesce notice.
func (r *raft) tickIdle() bool {
	if r.quiesceAfterTicks == 0 {
		return false
	}
	if !r.quiesceEligible() {
		r.idleTicks = 0
		r.quiesceFromRound = 0
		return false
	}
	r.idleTicks++
	return r.idleTicks >= r.quiesceAfterTicks
}

// noteActivity records client work at the leader: the idle count restarts,
// a quiesce attempt is abandoned, and a quiesced leader wakes. The work
// itself sends what the followers need (MsgApps, a read round), so no
// heartbeat is added here.
func (r *raft) noteActivity() {
	if r.quiesceAfterTicks == 0 || r.role != RoleLeader {
		return
	}
	r.idleTicks = 0
	r.quiesceFromRound = 0
	if r.quiesced {
		r.wakeLeader(false)
	}
}

// ackQuiesce records that member pr quiesced on the notice of round, and
// quiesces the leader once every other member has in this attempt.
func (r *raft) ackQuiesce(pr *Progress, round uint64) {
	if round > r.readOnly.lastRound {
		return // not a round of ours
	}
	pr.quiesceRound = max(pr.quiesceRound, round)
	r.maybeQuiesce()
}

// maybeQuiesce quiesces the leader if an attempt is under way, nothing
// is in flight, and every other member answered one of its notices.
func (r *raft) maybeQuiesce() bool {
	if r.quiesced || r.quiesceFromRound == 0 || !r.quiesceEligible() {
		return false
	}
	for _, id := range r.prIDs {
		if id != r.id && r.prs[id].quiesceRound < r.quiesceFromRound {
			return false
		}
	}
	r.enterQuiescence()
	return true
}

// enterQuiescence stops the timers and drops the buffers an idle replica
// does not need (they are allocated again on the next write): the spare
// capacity of the unstable log's entry array (a 1024-entry chunk, about
// 48 KiB) and the in-flight rings.
func (r *raft) enterQuiescence() {
	r.quiesced = true
	if u := &r.log.unstable; len(u.entries) == 0 {
		u.entries = nil
	}
	for _, id := range r.prIDs {
		r.prs[id].inflights.release()
	}
}

// wakeLeader leaves quiescence: heartbeats and CheckQuorum resume. Every
// member gets a fresh election timeout to be heard from, as at election:
// nobody sent anything while all were quiesced, so the old readings say
// nothing. The lease starts afresh from rounds sent after the wake, so it
// never rests on ticks counted (or skipped) while quiesced. If heartbeat
// is set the followers are woken at once.
func (r *raft) wakeLeader(heartbeat bool) {
	r.quiesced = false
	r.readOnly.lease.restartAfter(r.readOnly.lastRound)
	r.idleTicks = 0
	r.quiesceFromRound = 0
	r.heartbeatElapsed = 0
	r.electionElapsed = 0
	for _, id := range r.prIDs {
		r.prs[id].lastHeardTick = r.tickCount
	}
	if heartbeat {
		r.bcastHeartbeat(false)
	}
}

// wakeFollower leaves quiescence: the election timer restarts from zero
// with a fresh jitter, so an election follows after the usual timeout if
// the leader stays silent. The leader (if known) is poked with an empty
// heartbeat answer, a message of our term that wakes it: if it is alive
// it heartbeats again and no election happens.
func (r *raft) wakeFollower() {
	r.quiesced = false
	r.electionElapsed = 0
	r.resetRandomizedElectionTimeout()
	r.pokeLeader()
}

// pokeLeader sends the leader a message of our term that wakes it.
func (r *raft) pokeLeader() {
	if r.lead != 0 && r.lead != r.id {
		r.send(wire.Message{To: r.lead, Type: wire.MsgHeartbeatResp})
	}
}

// wake is Wake: leave quiescence whatever the role. On a leader that is
// only counting idle ticks, the count restarts.
func (r *raft) wake() {
	if r.role == RoleLeader {
		r.idleTicks = 0
		r.quiesceFromRound = 0
		if r.quiesced {
			r.wakeLeader(true)
		}
		return
	}
	if r.quiesced {
		r.wakeFollower()
	}
}

// isQuiesceAck reports whether m answers a quiesce notice with the
// marker. Such an answer does not wake a quiesced leader: the leader sends
// a notice per heartbeat interval until all have answered, so answers to
// earlier notices may still arrive after it quiesced.
func isQuiesceAck(m *wire.Message) bool {
	if m.Type != wire.MsgHeartbeatResp {
		return false
	}
	_, _, quiesced, ok := decodeReadRound(m.Context)
	return ok && quiesced
}

// stepWaking steps m into a quiesced node that m wakes (a message of our
// term or newer).
func (r *raft) stepWaking(m wire.Message) error {
	if r.role == RoleLeader {
		r.wakeLeader(true)
		return r.step(m)
	}
	r.quiesced = false
	if m.Term == r.term && m.From == r.lead &&
		(m.Type == wire.MsgApp || m.Type == wire.MsgHeartbeat || m.Type == wire.MsgSnap) {
		// The leader itself: stepFollower restarts the timer (and a
		// notice quiesces us again).
		return r.step(m)
	}
	// Someone else: a candidate, most likely, that suspects the leader.
	// Step first: the vote checks must see how long ago we really heard
	// from the leader (electionElapsed kept counting while quiesced).
	lead, term := r.lead, r.term
	err := r.step(m)
	if r.role != RoleFollower || r.quiesced {
		return err
	}
	if m.Type == wire.MsgVote || m.Type == wire.MsgPreVote {
		// Not leader contact: the silence was real, so keep saying so
		// (a voter that granted the pre-vote must grant the vote that
		// follows), but cap it at one timeout so that our own campaign,
		// if the candidate fails, still waits for our jitter.
		r.electionElapsed = min(r.electionElapsed, r.electionTimeout)
	} else {
		r.electionElapsed = 0
	}
	if r.lead == lead && r.term == term {
		r.pokeLeader()
	}
	return err
}

// reportUnreachableQuiesced wakes a quiesced node when the peer it
// depends on is suspected down: a follower's leader, or any member of a
// leader's group.
func (r *raft) reportUnreachableQuiesced(to uint64) {
	if !r.quiesced {
		return
	}
	switch {
	case r.role == RoleLeader:
		if _, ok := r.prs[to]; ok {
			r.wakeLeader(true)
		}
	case to == r.lead:
		r.wakeFollower()
	}
}
