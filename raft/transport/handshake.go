package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// link is one connection after both handshakes: the stream, its buffered
// frame reader, what the remote announced, and the encode options for this
// link (the negotiated codec).
type link struct {
	// conn is the (possibly TLS-wrapped) connection; closing it unblocks
	// every reader and writer of the link.
	conn net.Conn
	// r reads frames into slabs whose payloads the caller may keep.
	r *frameReader
	// remote is the peer's handshake, validated.
	remote wire.Handshake
	// opts are Config.Wire with Compression replaced by the codec both sides
	// support.
	opts wire.Options
}

// localHandshake is what this node announces on a connection of kind k.
func (t *Transport) localHandshake(k wire.ConnKind) wire.Handshake {
	return wire.Handshake{
		ClusterID: t.cfg.ClusterID,
		NodeID:    t.cfg.NodeID,
		Version:   wire.ProtocolVersion,
		Kind:      k,
		Features:  wire.SupportedFeatures(),
	}
}

// checkHandshake validates a remote handshake against this node's cluster,
// protocol version and the connection kinds the transport serves.
func (t *Transport) checkHandshake(h *wire.Handshake) error {
	if h.ClusterID != t.cfg.ClusterID {
		return fmt.Errorf("%w: remote cluster %d, local cluster %d", ErrHandshake, h.ClusterID, t.cfg.ClusterID)
	}
	if h.Version != wire.ProtocolVersion {
		return fmt.Errorf("%w: remote protocol version %d, local %d", ErrHandshake, h.Version, wire.ProtocolVersion)
	}
	if h.NodeID == 0 {
		return fmt.Errorf("%w: remote node ID 0", ErrHandshake)
	}
	if h.Kind != wire.ConnPeer && h.Kind != wire.ConnSnapshot {
		return fmt.Errorf("%w: connection kind %d not served by the peer transport", ErrHandshake, h.Kind)
	}
	return nil
}

// readHandshake reads and decodes the first frame of a connection.
func readHandshake(r *frameReader) (wire.Handshake, error) {
	var h wire.Handshake
	f, err := r.next()
	if err != nil {
		return h, fmt.Errorf("%w: reading handshake: %w", ErrHandshake, err)
	}
	if f.Type != wire.MsgHandshake {
		return h, fmt.Errorf("%w: first frame has type %d, want handshake", ErrHandshake, f.Type)
	}
	if err := wire.DecodeHandshake(f.Payload, &h); err != nil {
		return h, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	return h, nil
}

// newLink wraps conn in a frame reader with slabs of slabBytes.
func (t *Transport) newLink(conn net.Conn, slabBytes int) *link {
	return &link{
		conn: conn,
		r:    newFrameReader(conn, &t.cfg.Wire, slabBytes),
		opts: t.cfg.Wire,
	}
}

// dial connects to addr, runs TLS (if configured) and the raftpipe handshake
// as the client, and checks that the remote is node peerID of this cluster.
// ctx cancels the attempt; DialTimeout and HandshakeTimeout bound it.
func (t *Transport) dial(ctx context.Context, addr string, peerID uint64, kind wire.ConnKind) (*link, error) {
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := raw
	deadline := time.Now().Add(t.cfg.HandshakeTimeout)
	if t.cfg.TLS != nil {
		tc := tls.Client(raw, t.clientTLS(addr))
		hctx, cancel := context.WithDeadline(ctx, deadline)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	// Closing on ctx cancellation unblocks the handshake read below.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// Outbound connections only ever receive the handshake (and, for
	// snapshots, one short answer).
	l := t.newLink(conn, watchSlabBytes)
	if err := conn.SetDeadline(deadline); err != nil {
		conn.Close()
		return nil, err
	}
	h := t.localHandshake(kind)
	if _, err := conn.Write(wire.AppendHandshake(nil, &h)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: writing handshake: %w", ErrHandshake, err)
	}
	l.remote, err = readHandshake(l.r)
	if err == nil {
		err = t.checkHandshake(&l.remote)
	}
	if err == nil && l.remote.NodeID != peerID {
		err = fmt.Errorf("%w: %s is node %d, expected node %d", ErrHandshake, addr, l.remote.NodeID, peerID)
	}
	if err == nil && l.remote.Kind != kind {
		err = fmt.Errorf("%w: remote answered kind %d, asked for %d", ErrHandshake, l.remote.Kind, kind)
	}
	if err == nil {
		err = conn.SetDeadline(time.Time{})
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	if ctx.Err() != nil {
		conn.Close()
		return nil, ctx.Err()
	}
	l.opts.Compression = wire.Negotiate(wire.SupportedFeatures(), l.remote.Features, t.cfg.Wire.Compression)
	return l, nil
}

// clientTLS returns the TLS config to dial addr: Config.TLS, with ServerName
// set to addr's host when the config names none (so that the server's
// certificate is verified against the address dialed).
func (t *Transport) clientTLS(addr string) *tls.Config {
	c := t.cfg.TLS
	if c.ServerName != "" {
		return c
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	c = c.Clone()
	c.ServerName = host
	return c
}

// acceptHandshake runs TLS (if configured) and the raftpipe handshake as the
// server on a freshly accepted connection. It always answers with its own
// handshake before validating, so that a refused client can log why; on a
// mismatch it returns an error and the caller closes the connection.
func (t *Transport) acceptHandshake(raw net.Conn) (*link, error) {
	deadline := time.Now().Add(t.cfg.HandshakeTimeout)
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, err
	}
	conn := raw
	if t.cfg.TLS != nil {
		tc := tls.Server(raw, t.cfg.TLS)
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	l := t.newLink(conn, peerSlabBytes)
	var err error
	l.remote, err = readHandshake(l.r)
	if err != nil {
		return l, err
	}
	kind := l.remote.Kind
	if kind != wire.ConnSnapshot {
		kind = wire.ConnPeer
	}
	h := t.localHandshake(kind)
	if _, err := conn.Write(wire.AppendHandshake(nil, &h)); err != nil {
		return l, fmt.Errorf("%w: writing handshake: %w", ErrHandshake, err)
	}
	if err := t.checkHandshake(&l.remote); err != nil {
		return l, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return l, err
	}
	return l, nil
}

// isClosedConn reports whether err only says the connection was closed
// or reset (locally or by the remote), as opposed to a protocol violation.
func isClosedConn(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
