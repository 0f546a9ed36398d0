package raft

import (
	"errors"
	"fmt"
)

// Expected conditions the runtime handles. Callers test them with
// errors.Is; the core wraps them with context.
var (
	// ErrCompacted means the requested index is below the log's first index:
	// it was compacted into a snapshot.
	ErrCompacted = errors.New("raft: requested index is compacted")
	// ErrUnavailable means the requested index is beyond the log's last
	// index, or the snapshot is not ready yet.
	ErrUnavailable = errors.New("raft: requested entry or snapshot is unavailable")
	// ErrNotLeader means the operation needs the leader. The error is a
	// *NotLeaderError carrying the leader's ID when known.
	ErrNotLeader = errors.New("raft: not the leader")
	// ErrProposalDropped means the leader refused the proposal: too many
	// uncommitted bytes (backpressure), too many pending reads, or this
	// leader was removed from the configuration. Retry later.
	ErrProposalDropped = errors.New("raft: proposal dropped")
	// ErrConfChangePending means a configuration change is not allowed yet:
	// an earlier one is uncommitted, or the leader has not yet committed an
	// entry of its own term.
	ErrConfChangePending = errors.New("raft: configuration change pending")
	// ErrTransferInProgress means a leadership transfer is under way; the
	// leader refuses proposals until it finishes or is aborted.
	ErrTransferInProgress = errors.New("raft: leadership transfer in progress")
	// ErrInvalidConfChange means the change makes no sense against the
	// current membership (removing an unknown member, removing the last
	// voter, ...).
	ErrInvalidConfChange = errors.New("raft: invalid configuration change")
	// ErrInvalidConfig means Config failed validation.
	ErrInvalidConfig = errors.New("raft: invalid config")
	// ErrStepLocal means a message of a type the core does not accept from a
	// peer was stepped in (for example a client frame).
	ErrStepLocal = errors.New("raft: message type not accepted by Step")
)

// NotLeaderError is returned when an operation needs the leader. Leader is
// the leader this node knows of (0 if none), so the runtime can redirect.
type NotLeaderError struct {
	// Leader is the known leader's ID, or 0.
	Leader uint64
}

// Error describes the redirect.
func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return "raft: not the leader (leader unknown)"
	}
	return fmt.Sprintf("raft: not the leader (leader is %d)", e.Leader)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Unwrap exposes ErrNotLeader to errors.Is/As chains.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }
