package raft

import "fmt"

// ProgressState is how the leader currently replicates to one follower.
type ProgressState uint8

const (
	// StateProbe: the leader does not know where the follower's log matches
	// its own; it sends one MsgApp per heartbeat interval (or per response)
	// and backs up on rejections.
	StateProbe ProgressState = iota
	// StateReplicate: the follower's log matches up to Match; the leader
	// streams entries optimistically, bounded by the inflight ring.
	StateReplicate
	// StateSnapshot: the follower needs a snapshot; the leader sends nothing
	// until the runtime reports the transfer (ReportSnapshot) or the follower
	// acks an index at or beyond PendingSnapshot.
	StateSnapshot
)

// String returns the state's lower-case name as shown by Status.
func (s ProgressState) String() string {
	switch s {
	case StateProbe:
		return "probe"
	case StateReplicate:
		return "replicate"
	case StateSnapshot:
		return "snapshot"
	}
	return fmt.Sprintf("ProgressState(%d)", uint8(s))
}

// Progress is the leader's view of one member's log. The leader keeps one
// per voter and learner, itself included (its own Match is its durable last
// index, so the leader counts itself towards commit only for entries on its
// disk).
type Progress struct {
	// Match is the highest index known durable on the member and matching
	// the leader's log.
	Match uint64
	// Next is the index of the next entry to send. In replicate state it runs
	// ahead of Match by the entries in flight.
	Next uint64
	// State selects the flow-control regime.
	State ProgressState
	// PendingSnapshot is the index of the snapshot being sent in snapshot
	// state; an ack at or beyond it ends the state.
	PendingSnapshot uint64
	// lastHeardTick is the leader's tick count when the member last sent
	// anything; CheckQuorum and snapshot sending ask whether that was
	// within an election timeout.
	lastHeardTick uint64
	// MsgAppFlowPaused stops further MsgApps in probe state until a response
	// or a heartbeat response arrives: probing is one message at a time.
	MsgAppFlowPaused bool
	// IsLearner marks a member that receives the log but does not vote.
	IsLearner bool
	// sentCommit is the highest commit index sent to the member; the leader
	// sends an empty MsgApp only when the commit index moved past it.
	sentCommit uint64
	// readRound is the highest ReadIndex heartbeat round the member answered.
	readRound uint64
	// leaseRound is the highest heartbeat round the member answered while
	// promising to honour the leader's lease (lease.go).
	leaseRound uint64
	// quiesceRound is the highest quiesce-notice round the member answered
	// saying it quiesced (quiesce.go).
	quiesceRound uint64
	// inflights bounds the pipeline in replicate state.
	inflights *inflights
}

// resetState moves to state s, forgetting flow-control details.
func (pr *Progress) resetState(s ProgressState) {
	pr.MsgAppFlowPaused = false
	pr.PendingSnapshot = 0
	pr.State = s
	pr.inflights.reset()
}

// becomeProbe moves to probe state. After a snapshot it probes from just past
// the snapshot (the follower has, or will have, at least that).
func (pr *Progress) becomeProbe() {
	if pr.State == StateSnapshot {
		pending := pr.PendingSnapshot
		pr.resetState(StateProbe)
		pr.Next = max(pr.Match+1, pending+1)
		return
	}
	pr.resetState(StateProbe)
	pr.Next = pr.Match + 1
}

// becomeReplicate moves to replicate state and restarts streaming after Match.
func (pr *Progress) becomeReplicate() {
	pr.resetState(StateReplicate)
	pr.Next = pr.Match + 1
}

// becomeSnapshot moves to snapshot state waiting for the snapshot at index.
func (pr *Progress) becomeSnapshot(index uint64) {
	pr.resetState(StateSnapshot)
	pr.PendingSnapshot = index
}

// maybeUpdate records an ack of index n; it reports whether Match grew.
func (pr *Progress) maybeUpdate(n uint64) bool {
	updated := false
	if pr.Match < n {
		pr.Match = n
		updated = true
		pr.MsgAppFlowPaused = false
	}
	pr.Next = max(pr.Next, n+1)
	return updated
}

// sentEntries records that a MsgApp carrying entries up to lastIndex (n
// entries, bytes payload bytes) and commit was sent.
func (pr *Progress) sentEntries(lastIndex uint64, n int, bytes uint64, commit uint64) {
	switch pr.State {
	case StateReplicate:
		if n > 0 {
			pr.Next = lastIndex + 1
			pr.inflights.add(lastIndex, bytes)
		}
	case StateProbe:
		// One probe at a time: wait for its answer (or a heartbeat
		// response) before sending again.
		pr.MsgAppFlowPaused = true
	default:
		panic(fmt.Sprintf("raft: invariant violated: sending entries in state %v", pr.State))
	}
	pr.sentCommit = max(pr.sentCommit, commit)
}

// maybeDecrTo handles a rejection of the MsgApp whose previous index was
// rejected; next is the new probe position computed from the hint. It
// reports false for a stale rejection.
func (pr *Progress) maybeDecrTo(rejected, next uint64) bool {
	if pr.State == StateReplicate {
		// In replicate state only a rejection above Match is news; anything
		// else answers an older message.
		if rejected <= pr.Match {
			return false
		}
		pr.Next = max(pr.Match+1, min(next, rejected))
		return true
	}
	// In probe state only the answer to the current probe counts.
	if pr.Next-1 != rejected {
		return false
	}
	pr.Next = max(pr.Match+1, min(next, rejected))
	pr.MsgAppFlowPaused = false
	return true
}

// isPaused reports whether the leader must not send a MsgApp now.
func (pr *Progress) isPaused() bool {
	switch pr.State {
	case StateProbe:
		return pr.MsgAppFlowPaused
	case StateReplicate:
		return pr.inflights.full()
	default:
		return true
	}
}

// ProgressStatus is a copy of one member's Progress for Status and /status.
type ProgressStatus struct {
	// Match is the member's durable matching index.
	Match uint64
	// Next is the next index the leader will send.
	Next uint64
	// State is probe, replicate or snapshot.
	State ProgressState
	// PendingSnapshot is the snapshot index in flight (snapshot state).
	PendingSnapshot uint64
	// Inflight is the number of MsgApps awaiting an ack.
	Inflight int
	// InflightBytes is their payload size.
	InflightBytes uint64
	// RecentActive says whether the member was heard from within the last
	// election timeout.
	RecentActive bool
	// IsLearner marks a non-voting member.
	IsLearner bool
}
