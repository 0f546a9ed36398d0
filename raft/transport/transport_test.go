package transport

import (
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/wire"
)

// appMsg is a small MsgApp carrying seq in Commit (the inbox records it)
// and in Index.
func appMsg(from, to, seq uint64, data []byte) *wire.Message {
	return &wire.Message{
		Type: wire.MsgApp, From: from, To: to, Term: 1, Index: seq, Commit: seq,
		Entries: []wire.Entry{{Term: 1, Index: seq + 1, Data: data}},
	}
}

// TestInOrderBothWays pushes 100,000 messages over each direction of a link
// pair at once and checks that every one arrives, in order.
func TestInOrderBothWays(t *testing.T) {
	const n = 100_000
	inA, inB := newInbox(), newInbox()
	a := newNode(t, testConfig(1, inA.handle))
	b := newNode(t, testConfig(2, inB.handle))
	connect(t, a, b)
	connect(t, b, a)

	var wg sync.WaitGroup
	data := []byte("0123456789abcdef")
	for _, dir := range []struct {
		from     *Transport
		fromID   uint64
		toID     uint64
		receiver *inbox
	}{{a, 1, 2, inB}, {b, 2, 1, inA}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= n; i++ {
				if !sendRetry(t, dir.from, appMsg(dir.fromID, dir.toID, i, data)) {
					return
				}
			}
		}()
	}
	wg.Wait()
	testutil.Wait(t, "all messages to arrive", func() bool { return inB.count(1) >= n && inA.count(2) >= n })
	checkContiguous(t, inB.copySeqs(1), 1, n)
	checkContiguous(t, inA.copySeqs(2), 1, n)
	if st := a.PeerStats(2); st.Sent != n || st.Reconnects != 0 {
		t.Errorf("PeerStats(2) = %+v, want Sent=%d, Reconnects=0", st, n)
	}
	if st := b.Stats(); st.Received != n || st.InboundBadFrames != 0 || st.DroppedMisrouted != 0 {
		t.Errorf("b.Stats() = %+v", st)
	}
}

// TestDataIntact checks that entries, context and every field survive the
// trip, including over a compressed link.
func TestDataIntact(t *testing.T) {
	for _, comp := range []wire.Compression{wire.CompressionNone, wire.CompressionS2, wire.CompressionZstd} {
		t.Run(comp.String(), func(t *testing.T) {
			got := make(chan *wire.Message, 1)
			cfgB := testConfig(2, func(m *wire.Message) { got <- m })
			b := newNode(t, cfgB)
			cfgA := testConfig(1, func(*wire.Message) {})
			cfgA.Wire = wire.DefaultOptions()
			cfgA.Wire.Compression = comp
			cfgA.Wire.CompressThresholdBytes = 64
			a := newNode(t, cfgA)
			connect(t, a, b)
			big := make([]byte, 10_000)
			for i := range big {
				big[i] = byte(i % 7)
			}
			sent := &wire.Message{Type: wire.MsgApp, Group: 3, From: 1, To: 2, Term: 9, LogTerm: 8, Index: 100, Commit: 99,
				Entries: []wire.Entry{{Term: 9, Index: 101, Data: big}, {Term: 9, Index: 102, Type: wire.EntryNoop}}}
			sendRetry(t, a, sent)
			m := <-got
			if m.Group != 3 || m.Term != 9 || m.LogTerm != 8 || m.Index != 100 || m.Commit != 99 || len(m.Entries) != 2 ||
				string(m.Entries[0].Data) != string(big) || m.Entries[1].Type != wire.EntryNoop || m.Entries[1].Index != 102 {
				t.Fatalf("message changed in transit: %+v", m)
			}
			// The data is highly compressible: the negotiated codec shows in
			// the bytes on the wire.
			testutil.Wait(t, "the send to be counted", func() bool { return a.PeerStats(2).Sent == 1 })
			sentBytes := a.PeerStats(2).SentBytes
			if compressed := sentBytes < 5_000; compressed != (comp != wire.CompressionNone) {
				t.Fatalf("%d bytes on the wire with compression %v", sentBytes, comp)
			}
		})
	}
}

// TestReconnectAfterRestart kills the receiving transport mid-stream and
// starts a new one on the same address. Messages in flight around the
// restart may be lost (Raft tolerates it), but from the first message the
// new receiver sees, every later one must arrive, in order.
func TestReconnectAfterRestart(t *testing.T) {
	inA := newInbox()
	a := newNode(t, testConfig(1, inA.handle))
	inB := newInbox()
	b, err := New(testConfig(2, inB.handle))
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr().String()
	connect(t, a, b)

	stop := make(chan struct{})
	lastSent := make(chan uint64, 1)
	go func() {
		seq := uint64(0)
		defer func() { lastSent <- seq }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			seq++
			if !sendRetry(t, a, appMsg(1, 2, seq, []byte("x"))) {
				return
			}
		}
	}()

	testutil.Wait(t, "first receiver to get 1000 messages", func() bool { return inB.count(1) >= 1000 })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	inB2 := newInbox()
	cfg := testConfig(2, inB2.handle)
	cfg.ListenAddr = addr
	b2 := newNode(t, cfg)

	testutil.Wait(t, "restarted receiver to get 1000 messages", func() bool { return inB2.count(1) >= 1000 })
	close(stop)
	last := <-lastSent
	testutil.Wait(t, "last message", func() bool { l, _ := inB2.last(1); return l == last })
	seqs := inB2.copySeqs(1)
	checkContiguous(t, seqs, seqs[0], last)
	if firstB, _ := inB.last(1); seqs[0] <= firstB {
		t.Errorf("restarted receiver saw %d, not after the old receiver's last %d", seqs[0], firstB)
	}
	if st := a.PeerStats(2); st.Reconnects < 1 {
		t.Errorf("PeerStats = %+v, want Reconnects >= 1", st)
	}
	_ = b2
}

