package transport

import (
	"errors"
	"fmt"
	"net"

	"github.com/raftpipe/raftpipe/wire"
)

// serveInbound owns one accepted connection: handshake, then the reader loop
// for its kind. It releases the connection's inbound slot when done.
func (t *Transport) serveInbound(raw net.Conn) {
	defer t.wg.Done()
	defer func() { <-t.inboundSlots }()
	defer t.untrack(raw)
	defer raw.Close()

	log := t.cfg.Logger.With("remote", raw.RemoteAddr().String())
	l, err := t.acceptHandshake(raw)
	if err != nil {
		t.stats.inboundRefused.Add(1)
		if !t.isClosed() {
			log.Warn("transport: refusing inbound connection", "err", err)
		}
		return
	}
	if l.conn != raw {
		// TLS: Close must close the wrapper too (it sends close_notify).
		defer l.conn.Close()
	}
	log = log.With("peer", l.remote.NodeID, "kind", l.remote.Kind)
	switch l.remote.Kind {
	case wire.ConnPeer:
		t.replaceInboundPeer(l.remote.NodeID, raw)
		defer t.forgetInboundPeer(l.remote.NodeID, raw)
		log.Debug("transport: inbound peer connection")
		err = t.readPeerConn(l)
	case wire.ConnSnapshot:
		log.Debug("transport: inbound snapshot connection")
		err = t.serveSnapshot(l)
	}
	switch {
	case t.isClosed() || err == nil:
	case isClosedConn(err):
		log.Info("transport: inbound connection closed", "err", err)
	default:
		t.stats.inboundBadFrames.Add(1)
		log.Warn("transport: closing inbound connection", "reason", err)
	}
}

// replaceInboundPeer records c as node id's inbound peer connection and
// closes the previous one: a node dials anew only when it considers its old
// connection dead, so the old one can only deliver stale messages.
func (t *Transport) replaceInboundPeer(id uint64, c net.Conn) {
	t.mu.Lock()
	old := t.mu.inboundPeer[id]
	t.mu.inboundPeer[id] = c
	t.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

// forgetInboundPeer undoes replaceInboundPeer if c is still the current one.
func (t *Transport) forgetInboundPeer(id uint64, c net.Conn) {
	t.mu.Lock()
	if t.mu.inboundPeer[id] == c {
		delete(t.mu.inboundPeer, id)
	}
	t.mu.Unlock()
}

// errBadPeerFrame marks a well-formed frame of a type that does not belong
// on a peer connection.
var errBadPeerFrame = errors.New("transport: unexpected frame type on peer connection")

// readPeerConn decodes Raft messages from an inbound peer connection and
// hands each to Handler until the connection ends or breaks a rule.
//
// Ownership: each message and all the bytes it references are given away.
// That costs no copy: frame payloads are read into slabs that are never
// reused (see frameReader), and decoded entries alias the payload.
func (t *Transport) readPeerConn(l *link) error {
	from := l.remote.NodeID
	for {
		f, err := l.r.next()
		if err != nil {
			return err
		}
		if f.Type < wire.MsgApp || f.Type > wire.MsgTimeoutNow {
			return fmt.Errorf("%w: %v", errBadPeerFrame, f.Type)
		}
		m := new(wire.Message)
		if err := wire.DecodeMessage(f.Type, f.Payload, m); err != nil {
			return err
		}
		if m.To != t.cfg.NodeID || m.From != from {
			t.stats.droppedMisrouted.Add(1)
			continue
		}
		t.stats.received.Add(1)
		t.cfg.Handler(m)
	}
}
