package raft

import (
	"fmt"

	"github.com/raftpipe/raftpipe/wire"
)

// SoftState is volatile state worth reporting: who leads and our role. The
// runtime watches it to fail pending proposals and reads when this node
// stops being the leader.
type SoftState struct {
	// Lead is the known leader (0 = unknown).
	Lead uint64
	// Role is this node's role.
	Role Role
}

// Ready is everything the runtime must do after a batch of inputs; see the
// call contract in doc.go.
type Ready struct {
	// SoftState is set when the leader or role changed since the last Ready.
	SoftState *SoftState
	// HardState must be persisted (with Entries) if not empty; it is empty
	// when unchanged.
	HardState wire.HardState
	// Entries must be appended to the durable log. The first may be at or
	// below the last durable index: then the log's suffix from there is
	// overwritten.
	Entries []wire.Entry
	// Snapshot, if set, must be installed (state machine restored from the
	// received data, log reset to start after Snapshot.Index) before
	// Entries are persisted.
	Snapshot *wire.SnapshotMeta
	// Messages may be sent at once (in particular the leader's MsgApps: they
	// replicate in parallel with the leader's own fsync).
	Messages []wire.Message
	// MessagesAfterPersist may be sent only once this Ready's HardState,
	// Entries and Snapshot are durable (vote requests and grants, append
	// acks).
	MessagesAfterPersist []wire.Message
	// CommittedEntries must be applied in order. They are all committed and
	// durable locally.
	CommittedEntries []wire.Entry
	// ReadStates are confirmed ReadIndex requests.
	ReadStates []ReadState
}

// RawNode is the consensus core of one node in one Raft group. It is not
// safe for concurrent use: one goroutine (the runtime's loop) owns it.
type RawNode struct {
	// r is the protocol state.
	r *raft
	// prevSoft is the SoftState of the last Ready.
	prevSoft SoftState
	// prevHard is the HardState of the last Ready (or the initial one).
	prevHard wire.HardState
	// readyOutstanding is set between Ready and Advance.
	readyOutstanding bool
	// appliedConf is the membership as of the entries the runtime applied
	// (tracked through ApplyConfChange), which its snapshots must record.
	appliedConf wire.ConfState
}

// NewRawNode restores a node from cfg.Storage (empty storage = a new node
// whose bootstrap membership is the storage's ConfState).
func NewRawNode(cfg Config) (*RawNode, error) {
	r, err := newRaft(cfg)
	if err != nil {
		return nil, err
	}
	rn := &RawNode{r: r}
	rn.prevSoft = rn.softState()
	rn.prevHard = r.hardState()
	rn.appliedConf = cloneConfState(r.confs.at(r.log.applied))
	return rn, nil
}

// softState is the current SoftState.
func (rn *RawNode) softState() SoftState { return SoftState{Lead: rn.r.lead, Role: rn.r.role} }

// Tick advances the logical clock by one tick (elections, heartbeats,
// CheckQuorum and transfer timeouts are counted in ticks).
func (rn *RawNode) Tick() {
	rn.r.tick()
	rn.r.checkInvariants()
}

// Step processes a message received from a peer. For MsgSnap, call it only
// once the runtime has received the whole snapshot data.
func (rn *RawNode) Step(m wire.Message) error {
	err := rn.r.Step(m)
	rn.r.checkInvariants()
	return err
}

// Propose appends one normal entry per data (leader only). The core keeps
// the data slices; the caller must not modify them afterwards. Errors:
// *NotLeaderError (errors.Is ErrNotLeader), ErrTransferInProgress,
// ErrProposalDropped.
func (rn *RawNode) Propose(data ...[]byte) error { return rn.r.propose(data) }

// ProposeConfChange appends a single-server membership change (leader
// only). Errors: *NotLeaderError, ErrConfChangePending,
// ErrTransferInProgress, ErrInvalidConfChange.
func (rn *RawNode) ProposeConfChange(cc wire.ConfChange) error {
	return rn.r.proposeConfChange(cc)
}

// TransferLeadership starts handing leadership to voter `to`. It is aborted
// after an election timeout; proposals fail with ErrTransferInProgress
// meanwhile. A no-op on followers.
func (rn *RawNode) TransferLeadership(to uint64) { rn.r.transferLeadership(to) }

// ReadIndex queues a linearizable read; its ReadState (Index, ctx) arrives
// in a later Ready. Reads queued before the same Ready share one heartbeat
// round. Returns *NotLeaderError on a non-leader, ErrProposalDropped when
// too many reads are pending. Reads still pending when the node loses
// leadership are dropped: the runtime fails them on the SoftState change.
func (rn *RawNode) ReadIndex(ctx []byte) error { return rn.r.readIndex(ctx) }

