package node

import (
	"context"

	"github.com/raftpipe/raftpipe/wire"
)

// The host's public operations act on its single group for now; each
// forwards to r0. With many groups they gain a group (or a key to route
// by), and the client server routes each request the same way.

// Submit starts one client operation and calls cb exactly once with its
// answer, from some node goroutine; cb must not block. It is the
// asynchronous entry point the client server uses (no goroutine per
// request). req's byte slices are not retained after Submit returns.
func (n *Node) Submit(req *wire.ClientRequest, cb func(*wire.ClientResponse)) {
	n.r0.submit(req, cb)
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
	return st, err
}
