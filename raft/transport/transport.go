package transport

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// Transport is this node's set of peer links: a listener serving inbound
// peer and snapshot connections, and one outbound link (queue + writer
// goroutine) per peer added with AddPeer. All methods are safe for
// concurrent use.
type Transport struct {
	// cfg is the validated configuration, with defaults filled in.
	cfg Config
	// ln accepts inbound connections; closed by Close.
	ln net.Listener
	// peers is the current outbound peer set, replaced copy-on-write under
	// mu so that Send reads it with one atomic load and no lock.
	peers atomic.Pointer[map[uint64]*peer]
	// inboundSlots is a semaphore of MaxInboundConns tokens, one per open
	// inbound connection.
	inboundSlots chan struct{}
	// snapshotSlots is a semaphore of MaxInboundSnapshots tokens, one per
	// inbound snapshot being received.
	snapshotSlots chan struct{}
	// wg counts every goroutine the transport started; Close waits for it.
	wg sync.WaitGroup
	// stats are the transport-wide counters reported by Stats.
	// Each counter backs the Stats field of the same name; they are atomics
	// because every reader goroutine updates them.
	stats struct {
		droppedUnknownPeer atomic.Uint64
		received           atomic.Uint64
		droppedMisrouted   atomic.Uint64
		inboundRefused     atomic.Uint64
		inboundBadFrames   atomic.Uint64
	}

	// mu guards the fields in it. It is never held while doing I/O.
	mu struct {
		sync.Mutex
		// closed is set once by Close; afterwards nothing new starts.
		closed bool
		// conns holds every open inbound and snapshot connection, so that
		// Close can unblock the goroutines reading or writing them.
		conns map[net.Conn]struct{}
		// inboundPeer maps a node ID to its current inbound peer connection;
		// a newer one from the same node replaces (closes) the older, which
		// must be dead or dying.
		inboundPeer map[uint64]net.Conn
	}
}

// Stats are transport-wide counters; per-peer ones are in PeerStats.
type Stats struct {
	// DroppedUnknownPeer counts Sends to a node that is not a peer.
	DroppedUnknownPeer uint64
	// Received counts inbound messages delivered to Handler.
	Received uint64
	// DroppedMisrouted counts inbound messages whose To is not this node or
	// whose From is not the node that opened the connection.
	DroppedMisrouted uint64
	// InboundRefused counts inbound connections closed before carrying any
	// message: over MaxInboundConns, failed TLS, bad or mismatched handshake.
	InboundRefused uint64
	// InboundBadFrames counts established inbound connections closed because
	// of a malformed frame (garbage, oversized, bad CRC, truncated).
	InboundBadFrames uint64
}

// New validates cfg, starts listening on cfg.ListenAddr and serves inbound
// connections until Close.
func New(cfg Config) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", cfg.ListenAddr, err)
	}
	t := &Transport{
		cfg:           cfg,
		ln:            ln,
		inboundSlots:  make(chan struct{}, cfg.MaxInboundConns),
		snapshotSlots: make(chan struct{}, cfg.MaxInboundSnapshots),
	}
	empty := map[uint64]*peer{}
	t.peers.Store(&empty)
	t.mu.conns = map[net.Conn]struct{}{}
	t.mu.inboundPeer = map[uint64]net.Conn{}
	t.wg.Add(1)
	go t.acceptLoop()
	cfg.Logger.Info("transport: listening", "addr", ln.Addr().String(), "node", cfg.NodeID, "tls", cfg.TLS != nil)
	return t, nil
}

// Addr is the address the transport listens on (useful with port 0).
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// AddPeer makes id reachable at addr and starts its link. Calling it again
// with the same address does nothing; with a new address the link drops its
// connection and redials the new one. REQUIRES: id != 0.
func (t *Transport) AddPeer(id uint64, addr string) {
	if id == 0 {
		panic("transport: AddPeer with node ID 0 (invariant: node IDs are non-zero)")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return
	}
	old := *t.peers.Load()
	if p, ok := old[id]; ok {
		p.setAddr(addr)
		return
	}
	p := newPeer(t, id, addr)
	next := make(map[uint64]*peer, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[id] = p
	t.peers.Store(&next)
	t.wg.Add(1)
	go p.run()
}

// RemovePeer stops id's link and returns after its goroutines exited. Queued
// messages are discarded. Inbound connections from id are left alone: the
// Raft core decides what to do with a removed member's messages.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	old := *t.peers.Load()
	p, ok := old[id]
	if ok {
		next := make(map[uint64]*peer, len(old))
		for k, v := range old {
			if k != id {
				next[k] = v
			}
		}
		t.peers.Store(&next)
	}
	t.mu.Unlock()
	if ok {
		p.stop()
		<-p.done
	}
}

