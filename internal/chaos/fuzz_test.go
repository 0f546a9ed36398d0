package chaos

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// fuzzDrainDeadline bounds how long one fuzz input waits for the node to
// finish with the connection (close it, or stop answering) after the
// input was sent and the write side closed. Not a failure when reached:
// an incomplete frame at EOF may legitimately keep a reader waiting for
// the handshake timeout.
const fuzzDrainDeadline = 2 * time.Second

// fuzzSeeds are inputs that reach the interesting parts of the decoders:
// truncated, corrupt, oversized and well-formed frames of each kind.
func fuzzSeeds() [][]byte {
	o := wire.DefaultOptions()
	req, _ := wire.AppendClientRequest(nil, &wire.ClientRequest{ID: 1, Op: wire.OpPut, Key: []byte("k"), Value: []byte("v")}, &o)
	app, _ := wire.AppendMessage(nil, &wire.Message{Type: wire.MsgApp, From: 2, To: 1, Term: 1 << 40, Index: 5, LogTerm: 3,
		Entries: []wire.Entry{{Term: 3, Index: 6, Data: []byte("garbage")}}}, &o)
	vote, _ := wire.AppendMessage(nil, &wire.Message{Type: wire.MsgPreVote, From: 2, To: 1, Term: 9, Index: 1 << 50, LogTerm: 9}, &o)
	maxTerm, _ := wire.AppendMessage(nil, &wire.Message{Type: wire.MsgHeartbeat, From: 2, To: 1, Term: ^uint64(0)}, &o)
	corrupt := append([]byte(nil), req...)
	corrupt[len(corrupt)-1] ^= 0xff
	return [][]byte{
		nil,
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		req,
		req[:len(req)-1],
		corrupt,
		frameHeader(wire.MsgClientRequest, ^uint32(0)),
		frameHeader(wire.MsgApp, uint32(wire.DefaultMaxFrameBytes)+1),
		app,
		vote,
		maxTerm,
		handshakeFrame(chaosClusterID, 0, wire.ConnClient),
	}
}

// FuzzLiveNodePorts sends arbitrary bytes to a live single-node cluster's
// client or peer port, optionally after a valid handshake of the right
// kind, and then requires the node to still be up and to serve a put and
// a linearizable get. A crash, a hang, a stuck state machine or a node
// that stopped accepting connections all fail.
//
//	go test ./internal/chaos -run '^$' -fuzz FuzzLiveNodePorts -fuzztime 60s
func FuzzLiveNodePorts(f *testing.F) {
	for _, s := range fuzzSeeds() {
		for _, hs := range []bool{false, true} {
			for _, peer := range []bool{false, true} {
				f.Add(s, hs, peer)
			}
		}
	}
	c := newChaosCluster(f, 1, 0, 4, nil)
	if c.waitLeader(convergeDeadline) == 0 {
		f.Fatal("single node did not elect itself")
	}
	cl := newChaosClient(f, c.ClientAddrs())
	f.Cleanup(func() { cl.Close() })
	var seq atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte, handshake, peer bool) {
		m := c.Member(1)
		addr, kind, id := m.ClientAddr, wire.ConnClient, uint64(0)
		if peer {
			addr, kind, id = m.PeerAddr, wire.ConnPeer, 2
		}
		conn, err := net.DialTimeout("tcp", addr, refuseDeadline)
		if err != nil {
			t.Fatalf("node stopped accepting on %s: %v", addr, err)
		}
		msg := data
		if handshake {
			msg = append(handshakeFrame(chaosClusterID, id, kind), data...)
		}
		// A write error means the node already closed the connection,
		// which is a fine answer to bad input.
		_ = conn.SetDeadline(time.Now().Add(fuzzDrainDeadline))
		_, _ = conn.Write(msg)
		_ = conn.(*net.TCPConn).CloseWrite()
		buf := make([]byte, 4096)
		for {
			if _, err := conn.Read(buf); err != nil {
				break
			}
		}
		conn.Close()
		if err := c.Node(1).Err(); err != nil {
			t.Fatalf("node failed after input: %v", err)
		}
		select {
		case <-c.Node(1).Done():
			t.Fatal("node loop ended after input")
		default:
		}
		n := seq.Add(1)
		putGet(t, cl, fmt.Sprint("fuzz-", n%4), fmt.Sprint("v", n))
	})
}
