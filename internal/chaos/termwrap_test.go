package chaos

import (
	"net"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// TestTermWrapRefused (found by FuzzLiveNodePorts, fixed in raft/node's
// boundary checks): a peer that passes the handshake (right
// cluster ID, any node ID, even one that is not a member) sends one
// heartbeat with Term = MaxUint64. The node adopts that term, and at its
// next election campaigns at MaxUint64+1, which wraps to 0: it becomes
// leader at term 0 and keeps serving. A node's term must never decrease
// (Raft's election safety rests on it: after the wrap, higher-term
// messages move the node back to terms in which it may already have
// voted). The node now drops messages with impossible terms and from IDs
// it has never heard of; this test keeps it that way.
func TestTermWrapRefused(t *testing.T) {
	c := newChaosCluster(t, 1, 0, 5, nil)
	cl := newChaosClient(t, c.ClientAddrs())
	defer cl.Close()
	putGet(t, cl, "a", "1")
	o := wire.DefaultOptions()
	m, err := wire.AppendMessage(handshakeFrame(chaosClusterID, 2, wire.ConnPeer),
		&wire.Message{Type: wire.MsgHeartbeat, From: 2, To: 1, Term: ^uint64(0)}, &o)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", c.Member(1).PeerAddr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(m); err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	waitClosed(t, conn, "peer connection")
	conn.Close()
	before, err := c.status(1)
	if err != nil {
		t.Fatal(err)
	}
	// The node re-elects itself to serve this.
	putGet(t, cl, "a", "2")
	after, err := c.status(1)
	if err != nil {
		t.Fatal(err)
	}
	if after.Term < before.Term {
		t.Fatalf("term went backwards: %d after the bogus heartbeat, %d after the next election (role %s)", before.Term, after.Term, after.Role)
	}
}