// Campaign makes this node campaign now (with a PreVote round if enabled).
func (rn *RawNode) Campaign() error {
	if rn.r.role == RoleLeader {
		return nil
	}
	if !rn.r.promotable() {
		return fmt.Errorf("node %d is not a voter (or is installing a snapshot): %w", rn.r.id, ErrNotLeader)
	}
	rn.r.hup(campaignPreElection)
	return nil
}

// HasReady reports whether Ready would return anything to do.
func (rn *RawNode) HasReady() bool {
	r := rn.r
	if rn.softState() != rn.prevSoft {
		return true
	}
	if hs := r.hardState(); !hs.IsEmpty() && hs != rn.prevHard {
		return true
	}
	u := &r.log.unstable
	return u.nextSnapshot() != nil ||
		len(u.nextEntries()) > 0 ||
		(r.commitBcastPending && r.role == RoleLeader) ||
		len(r.msgs) > 0 || len(r.msgsAfterPersist) > 0 ||
		r.log.hasNextCommittedEnts() ||
		len(r.readStates) > 0 ||
		(r.role == RoleLeader && r.readOnly.roundOpen)
}

// Ready returns what to persist, send and apply, and marks it handed out:
// the same entries are not returned again (unless overwritten). Call
// Advance before the next Ready.
func (rn *RawNode) Ready() Ready {
	if rn.readyOutstanding {
		panic("raft: invariant violated: Ready called twice without Advance")
	}
	r := rn.r
	r.flushReadRound()
	r.flushCommitBcast()
	u := &r.log.unstable
	rd := Ready{
		Entries:              u.nextEntries(),
		Snapshot:             u.nextSnapshot(),
		Messages:             r.msgs,
		MessagesAfterPersist: r.msgsAfterPersist,
		ReadStates:           r.readStates,
		CommittedEntries:     r.log.nextCommittedEnts(),
	}
	if ss := rn.softState(); ss != rn.prevSoft {
		rn.prevSoft = ss
		p := new(SoftState) // allocated only on a change
		*p = ss
		rd.SoftState = p
	}
	if hs := r.hardState(); hs != rn.prevHard {
		rn.prevHard = hs
		rd.HardState = hs
	}
	// Accept: everything above is now the runtime's.
	u.acceptInProgress()
	if rd.Snapshot != nil {
		r.log.applied = rd.Snapshot.Index
		rn.appliedConf = cloneConfState(rd.Snapshot.Conf)
	}
	if n := len(rd.CommittedEntries); n > 0 {
		r.log.appliedTo(rd.CommittedEntries[n-1].Index)
		if r.role == RoleLeader {
			sz := entriesSize(rd.CommittedEntries)
			r.uncommittedBytes -= min(sz, r.uncommittedBytes)
		}
	}
	// The runtime owns the handed-out slices; size the next ones like
	// these so appending rarely regrows them.
	r.msgsCap, r.msgsAfterCap = hintCap(len(r.msgs)), hintCap(len(r.msgsAfterPersist))
	r.msgs, r.msgsAfterPersist, r.readStates = nil, nil, nil
	rn.readyOutstanding = true
	r.checkInvariants()
	return rd
}

// Advance tells the core the runtime has taken rd (it may still be
// persisting it asynchronously).
func (rn *RawNode) Advance(rd Ready) {
	if !rn.readyOutstanding {
		panic("raft: invariant violated: Advance without Ready")
	}
	rn.readyOutstanding = false
	r := rn.r
	if len(r.confs.records) > 1 {
		r.confs.compact(min(r.log.storage.FirstIndex()-1, r.log.applied))
	}
}

// AckPersisted reports that every Ready handed out so far is durable up to
// log entry (index, term): its entries, HardState and Snapshot. Acks whose
// (index, term) no longer matches the log (overwritten meanwhile) are
// ignored. The leader counts itself towards commit only from here.
func (rn *RawNode) AckPersisted(index, term uint64) {
	rn.r.log.stableTo(index, term)
	rn.r.ackPersisted()
	rn.r.checkInvariants()
}

// ReportSnapshot reports the end of a snapshot transfer to `to`.
func (rn *RawNode) ReportSnapshot(to uint64, failed bool) { rn.r.reportSnapshot(to, failed) }