// TestDropsAreCounted covers the Send paths that drop: unknown peer, link
// down, queue full.
func TestDropsAreCounted(t *testing.T) {
	a := newNode(t, testConfig(1, func(*wire.Message) {}))
	if a.Send(appMsg(1, 9, 1, nil)) {
		t.Fatal("Send to an unknown peer succeeded")
	}
	if got := a.Stats().DroppedUnknownPeer; got != 1 {
		t.Fatalf("DroppedUnknownPeer = %d, want 1", got)
	}

	// A peer that never answers: dials fail, Sends are dropped.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	a.AddPeer(3, dead)
	a.AddPeer(3, dead) // idempotent
	testutil.Wait(t, "a failed dial", func() bool { return a.PeerStats(3).DialFailures > 0 })
	if a.Send(appMsg(1, 3, 1, nil)) {
		t.Fatal("Send to a disconnected peer succeeded")
	}
	if st := a.PeerStats(3); st.Dropped != 1 || st.Connected {
		t.Fatalf("PeerStats(3) = %+v, want Dropped=1, not connected", st)
	}

	// Queue full: the receiver's handler blocks, so TCP pushes back, the
	// writer blocks and the queue fills.
	release := make(chan struct{})
	cfgB := testConfig(2, func(*wire.Message) { <-release })
	b := newNode(t, cfgB)
	defer close(release) // before b's Cleanup Close, which waits for the handler
	cfgA := testConfig(4, func(*wire.Message) {})
	cfgA.QueueDepthMsgs = 16
	a4 := newNode(t, cfgA)
	connect(t, a4, b)
	payload := make([]byte, 64<<10)
	accepted := 0
	testutil.Wait(t, "a full queue", func() bool {
		if a4.Send(&wire.Message{Type: wire.MsgApp, From: 4, To: 2, Entries: []wire.Entry{{Data: payload}}}) {
			accepted++
			return false
		}
		return true
	})
	st := a4.PeerStats(2)
	if st.Dropped != 1 || st.QueueLen != 16 {
		t.Fatalf("PeerStats = %+v after %d accepted, want Dropped=1, QueueLen=16", st, accepted)
	}
}

// TestAddPeerNewAddress moves a peer to a new address: the link redials.
func TestAddPeerNewAddress(t *testing.T) {
	in1, in2 := newInbox(), newInbox()
	a := newNode(t, testConfig(1, func(*wire.Message) {}))
	b1 := newNode(t, testConfig(2, in1.handle))
	b2 := newNode(t, testConfig(2, in2.handle)) // node 2 "moved"
	connect(t, a, b1)
	sendRetry(t, a, appMsg(1, 2, 1, nil))
	testutil.Wait(t, "delivery to the old address", func() bool { return in1.count(1) == 1 })
	a.AddPeer(2, b2.Addr().String())
	testutil.Wait(t, "delivery to the new address", func() bool {
		a.Send(appMsg(1, 2, 2, nil))
		return in2.count(1) > 0
	})
	a.RemovePeer(2)
	if a.Send(appMsg(1, 2, 3, nil)) {
		t.Fatal("Send after RemovePeer succeeded")
	}
}

// TestWrongNodeAtAddress refuses a link whose remote announces another
// node ID than the one AddPeer named.
func TestWrongNodeAtAddress(t *testing.T) {
	a := newNode(t, testConfig(1, func(*wire.Message) {}))
	b := newNode(t, testConfig(2, func(*wire.Message) {}))
	a.AddPeer(3, b.Addr().String())
	testutil.Wait(t, "a refused dial", func() bool { return a.PeerStats(3).DialFailures > 0 })
	if a.PeerStats(3).Connected {
		t.Fatal("connected to node 2 as node 3")
	}
}

// TestConfigErrors checks that New rejects unusable configs.
func TestConfigErrors(t *testing.T) {
	for i, cfg := range []Config{
		{ClusterID: 1, ListenAddr: "127.0.0.1:0", Handler: func(*wire.Message) {}},
		{ClusterID: 1, NodeID: 1, ListenAddr: "127.0.0.1:0"},
		{ClusterID: 1, NodeID: 1, Handler: func(*wire.Message) {}},
		{ClusterID: 1, NodeID: 1, ListenAddr: "127.0.0.1:0", Handler: func(*wire.Message) {}, Wire: wire.Options{MaxFrameBytes: -1}},
	} {
		if tr, err := New(cfg); err == nil {
			tr.Close()
			t.Errorf("config %d: New succeeded", i)
		}
	}
	tr := newNode(t, testConfig(1, func(*wire.Message) {}))
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	if tr.Send(appMsg(1, 2, 1, nil)) {
		t.Fatal("Send after Close succeeded")
	}
}

// TestCloseUnderLoad closes transports (and removes peers) while messages
// flow both ways; every call must return and no goroutine may be left
// (goleak checks after the tests).
func TestCloseUnderLoad(t *testing.T) {
	a := newNode(t, testConfig(1, func(*wire.Message) {}))
	b := newNode(t, testConfig(2, func(*wire.Message) {}))
	c := newNode(t, testConfig(3, func(*wire.Message) {}))
	connect(t, a, b)
	connect(t, b, a)
	connect(t, a, c)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range []struct {
		tr       *Transport
		from, to uint64
	}{{a, 1, 2}, {b, 2, 1}, {a, 1, 3}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s.tr.Send(appMsg(s.from, s.to, i, make([]byte, 100)))
			}
		}()
	}
	testutil.Wait(t, "traffic", func() bool { return a.PeerStats(2).Sent > 1000 && b.PeerStats(1).Sent > 1000 })
	a.RemovePeer(3)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
}
