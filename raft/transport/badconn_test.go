package transport

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/wire"
)

// rawClient dials tr and, if hs is not nil, completes a handshake with it.
func rawClient(t *testing.T, tr *Transport, hs *wire.Handshake) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if hs != nil {
		if _, err := c.Write(wire.AppendHandshake(nil, hs)); err != nil {
			t.Fatal(err)
		}
		r := wire.NewReader(c, wire.DefaultOptions())
		c.SetReadDeadline(time.Now().Add(testDeadline))
		f, err := r.Next(nil)
		if err != nil || f.Type != wire.MsgHandshake {
			t.Fatalf("reading the transport's handshake: %v, %v", f.Type, err)
		}
	}
	return c
}

// expectClosed fails unless the transport closes c (reads end with EOF or a
// reset rather than data or the safety deadline).
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testDeadline))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // e.g. the transport's own handshake
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %v", testDeadline)
		}
		return
	}
}

// TestBadClientsAreDisconnected sends garbage, a wrong cluster ID, a wrong
// protocol version, an oversized frame, a bad checksum, a frame of the wrong
// type and half a frame to a transport, while a real peer keeps sending to
// it. Each bad connection must be closed and counted, and delivery from the
// real peer must continue after each.
func TestBadClientsAreDisconnected(t *testing.T) {
	inB := newInbox()
	cfgB := testConfig(2, inB.handle)
	cfgB.Wire = wire.DefaultOptions()
	cfgB.Wire.MaxFrameBytes = 1 << 20
	b := newNode(t, cfgB)
	a := newNode(t, testConfig(1, func(*wire.Message) {}))
	connect(t, a, b)

	// A steady stream from the real peer, checked for order at the end.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var last uint64
	go func() {
		defer wg.Done()
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			if !sendRetry(t, a, &wire.Message{Type: wire.MsgHeartbeat, From: 1, To: 2, Commit: seq}) {
				return
			}
			last = seq
		}
	}()
	stillDelivering := func(what string) {
		t.Helper()
		n := inB.count(1)
		testutil.Wait(t, "delivery after "+what, func() bool { return inB.count(1) > n+100 })
	}

	good := func(mut func(*wire.Handshake)) *wire.Handshake {
		h := &wire.Handshake{ClusterID: testClusterID, NodeID: 7, Version: wire.ProtocolVersion, Kind: wire.ConnPeer}
		if mut != nil {
			mut(h)
		}
		return h
	}
	valid, err := wire.AppendMessage(nil, &wire.Message{Type: wire.MsgHeartbeat, From: 7, To: 2, Context: make([]byte, 100)}, nil)
	if err != nil {
		t.Fatal(err)
	}

	refusedCases := []struct {
		name string
		send func(c net.Conn)
		hs   *wire.Handshake
	}{
		{"garbage", func(c net.Conn) { c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) }, nil},
		{"silent then close", func(c net.Conn) { c.(*net.TCPConn).CloseWrite() }, nil},
		{"frame before handshake", func(c net.Conn) { c.Write(valid) }, nil},
		{"wrong cluster", nil, good(func(h *wire.Handshake) { h.ClusterID++ })},
		{"node 0", nil, good(func(h *wire.Handshake) { h.NodeID = 0 })},
		{"client kind", nil, good(func(h *wire.Handshake) { h.Kind = wire.ConnClient })},
	}
	for _, tc := range refusedCases {
		before := b.Stats().InboundRefused
		c := rawClient(t, b, tc.hs)
		if tc.send != nil {
			tc.send(c)
		}
		expectClosed(t, c)
		testutil.Wait(t, tc.name+" to be counted", func() bool { return b.Stats().InboundRefused > before })
		stillDelivering(tc.name)
	}

	// Wrong protocol version: the handshake frame itself carries the
	// version, so the frame header is what gets rejected.
	{
		before := b.Stats().InboundRefused
		c := rawClient(t, b, nil)
		hs := wire.AppendHandshake(nil, good(nil))
		hs[2]++ // the header's version byte (see wire's frame layout)
		c.Write(hs)
		expectClosed(t, c)
		testutil.Wait(t, "wrong version to be counted", func() bool { return b.Stats().InboundRefused > before })
		stillDelivering("wrong version")
	}

	oversized, err := wire.AppendMessage(nil, &wire.Message{Type: wire.MsgApp, From: 7, To: 2,
		Entries: []wire.Entry{{Data: make([]byte, 2<<20)}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	badCRC := append([]byte(nil), valid...)
	badCRC[len(badCRC)-1] ^= 0xFF
	client, err := wire.AppendClientRequest(nil, &wire.ClientRequest{ID: 1, Op: wire.OpNoop}, nil)
	if err != nil {
		t.Fatal(err)
	}
	badFrameCases := []struct {
		name  string
		bytes []byte
		close bool
	}{
		{"garbage after handshake", []byte("\x00\x01\x02garbage garbage garbage garbage"), false},
		{"oversized length", oversized[:64<<10], false},
		{"bad checksum", badCRC, false},
		{"client frame on peer connection", client, false},
		{"half a frame then close", valid[:len(valid)/2], true},
	}
	for _, tc := range badFrameCases {
		before := b.Stats().InboundBadFrames
		c := rawClient(t, b, good(nil))
		c.Write(tc.bytes)
		if tc.close {
			c.Close()
		} else {
			expectClosed(t, c)
		}
		testutil.Wait(t, tc.name+" to be counted", func() bool { return b.Stats().InboundBadFrames > before })
		stillDelivering(tc.name)
	}

	// A well-formed message from a connection that claims another node is
	// dropped, not delivered.
	{
		before := b.Stats().DroppedMisrouted
		c := rawClient(t, b, good(nil))
		spoof, _ := wire.AppendMessage(nil, &wire.Message{Type: wire.MsgHeartbeat, From: 1, To: 2, Commit: 1 << 40}, nil)
		c.Write(spoof)
		testutil.Wait(t, "spoofed message to be dropped", func() bool { return b.Stats().DroppedMisrouted > before })
		c.Close()
	}

	close(stop)
	wg.Wait()
	testutil.Wait(t, "last heartbeat", func() bool { l, _ := inB.last(1); return l == last })
	checkContiguous(t, inB.copySeqs(1), 1, last)
}

// TestInboundConnCap refuses connections beyond MaxInboundConns and serves
// again once slots free up.
func TestInboundConnCap(t *testing.T) {
	inB := newInbox()
	cfgB := testConfig(2, inB.handle)
	cfgB.MaxInboundConns = 2
	b := newNode(t, cfgB)
	idle1 := rawClient(t, b, nil)
	idle2 := rawClient(t, b, nil)
	testutil.Wait(t, "both slots taken", func() bool { return len(b.inboundSlots) == 2 })
	extra := rawClient(t, b, nil)
	expectClosed(t, extra)
	if got := b.Stats().InboundRefused; got != 1 {
		t.Fatalf("InboundRefused = %d, want 1", got)
	}
	idle1.Close()
	idle2.Close()
	a := newNode(t, testConfig(1, func(*wire.Message) {}))
	connect(t, a, b)
	sendRetry(t, a, appMsg(1, 2, 1, nil))
	testutil.Wait(t, "delivery", func() bool { return inB.count(1) == 1 })
}
