package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/raftpipe/raftpipe/raft"
	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/wire"
)

// submit is Node.Submit for this group: validate, refuse what this replica
// cannot take, or queue a read or a write for the loop.
func (rep *replica) submit(req *wire.ClientRequest, cb func(*wire.ClientResponse)) {
	id := req.ID
	if err := kv.ValidateRequest(req); err != nil {
		cb(&wire.ClientResponse{ID: id, Status: wire.StatusBadRequest, Err: err.Error()})
		return
	}
	select {
	case <-rep.stopc:
		cb(&wire.ClientResponse{ID: id, Status: wire.StatusError, Err: ErrStopped.Error()})
		return
	default:
	}
	if rep.host.draining.Load() {
		rep.refuseDraining(id, cb)
		return
	}
	switch {
	case req.Op == wire.OpGet && req.Flags&wire.FlagStale != 0:
		rep.staleGet(req, cb)
	case req.Op == wire.OpGet:
		if !rep.isLeader.Load() {
			cb(&wire.ClientResponse{ID: id, Status: wire.StatusNotLeader, LeaderHint: rep.leaderHint()})
			return
		}
		// Every read counts against MaxPendingReads from here until it is
		// answered, wherever it waits (queue, ReadIndex round, apply).
		if rep.readsPending.Add(1) > int64(rep.cfg.MaxPendingReads) {
			rep.readsPending.Add(-1)
			rep.metrics.busy.Add(1)
			cb(&wire.ClientResponse{ID: id, Status: wire.StatusBusy})
			return
		}
		key := append([]byte(nil), req.Key...)
		r := &readReq{key: key, cb: func(res readResult) {
			rep.readsPending.Add(-1)
			resp := &wire.ClientResponse{ID: id, Status: res.status, Value: res.value, Index: res.index, LeaderHint: res.leaderHint}
			if res.err != nil {
				resp.Err = res.err.Error()
			}
			cb(resp)
		}}
		select {
		case rep.readc <- r:
		default:
			rep.metrics.busy.Add(1)
			r.finish(readResult{status: wire.StatusBusy})
		}
	default:
		rep.propose1(kv.EncodeCommand(make([]byte, 0, kv.CommandBytes(req)), req), func(res proposalResult) {
			resp := &wire.ClientResponse{ID: id, Status: res.status, Value: res.value, Index: res.index, LeaderHint: res.leaderHint}
			if res.err != nil {
				resp.Err = res.err.Error()
			}
			cb(resp)
		})
	}
}

// propose1 queues one encoded command for the loop, or answers at once if
// this node cannot take it.
func (rep *replica) propose1(data []byte, cb func(proposalResult)) {
	if !rep.isLeader.Load() {
		rep.metrics.proposalFailed(failNotLeader, 1)
		cb(proposalResult{status: wire.StatusNotLeader, leaderHint: rep.leaderHint()})
		return
	}
	if rep.ap.pending.Add(1) > int64(rep.cfg.MaxPendingProposals) {
		rep.ap.pending.Add(-1)
		rep.metrics.proposalBusy()
		cb(proposalResult{status: wire.StatusBusy})
		return
	}
	p := &proposal{data: data}
	rep.stages.maybeSample(p)
	p.cb = func(r proposalResult) {
		rep.ap.pending.Add(-1)
		cb(r)
	}
	select {
	case rep.propc <- p:
	default:
		rep.metrics.proposalBusy()
		p.finish(proposalResult{status: wire.StatusBusy})
	}
}

// staleGet serves a get from the local state machine without a ReadIndex
// round: fast, possibly stale, available on any node.
func (rep *replica) staleGet(req *wire.ClientRequest, cb func(*wire.ClientResponse)) {
	v, ok, err := rep.sm.Lookup(req.Key)
	switch {
	case err != nil:
		cb(&wire.ClientResponse{ID: req.ID, Status: wire.StatusError, Err: err.Error()})
	case !ok:
		cb(&wire.ClientResponse{ID: req.ID, Status: wire.StatusNotFound, Index: rep.sm.AppliedIndex()})
	default:
		cb(&wire.ClientResponse{ID: req.ID, Status: wire.StatusOK, Value: v, Index: rep.sm.AppliedIndex()})
	}
}

