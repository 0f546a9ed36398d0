package raft

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
)

// Defaults for Config fields left zero.
const (
	// defaultElectionTicks is the election timeout in ticks.
	defaultElectionTicks = 10
	// defaultHeartbeatTicks is the heartbeat interval in ticks.
	defaultHeartbeatTicks = 1
	// defaultMaxSizePerMsgBytes caps one MsgApp's entries (1 MiB).
	defaultMaxSizePerMsgBytes = 1 << 20
	// defaultMaxInflightMsgs is the pipeline depth per follower.
	defaultMaxInflightMsgs = 256
	// defaultMaxInflightBytes caps the bytes in flight per follower (32 MiB).
	defaultMaxInflightBytes = 32 << 20
	// defaultMaxUncommittedEntriesBytes is the leader's backpressure limit
	// (64 MiB of proposals appended but not yet handed out to apply).
	defaultMaxUncommittedEntriesBytes = 64 << 20
	// defaultMaxCommittedBytesPerReady caps Ready.CommittedEntries (16 MiB).
	defaultMaxCommittedBytesPerReady = 16 << 20
	// defaultMaxPendingReads bounds queued ReadIndex requests.
	defaultMaxPendingReads = 1 << 16
)

// Config configures one RawNode. Zero fields take the defaults above.
type Config struct {
	// ID is this node's ID; never 0.
	ID uint64
	// Group is the Raft group ID stamped on every outgoing message (0 for
	// the single group); see DESIGN.md, "many groups per node".
	Group uint64
	// ElectionTicks is the election timeout: a follower that hears no leader
	// for a random number of ticks in [ElectionTicks, 2*ElectionTicks)
	// campaigns; a CheckQuorum leader steps down after ElectionTicks without
	// a quorum. Must exceed HeartbeatTicks.
	ElectionTicks int
	// HeartbeatTicks is the leader's heartbeat interval in ticks.
	HeartbeatTicks int
	// Storage is the durable log; required.
	Storage Storage
	// Applied is the last index the state machine applied before a restart;
	// entries up to it are not handed out again.
	Applied uint64
	// MaxSizePerMsgBytes caps the entry bytes of one MsgApp (at least one
	// entry is always sent).
	MaxSizePerMsgBytes uint64
	// MaxInflightMsgs caps the MsgApps in flight to one follower in
	// replicate state: the pipeline depth.
	MaxInflightMsgs int
	// MaxInflightBytes caps the entry bytes in flight to one follower.
	MaxInflightBytes uint64
	// MaxUncommittedEntriesBytes caps the entry bytes the leader appended but
	// has not yet handed out to apply; proposals beyond it get
	// ErrProposalDropped (backpressure for a leader that outruns its quorum).
	// A batch is always accepted when nothing is outstanding, so a single
	// batch larger than the limit cannot wedge the leader.
	MaxUncommittedEntriesBytes uint64
	// MaxCommittedBytesPerReady caps Ready.CommittedEntries so one apply
	// batch stays bounded; the rest follow in later Readys.
	MaxCommittedBytesPerReady uint64
	// MaxPendingReads caps the ReadIndex requests queued at the leader.
	MaxPendingReads int
	// PreVote makes a node ask whether it could win before raising its term,
	// so a rejoining partitioned node does not depose a healthy leader.
	PreVote bool
	// CheckQuorum makes a leader step down when it has not heard from a
	// quorum within an election timeout, and makes followers ignore vote
	// requests while they hear from a leader.
	CheckQuorum bool
	// LeaseReads lets the leader answer ReadIndex at once, without a
	// heartbeat round, while it holds a lease (lease.go; doc.go, "Lease
	// reads"), and makes this node honour other leaders' leases: it grants
	// no vote or pre-vote, and does not campaign, within ElectionTicks of
	// hearing from a leader or of starting. REQUIRES: CheckQuorum. Safe in
	// a mixed cluster: a leader counts towards its lease only followers
	// that say (in their heartbeat answers) that they honour it.
	LeaseReads bool
	// LeaseDriftTicks is the clock-drift bound D the lease rests on: in any
	// stretch of real time in which one voter counts k ticks, every other
	// voter that is up throughout counts at least k - D. The lease lasts
	// ElectionTicks - D ticks. 0 <= D < ElectionTicks; only read with
	// LeaseReads (its zero value is taken as is: the caller chooses D).
	LeaseDriftTicks int
	// QuiesceAfterTicks lets an idle group stop its timers (doc.go,
	// "Quiescence"): a leader that for this many ticks had nothing in
	// flight (everything committed and held by every member, no read,
	// conf change or transfer pending) tells its followers, and once all
	// of them agreed it stops heartbeating and they stop their election
	// timers, until client work, Wake, ReportUnreachable or a message
	// wakes them. 0 never quiesces. Set it on every member: a follower
	// without it never agrees, so its leader keeps heartbeating.
	QuiesceAfterTicks int
	// Rand is the only source of randomness (election jitter). If nil, a
	// PCG seeded from ID is used, so runs stay reproducible.
	Rand *rand.Rand
	// Logger receives role changes and rare events; nil discards them.
	Logger *slog.Logger
}

// withDefaults validates c and fills zero fields.
func (c Config) withDefaults() (Config, error) {
	if c.ID == 0 {
		return c, fmt.Errorf("ID must not be 0: %w", ErrInvalidConfig)
	}
	if c.Storage == nil {
		return c, fmt.Errorf("Storage is required: %w", ErrInvalidConfig)
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = defaultHeartbeatTicks
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = defaultElectionTicks
	}
	if c.HeartbeatTicks < 0 || c.ElectionTicks <= c.HeartbeatTicks {
		return c, fmt.Errorf("ElectionTicks (%d) must exceed HeartbeatTicks (%d) > 0: %w", c.ElectionTicks, c.HeartbeatTicks, ErrInvalidConfig)
	}
	if c.MaxSizePerMsgBytes == 0 {
		c.MaxSizePerMsgBytes = defaultMaxSizePerMsgBytes
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = defaultMaxInflightMsgs
	}
	if c.MaxInflightMsgs < 0 {
		return c, fmt.Errorf("MaxInflightMsgs %d: %w", c.MaxInflightMsgs, ErrInvalidConfig)
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = defaultMaxInflightBytes
	}
	if c.MaxUncommittedEntriesBytes == 0 {
		c.MaxUncommittedEntriesBytes = defaultMaxUncommittedEntriesBytes
	}
	if c.MaxCommittedBytesPerReady == 0 {
		c.MaxCommittedBytesPerReady = defaultMaxCommittedBytesPerReady
	}
	if c.MaxPendingReads == 0 {
		c.MaxPendingReads = defaultMaxPendingReads
	}
	if c.LeaseReads {
		if !c.CheckQuorum {
			return c, fmt.Errorf("LeaseReads needs CheckQuorum (a lease rests on followers ignoring vote requests while they hear from a leader): %w", ErrInvalidConfig)
		}
		if c.LeaseDriftTicks < 0 || c.LeaseDriftTicks >= c.ElectionTicks {
			return c, fmt.Errorf("LeaseDriftTicks %d must be in [0, ElectionTicks %d): %w", c.LeaseDriftTicks, c.ElectionTicks, ErrInvalidConfig)
		}
	}
	if c.QuiesceAfterTicks < 0 {
		return c, fmt.Errorf("QuiesceAfterTicks %d: %w", c.QuiesceAfterTicks, ErrInvalidConfig)
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(c.ID, 0x7261667470697065))
	}
	return c, nil
}