// ReportUnreachable reports that a message to `to` could not be sent, or
// that the transport suspects `to` is down (its connection broke): the
// leader stops pipelining to it and probes. It also wakes a quiesced node
// that depends on `to`: a quiesced leader when `to` is a member, a
// quiesced follower when `to` is its leader (its election timer then runs
// from zero, so it campaigns after the usual timeout unless the leader
// answers). Call it for every group `to` is in when its connection breaks:
// a quiesced group sends nothing, so no failed send would report it.
func (rn *RawNode) ReportUnreachable(to uint64) { rn.r.reportUnreachable(to) }

// Wake takes the node out of quiescence (Config.QuiesceAfterTicks): a
// leader heartbeats at once and resumes its timers; a follower restarts
// its election timer and pokes its leader, which wakes it too. On a leader
// that is not quiesced it restarts the idle count. Otherwise a no-op.
// Client work (Propose, ReadIndex, ProposeConfChange, TransferLeadership)
// and messages wake the node on their own; Wake is for the runtime's
// other reasons (a peer reconnected, an operator asked).
func (rn *RawNode) Wake() {
	rn.r.wake()
	rn.r.checkInvariants()
}

// TickQuiesced accounts for n ticks that the runtime skipped while
// Quiesced() was true, in O(1); on a node that is not quiesced it is n
// calls of Tick. A runtime may stop ticking a quiesced group and call
// TickQuiesced(ticks missed) before the group's next input: while
// quiesced, Tick only counts, and nothing but an input ends quiescence,
// so the result is the same as ticking all along. Skipping the ticks
// without accounting for them is safe (a woken leader takes a new lease)
// but delays the timers that measure silence: elections, CheckQuorum and
// the vote checks.
func (rn *RawNode) TickQuiesced(n uint64) {
	r := rn.r
	if r.quiesced {
		r.tickCount += n
		if r.role != RoleLeader {
			r.electionElapsed = int(min(uint64(r.electionElapsed)+n, 1<<62))
		}
		return
	}
	for ; n > 0; n-- {
		rn.Tick()
	}
}

// ApplyConfChange is called by the runtime when it applies a conf-change
// entry; it returns the membership as of the applied entries, which the
// runtime records with its snapshots. The core's own membership is already
// in effect since the entry was appended (doc.go, "Membership"); an invalid
// change leaves the membership unchanged, exactly as the core skipped it.
func (rn *RawNode) ApplyConfChange(cc wire.ConfChange) wire.ConfState {
	if next, err := applyConfChange(rn.appliedConf, cc); err == nil {
		rn.appliedConf = next
	}
	return cloneConfState(rn.appliedConf)
}

// Status is a snapshot of the node's state for /status and tests.
type Status struct {
	// ID is this node.
	ID uint64
	// Term, Vote, Lead and Role are the protocol state.
	Term, Vote, Lead uint64
	// Role is this node's role.
	Role Role
	// Commit is the commit index; Applied the last index handed out to
	// apply; LastIndex the log's last index; Durable the last acked index.
	Commit, Applied, LastIndex, Durable uint64
	// Conf is the membership in effect.
	Conf wire.ConfState
	// LeadTransferee is the transfer target, if a transfer is under way.
	LeadTransferee uint64
	// Quiesced says the node's timers are stopped (Config.QuiesceAfterTicks).
	Quiesced bool
	// Progress is the leader's view of each member (leader only).
	Progress map[uint64]ProgressStatus
}

// Status returns a copy of the node's state.
func (rn *RawNode) Status() Status {
	r := rn.r
	s := Status{
		ID: r.id, Term: r.term, Vote: r.vote, Lead: r.lead, Role: r.role,
		Commit: r.log.committed, Applied: r.log.applied, LastIndex: r.log.lastIndex(),
		Durable: r.log.durableIndex(), Conf: cloneConfState(r.confs.current()),
		LeadTransferee: r.leadTransferee, Quiesced: r.quiesced,
	}
	if r.role == RoleLeader {
		s.Progress = make(map[uint64]ProgressStatus, len(r.prIDs))
		for _, id := range r.prIDs {
			pr := r.prs[id]
			s.Progress[id] = ProgressStatus{
				Match: pr.Match, Next: pr.Next, State: pr.State, PendingSnapshot: pr.PendingSnapshot,
				Inflight: pr.inflights.len(), InflightBytes: pr.inflights.bytes,
				RecentActive: r.recentActive(id, pr), IsLearner: pr.IsLearner,
			}
		}
	}
	return s
}

// maxMsgsCapHint bounds the capacity preallocated for a Ready's messages.
const maxMsgsCapHint = 64

// hintCap is the capacity to preallocate for the next Ready's messages
// given the last one's count.
func hintCap(n int) int { return min(max(n, 1), maxMsgsCapHint) }