// Do runs one client operation synchronously: the in-process ("direct")
// path that embedded users and raftbench -mode direct use. If ctx ends
// first, writes report ErrUnknownOutcome (the write may still apply).
func (n *Node) Do(ctx context.Context, req *wire.ClientRequest) (*wire.ClientResponse, error) {
	ch := make(chan *wire.ClientResponse, 1)
	// The label is taken now: the caller may reuse req once Do returns on
	// ctx, before the answer arrives.
	op := opLabel(req.Op, req.Flags)
	n.Submit(req, func(r *wire.ClientResponse) { n.metrics.clientAnswered(op, r.Status); ch <- r })
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		if req.Op == wire.OpGet {
			return nil, ctx.Err()
		}
		n.metrics.proposalFailed(failTimeout, 1)
		return nil, fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	}
}

// Put is a convenience wrapper over Do: it replicates key=value and returns
// the index it applied at.
func (n *Node) Put(ctx context.Context, key, value []byte) (uint64, error) {
	r, err := n.Do(ctx, &wire.ClientRequest{Op: wire.OpPut, Key: key, Value: value})
	if err != nil {
		return 0, err
	}
	return r.Index, statusErr(r)
}

// Get is a linearizable read through ReadIndex (leader only).
func (n *Node) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	r, err := n.Do(ctx, &wire.ClientRequest{Op: wire.OpGet, Key: key})
	if err != nil {
		return nil, false, err
	}
	if r.Status == wire.StatusNotFound {
		return nil, false, nil
	}
	return r.Value, r.Status == wire.StatusOK, statusErr(r)
}

// Errors for non-OK statuses returned by the convenience wrappers.
var (
	// ErrNotLeader means this node does not lead; the write did not apply.
	ErrNotLeader = errors.New("node: not the leader")
	// ErrCASFailed means a compare-and-swap found a different value.
	ErrCASFailed = errors.New("node: compare-and-swap failed")
)

// statusErr maps a response status to an error (nil for OK and NotFound).
func statusErr(r *wire.ClientResponse) error {
	switch r.Status {
	case wire.StatusOK, wire.StatusNotFound:
		return nil
	case wire.StatusNotLeader:
		return fmt.Errorf("%w (leader %q)", ErrNotLeader, r.LeaderHint)
	case wire.StatusBusy:
		return ErrBusy
	case wire.StatusCASFailed:
		return ErrCASFailed
	case wire.StatusUnknown:
		return fmt.Errorf("%w: %s", ErrUnknownOutcome, r.Err)
	}
	return fmt.Errorf("node: status %d: %s", r.Status, r.Err)
}

// AddMember proposes adding m as a voter (learner=false) or as a learner,
// and waits until the change applies here. Leader only; one change at a
// time.
func (n *Node) AddMember(ctx context.Context, m Member, learner bool) error {
	if err := n.singleGroupOnly("add a member"); err != nil {
		return err
	}
	if m.ID == 0 || m.PeerAddr == "" {
		return errors.New("node: a member needs an ID and a peer address")
	}
	t := wire.ConfAddVoter
	if learner {
		t = wire.ConfAddLearner
	}
	return n.r0.confChange(ctx, wire.ConfChange{Type: t, NodeID: m.ID, Context: encodeMemberContext(m)})
}

// RemoveMember proposes removing node id and waits until it applies here.
func (n *Node) RemoveMember(ctx context.Context, id uint64) error {
	if err := n.singleGroupOnly("remove a member"); err != nil {
		return err
	}
	return n.r0.confChange(ctx, wire.ConfChange{Type: wire.ConfRemove, NodeID: id})
}

// ErrMultiGroup refuses an operation that is not yet implemented for a
// node with more than one group (membership changes, backups, seeding).
var ErrMultiGroup = errors.New("node: not supported with more than one group yet")

// singleGroupOnly refuses what with many groups would act on group 0
// alone: a membership change applied to one group would leave the others
// with the old members.
func (n *Node) singleGroupOnly(what string) error {
	if len(n.replicas) > 1 {
		return fmt.Errorf("%w: cannot %s of a %d-group cluster (every group has the same members, and changing them in group 0 alone would split them)", ErrMultiGroup, what, len(n.replicas))
	}
	return nil
}

