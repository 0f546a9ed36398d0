package raft

// lease.go: lease reads (Config.LeaseReads). The leader answers a
// ReadIndex at once, at its commit index, while it holds a lease; without
// one the read takes the ordinary heartbeat round (read_only.go). The
// safety argument is in doc.go, "Lease reads"; in short:
//
//   - Every heartbeat of a LeaseReads leader carries a round of its own,
//     and the leader remembers the tick at which it sent each round.
//   - A LeaseReads follower that gets a heartbeat (or any message from the
//     leader) grants no vote or pre-vote to anyone else, and does not
//     campaign, for ElectionTicks of its own ticks (quietUntilTick); it
//     says so by appending leaseMarker to its heartbeat answer.
//   - Once a quorum of voters (the leader itself included) answered, with
//     the marker, rounds sent at or after tick s, the lease runs from s
//     for ElectionTicks - LeaseDriftTicks ticks: the leader serves lease
//     reads while tickCount < s + ElectionTicks - LeaseDriftTicks.
//
// Only heartbeat answers renew the lease. Append acks would too, but a
// MsgAppResp does not say which send it answers (retransmissions carry the
// same indexes); rejected as not worth a wire change, since a leader
// heartbeats every HeartbeatTicks anyway.

// leaseMarker, appended to an echoed heartbeat context, is a follower's
// promise that it honours the sender's lease (Config.LeaseReads).
const leaseMarker = 'L'

// maxLeaseRounds bounds the remembered (round, tick) pairs. Rounds older
// than a lease length are dropped anyway; this caps a leader that flushes
// many ReadIndex rounds per tick. Dropping a round only loses a chance to
// renew the lease, never safety.
const maxLeaseRounds = 256

// roundSent is when the leader sent one heartbeat round.
type roundSent struct {
	round, tick uint64
}

// leaseState is the leader's lease, part of readOnly (reset with it on any
// role or term change).
//
// Invariant: sent is ordered by round and by tick.
type leaseState struct {
	// sent holds the send tick of recent rounds, oldest first.
	sent []roundSent
	// start is the send tick of the newest round a lease quorum answered;
	// meaningful only if held.
	start uint64
	// held says some round at or after minRound was confirmed this term.
	held bool
	// minRound is the first round that counts: rounds sent before the
	// latest membership change answer to an older voter set.
	minRound uint64
	// revoked ends the lease for the rest of the term: a transfer sent, or
	// may yet send, MsgTimeoutNow.
	revoked bool
}

// noteRoundSent records that round was broadcast at tick.
func (l *leaseState) noteRoundSent(round, tick uint64, leaseTicks int) {
	n := 0
	for n < len(l.sent) && (l.sent[n].tick+uint64(leaseTicks) <= tick || len(l.sent)-n >= maxLeaseRounds) {
		n++ // too old to start a lease still running at tick
	}
	if n > 0 {
		l.sent = append(l.sent[:0], l.sent[n:]...)
	}
	l.sent = append(l.sent, roundSent{round: round, tick: tick})
}

// restartAfter forgets the lease and counts only rounds after lastRound:
// the voter set changed (a quorum of the old set proves nothing about the
// new one beyond what doc.go's one-at-a-time rule gives), or the leader
// woke from quiescence (quiesce.go).
func (l *leaseState) restartAfter(lastRound uint64) {
	l.held = false
	l.minRound = lastRound + 1
	l.sent = l.sent[:0]
}

// ackLeaseRound records that member pr answered round with the lease
// marker, and extends the lease if a quorum now has.
func (r *raft) ackLeaseRound(pr *Progress, round uint64) {
	if !r.leaseReads || round > r.readOnly.lastRound {
		return
	}
	pr.leaseRound = max(pr.leaseRound, round)
	confirmed := committedIndex(r.voters(), func(id uint64) uint64 {
		if id == r.id {
			return r.readOnly.lastRound
		}
		if p := r.prs[id]; p != nil {
			return p.leaseRound
		}
		return 0
	})
	l := &r.readOnly.lease
	if confirmed < l.minRound || confirmed == 0 {
		return
	}
	n := 0
	for n < len(l.sent) && l.sent[n].round < confirmed {
		n++
	}
	if n == len(l.sent) || l.sent[n].round != confirmed {
		return // dropped as too old, or never recorded
	}
	if !l.held || l.sent[n].tick > l.start {
		l.start, l.held = l.sent[n].tick, true
	}
	l.sent = append(l.sent[:0], l.sent[n:]...)
}

// leaseValid reports whether the leader may answer a read now, without a
// heartbeat round, at its commit index.
func (r *raft) leaseValid() bool {
	l := &r.readOnly.lease
	return r.leaseReads && r.role == RoleLeader && r.committedInTerm && !l.revoked && l.held && !r.quiesced &&
		r.tickCount < l.start+uint64(r.leaseTicks)
}

// voteQuiet reports whether this node is in its quiet window: another
// leader's lease may rest on it not voting for anyone else.
func (r *raft) voteQuiet() bool { return r.leaseReads && r.tickCount < r.quietUntilTick }

// noteLeaderContact starts (or extends) the quiet window on a message
// from the leader of our term.
func (r *raft) noteLeaderContact() {
	if r.leaseReads {
		r.quietUntilTick = max(r.quietUntilTick, r.tickCount+uint64(r.electionTimeout))
	}
}
