package raft

import (
	"encoding/binary"
	"fmt"
)

// read_only.go: linearizable reads by ReadIndex (Raft thesis §6.4), batched
// in heartbeat rounds. A read records the commit index when it arrives;
// once a quorum has answered a heartbeat sent after that, the leader knows
// it was still the leader when the read arrived, and the runtime may serve
// the read as soon as its state machine has applied that index.
//
// Rounds: every read queued since the last heartbeat broadcast joins the
// open round; the broadcast (at the next Ready, or the next heartbeat tick,
// whichever comes first) closes it and carries its number in Context. A
// follower echoes Context; the leader keeps, per member, the highest round
// answered, and the majority-th highest round is confirmed. One heartbeat
// round thus confirms every read of that loop turn.

// readRoundBytes is the size of a round number in heartbeat Context.
const readRoundBytes = 8

// ReadState is the answer to one ReadIndex request: once the state machine
// has applied Index, a read issued with Ctx may be served.
type ReadState struct {
	// Index is the commit index when the read arrived.
	Index uint64
	// Ctx is the caller's request context, unchanged.
	Ctx []byte
	// Lease says the leader answered under its lease, without a
	// heartbeat round (Config.LeaseReads).
	Lease bool
}

// readRequest is one queued read.
type readRequest struct {
	// index is the commit index when the read arrived.
	index uint64
	// ctx is the caller's context.
	ctx []byte
	// round is the heartbeat round that confirms it.
	round uint64
}

// readOnly is the leader's read queue.
//
// Invariant: pending is ordered by round; every round in pending is
// <= lastRound+1, and equals lastRound+1 only while roundOpen.
type readOnly struct {
	// waiting holds reads that arrived before the leader committed an
	// entry of its term (its commit index may be stale until then).
	waiting []readRequest
	// pending holds reads waiting for their round's confirmation.
	pending []readRequest
	// lastRound is the last round broadcast (0: none yet this term).
	lastRound uint64
	// lastRoundCtx is lastRound encoded, shared by all its heartbeats.
	lastRoundCtx []byte
	// roundOpen says pending holds reads for round lastRound+1.
	roundOpen bool
	// lease is the leader's read lease (LeaseReads only).
	lease leaseState
}

// reset drops everything (on any role or term change). The runtime fails
// its outstanding reads when it sees the SoftState change.
func (ro *readOnly) reset() { *ro = readOnly{} }

// len is the number of queued reads.
func (ro *readOnly) len() int { return len(ro.waiting) + len(ro.pending) }

// closeRound closes the open round, if any, and returns the context that
// heartbeats should carry (nil before the first round).
func (ro *readOnly) closeRound() []byte {
	if ro.roundOpen {
		ro.roundOpen = false
		ro.lastRound++
		ro.lastRoundCtx = binary.BigEndian.AppendUint64(make([]byte, 0, readRoundBytes), ro.lastRound)
	}
	return ro.lastRoundCtx
}

// decodeReadRound parses a heartbeat answer's context: the round written
// by closeRound, as the follower echoed it, then leaseMarker if the
// follower honours our lease (LeaseReads), then quiesceAckMarker if it
// quiesced on that round's notice (quiesce.go), each at most once and in
// that order.
func decodeReadRound(ctx []byte) (round uint64, lease, quiesced, ok bool) {
	if len(ctx) < readRoundBytes || len(ctx) > readRoundBytes+2 {
		return 0, false, false, false
	}
	rest := ctx[readRoundBytes:]
	if len(rest) > 0 && rest[0] == leaseMarker {
		lease, rest = true, rest[1:]
	}
	if len(rest) > 0 && rest[0] == quiesceAckMarker {
		quiesced, rest = true, rest[1:]
	}
	if len(rest) > 0 {
		return 0, false, false, false
	}
	return binary.BigEndian.Uint64(ctx), lease, quiesced, true
}

// readIndex queues a read (leader only).
func (r *raft) readIndex(ctx []byte) error {
	if r.role != RoleLeader {
		return r.errNotLeader()
	}
	r.noteActivity()
	if r.readOnly.len() >= r.maxPendingReads {
		return fmt.Errorf("%d reads pending: %w", r.readOnly.len(), ErrProposalDropped)
	}
	if r.leaseValid() {
		r.readStates = append(r.readStates, ReadState{Index: r.log.committed, Ctx: ctx, Lease: true})
		return nil
	}
	req := readRequest{ctx: ctx}
	if !r.committedInTerm {
		r.readOnly.waiting = append(r.readOnly.waiting, req)
		return nil
	}
	req.index = r.log.committed
	r.queueRead(req)
	return nil
}

// queueRead puts a read with a known index into the open round, or answers
// it at once when this node is the only voter.
func (r *raft) queueRead(req readRequest) {
	if v := r.voters(); len(v) == 1 && v[0] == r.id {
		r.readStates = append(r.readStates, ReadState{Index: req.index, Ctx: req.ctx})
		return
	}
	req.round = r.readOnly.lastRound + 1
	r.readOnly.roundOpen = true
	r.readOnly.pending = append(r.readOnly.pending, req)
}

// releaseWaitingReads moves reads queued before the first commit of the
// term into a round, at the now meaningful commit index.
func (r *raft) releaseWaitingReads() {
	w := r.readOnly.waiting
	r.readOnly.waiting = nil
	for _, req := range w {
		req.index = r.log.committed
		r.queueRead(req)
	}
}

// flushReadRound broadcasts heartbeats for the open round so the reads of
// this loop turn are confirmed together.
func (r *raft) flushReadRound() {
	if r.role == RoleLeader && r.readOnly.roundOpen {
		r.bcastHeartbeat(false)
	}
}

// ackReadRound records that `from` answered round and releases every read
// whose round a quorum has now answered.
func (r *raft) ackReadRound(from uint64, pr *Progress, round uint64) {
	if round > r.readOnly.lastRound {
		return // not a round of ours (stale context)
	}
	pr.readRound = max(pr.readRound, round)
	confirmed := committedIndex(r.voters(), func(id uint64) uint64 {
		if id == r.id {
			return r.readOnly.lastRound
		}
		if p := r.prs[id]; p != nil {
			return p.readRound
		}
		return 0
	})
	n := 0
	for n < len(r.readOnly.pending) && r.readOnly.pending[n].round <= confirmed {
		req := r.readOnly.pending[n]
		r.readStates = append(r.readStates, ReadState{Index: req.index, Ctx: req.ctx})
		n++
	}
	if n > 0 {
		r.readOnly.pending = append(r.readOnly.pending[:0], r.readOnly.pending[n:]...)
	}
}