// confChange proposes cc on the loop and waits for it to apply.
func (rep *replica) confChange(ctx context.Context, cc wire.ConfChange) error {
	done := make(chan proposalResult, 1)
	p := &proposal{cb: func(r proposalResult) { done <- r }}
	errc := make(chan error, 1)
	ok := rep.submitEvent(ctx, func() {
		if err := rep.rn.ProposeConfChange(cc); err != nil {
			errc <- err
			return
		}
		p.index, p.term = rep.rn.LastIndex(), rep.rn.Term()
		rep.ap.register([]*proposal{p})
		errc <- nil
	})
	if !ok {
		return errors.Join(ctx.Err(), ErrStopped)
	}
	select {
	case err := <-errc:
		if errors.Is(err, raft.ErrNotLeader) {
			return fmt.Errorf("node: conf change: %w (leader %d): %w", ErrNotLeader, rep.leaderID.Load(), err)
		}
		if err != nil {
			return fmt.Errorf("node: conf change: %w", err)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case r := <-done:
		if r.status != wire.StatusOK {
			return fmt.Errorf("node: conf change did not apply (status %d): %w", r.status, ErrUnknownOutcome)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	}
}

// transferLeadership is Node.TransferLeadership for this group.
func (rep *replica) transferLeadership(ctx context.Context, to uint64) error {
	if !rep.isLeader.Load() {
		return fmt.Errorf("node: transfer leadership: %w (leader %d)", ErrNotLeader, rep.leaderID.Load())
	}
	if !rep.submitEvent(ctx, func() { rep.rn.TransferLeadership(to) }) {
		return errors.Join(ctx.Err(), ErrStopped)
	}
	return nil
}

// campaign is Node.Campaign for this group.
func (rep *replica) campaign(ctx context.Context) error {
	errc := make(chan error, 1)
	if !rep.submitEvent(ctx, func() { errc <- rep.rn.Campaign() }) {
		return errors.Join(ctx.Err(), ErrStopped)
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status is the node's state for /status, raftbench and tests.
type Status struct {
	// ID, Term, Lead, Role and the indexes come from the core.
	ID      uint64 `json:"id"`
	Term    uint64 `json:"term"`
	Leader  uint64 `json:"leader"`
	Role    string `json:"role"`
	Commit  uint64 `json:"commit"`
	Applied uint64 `json:"applied"`
	// LastIndex is the log's last index; FirstIndex its first retained one.
	LastIndex  uint64 `json:"last_index"`
	FirstIndex uint64 `json:"first_index"`
	// Durable is the last index the WAL acknowledged.
	Durable uint64 `json:"durable"`
	// Voters and Learners are the membership in effect.
	Voters   []uint64 `json:"voters"`
	Learners []uint64 `json:"learners,omitempty"`
	// Followers is the leader's view of each other member.
	Followers map[uint64]FollowerStatus `json:"followers,omitempty"`
	// PendingProposals counts writes waiting to apply.
	PendingProposals int64 `json:"pending_proposals"`
	// PendingReads counts linearizable reads not yet answered.
	PendingReads int64 `json:"pending_reads"`
	// ClientRequestsUnanswered counts client-port requests (each holding
	// one of its connection's in-flight slots) not yet answered.
	ClientRequestsUnanswered int64 `json:"client_requests_unanswered"`
	// Groups, GroupsLed and GroupsQuiesced describe a host with more than
	// one group (absent with one): everything above is group 0's.
	Groups         int `json:"groups,omitempty"`
	GroupsLed      int `json:"groups_led,omitempty"`
	GroupsQuiesced int `json:"groups_quiesced,omitempty"`
}

// FollowerStatus is the leader's replication state for one member.
type FollowerStatus struct {
	Match    uint64 `json:"match"`
	Next     uint64 `json:"next"`
	State    string `json:"state"`
	Inflight int    `json:"inflight"`
	Learner  bool   `json:"learner,omitempty"`
	// LagEntries is the leader's last index minus Match.
	LagEntries uint64 `json:"lag_entries"`
}

// status is Node.Status for this group, from its loop.
func (rep *replica) status(ctx context.Context) (Status, error) {
	ch := make(chan raft.Status, 1)
	if !rep.submitEvent(ctx, func() { ch <- rep.rn.Status() }) {
		return Status{}, errors.Join(ctx.Err(), ErrStopped)
	}
	var s raft.Status
	select {
	case s = <-ch:
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	st := Status{
		ID: s.ID, Term: s.Term, Leader: s.Lead, Role: s.Role.String(), Commit: s.Commit,
		Applied: rep.sm.AppliedIndex(), LastIndex: s.LastIndex, FirstIndex: rep.wal.FirstIndex(),
		Durable: s.Durable, Voters: s.Conf.Voters, Learners: s.Conf.Learners,
		PendingProposals: rep.ap.pending.Load(), PendingReads: rep.readsPending.Load(),
	}
	if len(s.Progress) > 0 {
		st.Followers = make(map[uint64]FollowerStatus, len(s.Progress))
		for id, p := range s.Progress {
			if id == s.ID {
				continue
			}
			st.Followers[id] = FollowerStatus{
				Match: p.Match, Next: p.Next, State: p.State.String(), Inflight: p.Inflight,
				Learner: p.IsLearner, LagEntries: s.LastIndex - min(p.Match, s.LastIndex),
			}
		}
	}
	return st, nil
}
