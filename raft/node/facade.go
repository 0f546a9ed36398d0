package node

import (
	"context"
	"fmt"

	"github.com/raftpipe/raftpipe/wire"
)

// Client operations route by key to their group's replica (Submit, and
// Do, Put and Get through it); the administrative calls below act on
// group 0, the single group of a one-group host.

// Submit starts one client operation and calls cb exactly once with its
// answer, from some node goroutine; cb must not block. It is the
// asynchronous entry point the client server uses (no goroutine per
// request). req's byte slices are not retained after Submit returns.
//
// OpShardMap is answered here, by any node and without consensus; every
// other request goes to group wire.GroupOf(req.Key, Groups), whose
// replica answers it (NotLeader with that group's leader as the hint). An
// OpNoop's key only routes: it is dropped before the command is encoded
// (docs/wire.md, "What a node must do").
func (n *Node) Submit(req *wire.ClientRequest, cb func(*wire.ClientResponse)) {
	if req.Op == wire.OpShardMap {
		n.answerShardMap(req, cb)
		return
	}
	if len(n.replicas) == 1 {
		n.r0.submit(req, cb)
		return
	}
	rep := n.replicas[wire.GroupOf(req.Key, uint32(len(n.replicas)))]
	if req.Op == wire.OpNoop && len(req.Key) > 0 {
		noop := *req
		noop.Key = nil
		req = &noop
	}
	rep.submit(req, cb)
}

// answerShardMap answers OpShardMap: the group count and each group's
// leader's client address as this node knows it ("" if unknown).
func (n *Node) answerShardMap(req *wire.ClientRequest, cb func(*wire.ClientResponse)) {
	if len(req.Key) > 0 || len(req.Value) > 0 || len(req.Expect) > 0 || req.Flags != 0 {
		cb(&wire.ClientResponse{ID: req.ID, Status: wire.StatusBadRequest, Err: "node: OpShardMap carries no key, value, expect or flags"})
		return
	}
	m := wire.ShardMap{Groups: uint32(len(n.replicas)), Leaders: make([]string, len(n.replicas))}
	for g, rep := range n.replicas {
		m.Leaders[g] = rep.leaderHint()
	}
	v, err := wire.AppendShardMap(nil, &m)
	if err != nil {
		cb(&wire.ClientResponse{ID: req.ID, Status: wire.StatusError, Err: err.Error()})
		return
	}
	cb(&wire.ClientResponse{ID: req.ID, Status: wire.StatusOK, Value: v})
}

// Groups is the number of Raft groups this node hosts (Config.Groups, 1
// for a single-group node).
func (n *Node) Groups() int { return len(n.replicas) }

// GroupOf is the group that key belongs to on this node's shard map.
func (n *Node) GroupOf(key []byte) uint64 {
	return uint64(wire.GroupOf(key, uint32(len(n.replicas))))
}

// GroupLeader is the leader of group g as this node knows it, 0 if unknown
// or if g is not hosted here.
func (n *Node) GroupLeader(g uint64) uint64 {
	rep := n.replicaFor(g)
	if rep == nil {
		return 0
	}
	return rep.leaderID.Load()
}

// IsGroupLeader reports whether this node leads group g now.
func (n *Node) IsGroupLeader(g uint64) bool {
	rep := n.replicaFor(g)
	return rep != nil && rep.isLeader.Load()
}

// GroupsLed is how many groups this node leads now.
func (n *Node) GroupsLed() int {
	led := 0
	for _, rep := range n.replicas {
		if rep.isLeader.Load() {
			led++
		}
	}
	return led
}

// GroupsQuiesced is how many of this node's groups are quiesced now.
func (n *Node) GroupsQuiesced() int { return int(n.metrics.groupsQuiesced.Load()) }

// GroupStatus is Status for group g.
func (n *Node) GroupStatus(ctx context.Context, g uint64) (Status, error) {
	rep := n.replicaFor(g)
	if rep == nil {
		return Status{}, fmt.Errorf("node: group %d is not hosted here (%d groups)", g, len(n.replicas))
	}
	return rep.status(ctx)
}

// TransferLeadership asks the leader to hand leadership to node `to`.
func (n *Node) TransferLeadership(ctx context.Context, to uint64) error {
	return n.r0.transferLeadership(ctx, to)
}

// Campaign makes this node start an election now (tests, operators).
func (n *Node) Campaign(ctx context.Context) error { return n.r0.campaign(ctx) }

// Status asks the loop for a consistent view of the node; the client
// server's count of unanswered requests is the host's.
func (n *Node) Status(ctx context.Context) (Status, error) {
	st, err := n.r0.status(ctx)
	if err == nil && n.srv != nil {
		st.ClientRequestsUnanswered = n.srv.unanswered.Load()
	}
	if err == nil && len(n.replicas) > 1 {
		st.Groups, st.GroupsLed, st.GroupsQuiesced = len(n.replicas), n.GroupsLed(), n.GroupsQuiesced()
	}
	return st, err
}
