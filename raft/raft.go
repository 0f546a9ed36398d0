package raft

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"

	"github.com/raftpipe/raftpipe/wire"
)

// Role is a node's part in the protocol.
type Role uint8

const (
	// RoleFollower answers leaders and candidates.
	RoleFollower Role = iota
	// RolePreCandidate asks for pre-votes without raising its term.
	RolePreCandidate
	// RoleCandidate asks for votes in a new term.
	RoleCandidate
	// RoleLeader replicates the log.
	RoleLeader
)

// String returns the role's name as shown by Status and scenario output.
func (r Role) String() string {
	switch r {
	case RoleFollower:
		return "follower"
	case RolePreCandidate:
		return "pre-candidate"
	case RoleCandidate:
		return "candidate"
	case RoleLeader:
		return "leader"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// campaignKind says why a node campaigns.
type campaignKind uint8

const (
	// campaignPreElection runs a PreVote round first.
	campaignPreElection campaignKind = iota
	// campaignElection raises the term and asks for votes.
	campaignElection
	// campaignTransfer is an election ordered by MsgTimeoutNow: it skips
	// PreVote and the voters' leader-lease check.
	campaignTransfer
)

// transferContext marks the vote requests of a leadership transfer so that
// voters bypass their CheckQuorum lease (Message.Context).
var transferContext = []byte("raftpipe/transfer")

// raft is the protocol state of one node. It is driven only through
// RawNode; it does no I/O and keeps no clock beyond tick counts.
type raft struct {
	// id is this node.
	id uint64
	// group is stamped on outgoing messages.
	group uint64
	// term is the current term; vote the node voted for in it (0 = none).
	term, vote uint64
	// lead is the leader of term as far as this node knows (0 = unknown).
	lead uint64
	// role is the current role.
	role Role
	// log is the log (durable + unstable) with commit/apply cursors.
	log *raftLog
	// confs is the membership of every log prefix; the last is in effect.
	confs confHistory
	// prs is the leader's replication progress per member (also kept, but
	// unused, in other roles so membership changes need no special case).
	prs map[uint64]*Progress
	// prIDs lists prs' keys sorted: iteration order must be deterministic.
	prIDs []uint64
	// votes collects (pre-)vote answers while campaigning.
	votes map[uint64]bool
	// msgs are messages that may be sent at once.
	msgs []wire.Message
	// msgsAfterPersist may be sent only once the Ready carrying them is
	// durable (vote grants, append acks, vote requests).
	msgsAfterPersist []wire.Message
	// msgsCap and msgsAfterCap size the next msgs/msgsAfterPersist slices
	// (the previous Ready's counts), so appending rarely regrows them.
	msgsCap, msgsAfterCap int
	// readStates are ReadIndex results ready for the runtime.
	readStates []ReadState
	// readOnly tracks pending ReadIndex requests (leader only).
	readOnly readOnly
	// commitBcastPending says the commit index advanced on an ack since
	// the last Ready; Ready tells the followers once (flushCommitBcast).
	commitBcastPending bool
	// electionElapsed counts ticks since the last valid leader contact (or,
	// on a leader, since the last CheckQuorum check).
	electionElapsed int
	// tickCount counts every Tick since start: the clock that lastHeardTick
	// readings compare against.
	tickCount uint64
	// heartbeatElapsed counts ticks since the last heartbeat (leader).
	heartbeatElapsed int
	// electionTimeout and heartbeatTimeout are in ticks (Config).
	electionTimeout, heartbeatTimeout int
	// randomizedElectionTimeout is this term's jittered timeout in
	// [electionTimeout, 2*electionTimeout).
	randomizedElectionTimeout int
	// leadTransferee is the transfer target while one is under way.
	leadTransferee uint64
	// uncommittedBytes is the leader's appended-but-not-applied entry bytes.
	uncommittedBytes uint64
	// committedInTerm says the leader committed an entry of its own term
	// (required before conf changes and reads).
	committedInTerm bool
	// preVote, checkQuorum: Config.
	preVote, checkQuorum bool
	// leaseReads is Config.LeaseReads; leaseTicks the lease length,
	// ElectionTicks - LeaseDriftTicks (lease.go).
	leaseReads bool
	leaseTicks int
	// quietUntilTick: with leaseReads, this node grants no vote or pre-vote
	// to another node, and does not campaign, while tickCount is below it.
	// Set to tickCount + ElectionTicks on every message from the leader and
	// at start (a restarted node cannot know when it last heard from one).
	// Kept apart from electionElapsed and lead, which term changes reset.
	quietUntilTick uint64
	// quiesceAfterTicks is Config.QuiesceAfterTicks (0: never quiesce).
	quiesceAfterTicks int
	// quiesced says the node's timers are stopped (quiesce.go): a leader
	// sends no heartbeats and runs no CheckQuorum, a follower does not
	// campaign. Tick only counts while it is set.
	quiesced bool
	// idleTicks counts the leader's consecutive ticks with nothing in
	// flight (quiesceEligible).
	idleTicks int
	// quiesceFromRound is the heartbeat round of the first quiesce notice
	// of the leader's current attempt (0: no attempt). Answers to it or a
	// later notice count (Progress.quiesceRound).
	quiesceFromRound uint64
	// Limits from Config (see there).
	maxMsgBytes, maxInflightBytes, maxUncommittedBytes uint64
	// maxInflightMsgs is Config.MaxInflightMsgs.
	maxInflightMsgs int
	// maxPendingReads is Config.MaxPendingReads.
	maxPendingReads int
	// propBuf is reused to build proposed entries without allocating.
	propBuf []wire.Entry
	// rand jitters election timeouts.
	rand *rand.Rand
	// logger may be nil.
	logger *slog.Logger
}

// newRaft restores a node from storage.
func newRaft(c Config) (*raft, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	hs, cs, err := c.Storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raft: reading initial state: %w", err)
	}
	r := &raft{
		id:                  c.ID,
		group:               c.Group,
		log:                 newLog(c.Storage, c.MaxCommittedBytesPerReady),
		prs:                 make(map[uint64]*Progress),
		electionTimeout:     c.ElectionTicks,
		heartbeatTimeout:    c.HeartbeatTicks,
		preVote:             c.PreVote,
		checkQuorum:         c.CheckQuorum,
		leaseReads:          c.LeaseReads,
		leaseTicks:          c.ElectionTicks - c.LeaseDriftTicks,
		quiesceAfterTicks:   c.QuiesceAfterTicks,
		maxMsgBytes:         c.MaxSizePerMsgBytes,
		maxInflightBytes:    c.MaxInflightBytes,
		maxUncommittedBytes: c.MaxUncommittedEntriesBytes,
		maxInflightMsgs:     c.MaxInflightMsgs,
		maxPendingReads:     c.MaxPendingReads,
		rand:                c.Rand,
		logger:              c.Logger,
	}
	first := r.log.firstIndex()
	r.confs.reset(first-1, cs)
	// Replay the configuration changes in the durable log (append-time
	// membership: every entry in the log counts, committed or not).
	last := r.log.lastIndex()
	for lo := first; lo <= last; {
		ents, err := c.Storage.Entries(lo, last+1, c.MaxSizePerMsgBytes)
		if err != nil {
			return nil, fmt.Errorf("raft: replaying membership from [%d, %d]: %w", lo, last, err)
		}
		if len(ents) == 0 {
			panic(fmt.Sprintf("raft: invariant violated: storage returned no entries for [%d, %d]", lo, last))
		}
		r.confs.observe(ents)
		lo = ents[len(ents)-1].Index + 1
	}
	if !hs.IsEmpty() {
		if hs.Commit > last {
			return nil, fmt.Errorf("raft: hard state commit %d beyond last index %d: %w", hs.Commit, last, ErrInvalidConfig)
		}
		r.log.committed = max(r.log.committed, hs.Commit)
		r.term, r.vote = hs.Term, hs.Vote
	}
	if c.Applied > last {
		return nil, fmt.Errorf("raft: applied %d beyond last index %d: %w", c.Applied, last, ErrInvalidConfig)
	}
	// The commit index is persisted lazily: entries the state machine
	// applied are committed even if the HardState saying so was lost.
	r.log.committed = max(r.log.committed, c.Applied)
	r.log.applied = max(r.log.applied, c.Applied)
	r.applyMembership()
	r.becomeFollower(r.term, 0)
	if r.leaseReads {
		r.quietUntilTick = uint64(r.electionTimeout)
	}
	return r, nil
}

// logf logs at info level if a logger is configured.
func (r *raft) logf(msg string, args ...any) {
	if r.logger != nil {
		r.logger.Info(msg, append([]any{"id", r.id, "term", r.term}, args...)...)
	}
}

// hardState is the state that must be durable before answering.
func (r *raft) hardState() wire.HardState {
	return wire.HardState{Term: r.term, Vote: r.vote, Commit: r.log.committed}
}

// voters is the voter list in effect (sorted).
func (r *raft) voters() []uint64 { return r.confs.current().Voters }

// promotable reports whether this node may campaign: it is a voter and is
// not waiting for a received snapshot to become durable.
func (r *raft) promotable() bool {
	return isVoter(r.confs.current(), r.id) && r.log.unstable.snapshot == nil
}

// applyMembership makes the progress set match the membership in effect.
func (r *raft) applyMembership() {
	cs := r.confs.current()
	ids := make([]uint64, 0, len(cs.Voters)+len(cs.Learners))
	ids = append(ids, cs.Voters...)
	ids = append(ids, cs.Learners...)
	slices.Sort(ids)
	for _, id := range r.prIDs {
		if _, ok := slices.BinarySearch(ids, id); !ok {
			delete(r.prs, id)
		}
	}
	last := r.log.lastIndex()
	for _, id := range ids {
		pr, ok := r.prs[id]
		if !ok {
			pr = &Progress{Next: last + 1, lastHeardTick: r.tickCount, inflights: newInflights(r.maxInflightMsgs, r.maxInflightBytes)}
			if id == r.id {
				pr.Match = r.log.durableIndex()
			}
			r.prs[id] = pr
		}
		pr.IsLearner = !isVoter(cs, id)
	}
	r.prIDs = ids
	r.readOnly.lease.restartAfter(r.readOnly.lastRound)
	if r.leadTransferee != 0 && !isVoter(cs, r.leadTransferee) {
		r.abortLeaderTransfer()
	}
}

// appendToLog appends ents (truncating a conflicting suffix) and keeps the
// membership in step with the log (append-time semantics). It returns the
// new last index.
func (r *raft) appendToLog(ents []wire.Entry) uint64 {
	if len(ents) == 0 {
		return r.log.lastIndex()
	}
	changed := false
	if ents[0].Index <= r.log.lastIndex() {
		changed = r.confs.truncateFrom(ents[0].Index)
	}
	last := r.log.append(ents)
	c, skipped := r.confs.observe(ents)
	if len(skipped) > 0 {
		r.logf("skipped invalid conf-change entries", "indexes", skipped)
	}
	if changed || c {
		r.applyMembership()
	}
	return last
}

// resetRandomizedElectionTimeout draws this term's election timeout.
func (r *raft) resetRandomizedElectionTimeout() {
	r.randomizedElectionTimeout = r.electionTimeout + r.rand.IntN(r.electionTimeout)
}

// reset prepares for a new role in term.
func (r *raft) reset(term uint64) {
	if r.term != term {
		r.term = term
		r.vote = 0
	}
	r.lead = 0
	r.electionElapsed = 0
	r.heartbeatElapsed = 0
	r.resetRandomizedElectionTimeout()
	r.abortLeaderTransfer()
	r.votes = nil
	r.uncommittedBytes = 0
	r.committedInTerm = false
	r.readOnly.reset()
	// A new role or term leaves quiescence: a new leader must heartbeat,
	// a follower of a new leader must time it out.
	r.quiesced = false
	r.idleTicks = 0
	r.quiesceFromRound = 0
	last := r.log.lastIndex()
	for _, id := range r.prIDs {
		pr := r.prs[id]
		*pr = Progress{Next: last + 1, IsLearner: pr.IsLearner, inflights: pr.inflights}
		pr.inflights.reset()
		if id == r.id {
			pr.Match = r.log.durableIndex()
		}
	}
}

// becomeFollower steps down (or stays) as a follower of lead in term.
func (r *raft) becomeFollower(term, lead uint64) {
	changed := r.role != RoleFollower
	r.reset(term)
	r.lead = lead
	r.role = RoleFollower
	if changed {
		r.logf("became follower", "lead", lead)
	}
}

// becomePreCandidate starts a PreVote round: no term change, no vote.
func (r *raft) becomePreCandidate() {
	if r.role == RoleLeader {
		panic("raft: invariant violated: leader cannot become pre-candidate")
	}
	// Like etcd, keep term and vote: a pre-candidacy changes nothing durable.
	r.votes = make(map[uint64]bool)
	r.quiesced = false // a campaign that fails must be retried on timeout
	r.lead = 0
	r.role = RolePreCandidate
	r.logf("became pre-candidate")
}

// becomeCandidate raises the term and votes for itself.
func (r *raft) becomeCandidate() {
	if r.role == RoleLeader {
		panic("raft: invariant violated: leader cannot become candidate")
	}
	r.reset(r.term + 1)
	r.vote = r.id
	r.votes = make(map[uint64]bool)
	r.role = RoleCandidate
	r.logf("became candidate")
}

// becomeLeader takes over and appends the empty entry that commits the
// previous terms' entries (Raft §5.4.2).
func (r *raft) becomeLeader() {
	if r.role == RoleFollower {
		panic("raft: invariant violated: follower cannot become leader without an election")
	}
	r.reset(r.term)
	r.lead = r.id
	r.role = RoleLeader
	for _, id := range r.prIDs {
		pr := r.prs[id]
		pr.lastHeardTick = r.tickCount // a fresh leader grants everyone a full timeout
		if id == r.id {
			// Our own log matches itself; Match stays the durable index.
			pr.becomeReplicate()
			pr.Next = r.log.lastIndex() + 1
		}
	}
	r.propBuf = append(r.propBuf[:0], wire.Entry{Type: wire.EntryNoop})
	r.appendEntries(r.propBuf)
	r.logf("became leader", "last", r.log.lastIndex())
}

// send queues m for the runtime, stamping From, Group and (unless set)
// Term. Messages that promise durable state go to msgsAfterPersist.
func (r *raft) send(m wire.Message) {
	m.From = r.id
	m.Group = r.group
	if m.Term == 0 {
		m.Term = r.term
	}
	switch m.Type {
	case wire.MsgVote, wire.MsgVoteResp, wire.MsgAppResp:
		// A vote request or grant is a promise about our term/vote; an
		// append ack promises durable entries. Both must be on disk first.
		if r.msgsAfterPersist == nil {
			r.msgsAfterPersist = make([]wire.Message, 0, r.msgsAfterCap)
		}
		if n := len(r.msgsAfterPersist); n > 0 && m.Type == wire.MsgAppResp && !m.Reject {
			// Acks are cumulative: an ack of Index covers every smaller
			// index, and the leader only raises Match and frees inflights
			// up to it. A follower that steps several appends in one loop
			// turn answers them all with the last ack instead of one per
			// append (fewer messages to send, step and account).
			if last := &r.msgsAfterPersist[n-1]; last.Type == wire.MsgAppResp && !last.Reject &&
				last.To == m.To && last.Term == m.Term && last.Index <= m.Index {
				*last = m
				return
			}
		}
		r.msgsAfterPersist = append(r.msgsAfterPersist, m)
	default:
		if r.msgs == nil {
			r.msgs = make([]wire.Message, 0, r.msgsCap)
		}
		r.msgs = append(r.msgs, m)
	}
}

// tick advances the logical clock by one tick.
func (r *raft) tick() {
	r.tickCount++
	if r.quiesced {
		// Timers stopped. tickCount still counts (leases and quiet windows
		// are measured in it), and so does a follower's electionElapsed:
		// it is how long ago we heard from the leader, which the vote
		// checks ask; only the campaign it would trigger is held back.
		if r.role != RoleLeader {
			r.electionElapsed++
		}
		return
	}
	if r.role == RoleLeader {
		r.tickHeartbeat()
	} else {
		r.tickElection()
	}
}

// tickElection runs the election timer of followers and candidates.
func (r *raft) tickElection() {
	r.electionElapsed++
	if r.promotable() && r.electionElapsed >= r.randomizedElectionTimeout {
		r.electionElapsed = 0
		r.hup(campaignPreElection)
	}
}

// tickHeartbeat runs the leader's heartbeat and CheckQuorum timers.
func (r *raft) tickHeartbeat() {
	r.heartbeatElapsed++
	r.electionElapsed++
	if r.checkQuorum && !r.quorumActive() {
		r.logf("stepping down: no quorum heard within an election timeout")
		r.becomeFollower(r.term, 0)
		return
	}
	if r.electionElapsed >= r.electionTimeout {
		r.electionElapsed = 0
		if r.leadTransferee != 0 {
			r.logf("aborting leadership transfer: timed out", "to", r.leadTransferee)
			r.abortLeaderTransfer()
		}
	}
	notice := r.tickIdle()
	if r.heartbeatElapsed >= r.heartbeatTimeout {
		r.heartbeatElapsed = 0
		r.bcastHeartbeat(notice)
	}
}

// recentActive reports whether member pr was heard from within the last
// election timeout (the leader itself always is).
func (r *raft) recentActive(id uint64, pr *Progress) bool {
	return id == r.id || r.tickCount-pr.lastHeardTick < uint64(r.electionTimeout)
}

// quorumActive reports whether a quorum of voters was heard from within
// the last election timeout. Checked every tick, so a leader steps down
// exactly one election timeout after it last heard from a quorum.
func (r *raft) quorumActive() bool {
	voters := r.voters()
	active := 0
	for _, id := range voters {
		if pr := r.prs[id]; pr != nil && r.recentActive(id, pr) {
			active++
		}
	}
	return len(voters) > 0 && active >= majority(len(voters))
}

// Step processes one message from a peer.
func (r *raft) Step(m wire.Message) error {
	if m.Type < wire.MsgApp || m.Type > wire.MsgTimeoutNow || m.Type == wire.MsgSnapResp {
		return fmt.Errorf("message type %d from %d: %w", m.Type, m.From, ErrStepLocal)
	}
	if m.Term == 0 {
		// Only a node that never saw a term (a new, joining node) sends
		// term 0, and only in answers that carry no information. Ignore.
		return nil
	}
	if r.quiesced && m.Term >= r.term && !isQuiesceAck(&m) {
		return r.stepWaking(m)
	}
	return r.step(m)
}

// step is Step after the checks that need no state, on a node that is
// awake or that m does not wake.
func (r *raft) step(m wire.Message) error {
	switch {
	case m.Term > r.term:
		if m.Type == wire.MsgVote || m.Type == wire.MsgPreVote {
			force := string(m.Context) == string(transferContext)
			inLease := r.checkQuorum && r.lead != 0 && r.electionElapsed < r.electionTimeout
			if !force && (inLease || r.voteQuiet()) {
				// We heard from a leader recently: a node asking for a vote
				// is disruptive (e.g. a removed or rejoining node). Ignore.
				return nil
			}
		}
		switch {
		case m.Type == wire.MsgPreVote:
			// A pre-vote never changes our term.
		case m.Type == wire.MsgPreVoteResp && !m.Reject:
			// The term in a granted pre-vote is the one we would campaign
			// in; it is not a newer term anyone holds.
		case m.Type == wire.MsgApp || m.Type == wire.MsgHeartbeat || m.Type == wire.MsgSnap:
			r.becomeFollower(m.Term, m.From)
		default:
			r.becomeFollower(m.Term, 0)
		}
	case m.Term < r.term:
		switch {
		case (r.checkQuorum || r.preVote) && (m.Type == wire.MsgApp || m.Type == wire.MsgHeartbeat):
			// A stale leader (e.g. healed from a partition) would otherwise
			// never learn our term: with PreVote/CheckQuorum we never raise
			// its term by campaigning against it. Tell it.
			r.send(wire.Message{To: m.From, Type: wire.MsgAppResp})
		case m.Type == wire.MsgPreVote:
			r.send(wire.Message{To: m.From, Type: wire.MsgPreVoteResp, Reject: true})
		}
		return nil
	}

	switch m.Type {
	case wire.MsgVote, wire.MsgPreVote:
		r.stepVoteRequest(m)
		return nil
	case wire.MsgApp, wire.MsgHeartbeat, wire.MsgSnap:
		r.noteLeaderContact()
	}
	switch r.role {
	case RoleLeader:
		return r.stepLeader(m)
	case RoleCandidate, RolePreCandidate:
		return r.stepCandidate(m)
	default:
		return r.stepFollower(m)
	}
}

// stepVoteRequest answers a MsgVote or MsgPreVote in any role.
func (r *raft) stepVoteRequest(m wire.Message) {
	canVote := r.vote == m.From ||
		(r.vote == 0 && r.lead == 0) ||
		(m.Type == wire.MsgPreVote && m.Term > r.term)
	respType := wire.MsgVoteResp
	if m.Type == wire.MsgPreVote {
		respType = wire.MsgPreVoteResp
	}
	if r.voteQuiet() && string(m.Context) != string(transferContext) && !(m.Type == wire.MsgVote && r.vote == m.From) {
		// Another leader's lease may rest on our silence (lease.go).
		canVote = false
	}
	if canVote && r.log.isUpToDate(m.Index, m.LogTerm) {
		// Answer in the term of the request: for a pre-vote that is the
		// future term the candidate would use.
		r.send(wire.Message{To: m.From, Term: m.Term, Type: respType})
		if m.Type == wire.MsgVote {
			r.electionElapsed = 0
			r.vote = m.From
		}
		return
	}
	r.send(wire.Message{To: m.From, Term: r.term, Type: respType, Reject: true})
}

// hup starts an election if this node may.
func (r *raft) hup(kind campaignKind) {
	if r.role == RoleLeader || !r.promotable() {
		return
	}
	if kind != campaignTransfer && r.voteQuiet() {
		// Our own vote would count against a leader whose lease rests on
		// it (lease.go). A transfer was ordered by that leader.
		r.logf("not campaigning: heard from a leader within the election timeout")
		return
	}
	if kind == campaignPreElection && !r.preVote {
		kind = campaignElection
	}
	r.campaign(kind)
}

// errNotLeader builds the redirect error.
func (r *raft) errNotLeader() error { return &NotLeaderError{Leader: r.lead} }
