package raft

import "github.com/raftpipe/raftpipe/wire"

// campaign runs a pre-vote round or an election.
func (r *raft) campaign(kind campaignKind) {
	var voteMsg wire.MsgType
	var term uint64
	if kind == campaignPreElection {
		r.becomePreCandidate()
		voteMsg = wire.MsgPreVote
		// Ask about the term we would use, without taking it.
		term = r.term + 1
	} else {
		r.becomeCandidate()
		voteMsg = wire.MsgVote
		term = r.term
	}
	// Our own vote counts at once. For a real election it is only durable
	// once the Ready carrying the new term/vote is, but that is enough: the
	// vote requests below are sent only after that Ready is durable
	// (msgsAfterPersist), so no other node can count on our term before it
	// is on disk.
	if r.poll(r.id, voteMsg, true) == VoteWon {
		if kind == campaignPreElection {
			r.campaign(campaignElection)
		} else {
			r.becomeLeader()
		}
		return
	}
	var ctx []byte
	if kind == campaignTransfer {
		ctx = transferContext
	}
	last, lastTerm := r.log.lastIndex(), r.log.lastTerm()
	for _, id := range r.voters() {
		if id == r.id {
			continue
		}
		r.send(wire.Message{To: id, Term: term, Type: voteMsg, Index: last, LogTerm: lastTerm, Context: ctx})
	}
}

// poll records id's answer and returns the tally.
func (r *raft) poll(id uint64, _ wire.MsgType, granted bool) VoteResult {
	if _, ok := r.votes[id]; !ok {
		r.votes[id] = granted
	}
	return voteResult(r.voters(), r.votes)
}

// stepCandidate handles messages as a (pre-)candidate.
func (r *raft) stepCandidate(m wire.Message) error {
	// Only the response matching our campaign counts: a pre-candidate
	// ignores stale MsgVoteResp and vice versa.
	myVoteResp := wire.MsgVoteResp
	if r.role == RolePreCandidate {
		myVoteResp = wire.MsgPreVoteResp
	}
	switch m.Type {
	case wire.MsgApp, wire.MsgHeartbeat, wire.MsgSnap:
		// A leader exists in our term (Step already raised us to a newer
		// one): step down and process the message as a follower.
		r.becomeFollower(m.Term, m.From)
		return r.stepFollower(m)
	case myVoteResp:
		switch r.poll(m.From, m.Type, !m.Reject) {
		case VoteWon:
			if r.role == RolePreCandidate {
				r.campaign(campaignElection)
			} else {
				r.becomeLeader()
				r.bcastAppend()
			}
		case VoteLost:
			// Stay in this term as a follower; MsgPreVoteResp rejections
			// carrying a newer term were handled in Step.
			r.becomeFollower(r.term, 0)
		}
	}
	return nil
}