// Send queues m for m.To and returns at once. The Message struct is copied;
// the byte slices it references (entries' Data, Context, SnapData) are not,
// so the caller must not modify them afterwards. It returns false when the
// message was dropped (unknown peer, peer not connected, queue full); drops
// are counted and, as Raft tolerates message loss, need no other handling.
func (t *Transport) Send(m *wire.Message) bool {
	p := (*t.peers.Load())[m.To]
	if p == nil {
		t.stats.droppedUnknownPeer.Add(1)
		return false
	}
	return p.enqueue(m)
}

// PeerStats reports id's link counters; the zero value for an unknown peer.
func (t *Transport) PeerStats(id uint64) PeerStats {
	p := (*t.peers.Load())[id]
	if p == nil {
		return PeerStats{}
	}
	return p.snapshotStats()
}

// Stats reports the transport-wide counters.
func (t *Transport) Stats() Stats {
	return Stats{
		DroppedUnknownPeer: t.stats.droppedUnknownPeer.Load(),
		Received:           t.stats.received.Load(),
		DroppedMisrouted:   t.stats.droppedMisrouted.Load(),
		InboundRefused:     t.stats.inboundRefused.Load(),
		InboundBadFrames:   t.stats.inboundBadFrames.Load(),
	}
}

// Close stops the listener, every peer link and every inbound connection,
// and returns after all goroutines the transport started have exited.
// In-flight SendSnapshot calls fail with ErrClosed. Queued messages are
// discarded. A Handler or SnapshotHandler call in progress is waited for
// (its connection is closed, so a SnapshotHandler's body reads fail), which
// is one more reason handlers must not block. Calling Close again returns
// ErrClosed.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	t.mu.closed = true
	peers := *t.peers.Load()
	empty := map[uint64]*peer{}
	t.peers.Store(&empty)
	conns := make([]net.Conn, 0, len(t.mu.conns))
	for c := range t.mu.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()

	err := t.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	for _, p := range peers {
		p.stop()
	}
	t.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// isClosed reports whether Close has started.
func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.closed
}

// track registers an open connection so that Close can close it; it returns
// false (and the caller must close c) if the transport is already closed.
func (t *Transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return false
	}
	t.mu.conns[c] = struct{}{}
	return true
}

// trackWithGoroutine is track plus t.wg.Add(1) for a goroutine the caller
// is about to start, done under mu so that the Add cannot race with Close's
// Wait.
func (t *Transport) trackWithGoroutine(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return false
	}
	t.mu.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

// untrack forgets a connection registered with track.
func (t *Transport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.mu.conns, c)
	t.mu.Unlock()
}

// acceptLoop accepts inbound connections until the listener is closed,
// handing each to its own goroutine while an inbound slot is free.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	var tempDelay time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || t.isClosed() {
				return
			}
			// Out of file descriptors and the like: back off a little
			// (doubling up to a second) instead of spinning.
			if tempDelay == 0 {
				tempDelay = 5 * time.Millisecond
			} else if tempDelay *= 2; tempDelay > time.Second {
				tempDelay = time.Second
			}
			t.cfg.Logger.Warn("transport: accept failed", "err", err, "retry_in", tempDelay)
			time.Sleep(tempDelay)
			continue
		}
		tempDelay = 0
		select {
		case t.inboundSlots <- struct{}{}:
		default:
			t.stats.inboundRefused.Add(1)
			t.cfg.Logger.Warn("transport: refusing inbound connection: too many open",
				"remote", c.RemoteAddr().String(), "max_inbound_conns", t.cfg.MaxInboundConns)
			c.Close()
			continue
		}
		if !t.track(c) {
			c.Close()
			<-t.inboundSlots
			return
		}
		t.wg.Add(1)
		go t.serveInbound(c)
	}
}
