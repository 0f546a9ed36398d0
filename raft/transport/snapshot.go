package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// snapRespGraceTime is how long a snapshot sender whose write failed still
// waits for the receiver's answer: a receiver that rejects a stream answers
// and closes, and the answer usually explains the failed write.
const snapRespGraceTime = time.Second

// SendSnapshot streams a snapshot to meta.To over a new ConnSnapshot
// connection, so that the peer connection (heartbeats) never waits behind
// it. meta supplies Group, Term and Snapshot; the body is cut into MsgSnap
// chunks of Config.SnapshotChunkBytes with SnapOffset set, the last one with
// SnapDone. It returns after the receiver's SnapshotHandler returned: nil if
// it accepted the snapshot, an error wrapping ErrSnapshotRejected if it
// failed (the receiver logs the reason), or the I/O, context or ErrClosed
// error that ended the transfer first. It may be called concurrently, also
// for the same peer.
func (t *Transport) SendSnapshot(ctx context.Context, meta *wire.Message, body io.Reader) error {
	p := (*t.peers.Load())[meta.To]
	if p == nil {
		if t.isClosed() {
			return ErrClosed
		}
		return fmt.Errorf("%w: snapshot for node %d", ErrUnknownPeer, meta.To)
	}
	p.mu.Lock()
	addr := p.mu.addr
	p.mu.Unlock()
	l, err := t.dial(ctx, addr, meta.To, wire.ConnSnapshot)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("transport: snapshot to node %d at %s: %w", meta.To, addr, err)
	}
	// The answer reader below is a transport goroutine (Close waits for it);
	// register it together with the connection, under the lock that Close
	// takes, so that it is never added while Close is already waiting.
	if !t.trackWithGoroutine(l.conn) {
		l.conn.Close()
		return ErrClosed
	}
	defer t.untrack(l.conn)
	stopAfter := context.AfterFunc(ctx, func() { l.conn.Close() })
	defer stopAfter()

	// The receiver answers once, after its handler returned; read that answer
	// concurrently so that an early rejection stops the stream at once.
	respDone := make(chan struct{})
	var resp wire.Message
	var respErr error
	go func() {
		defer t.wg.Done()
		defer close(respDone)
		f, err := l.r.next()
		switch {
		case err != nil:
			respErr = err
		case f.Type != wire.MsgSnapResp:
			respErr = fmt.Errorf("%w: answer has type %v", ErrSnapshotStream, f.Type)
		default:
			respErr = wire.DecodeMessage(f.Type, f.Payload, &resp)
		}
	}()
	defer func() {
		l.conn.Close()
		<-respDone
	}()
	result := func(streamDone bool) error {
		switch {
		case respErr != nil:
			return t.snapErr(ctx, fmt.Errorf("transport: snapshot to node %d: reading answer: %w", meta.To, respErr))
		case resp.Reject:
			return fmt.Errorf("%w: node %d, snapshot index %d", ErrSnapshotRejected, meta.To, meta.Snapshot.Index)
		case !streamDone:
			return fmt.Errorf("%w: node %d accepted the snapshot before its last chunk", ErrSnapshotStream, meta.To)
		}
		return nil
	}

	chunk := make([]byte, t.cfg.SnapshotChunkBytes)
	var buf []byte
	m := *meta
	m.Type, m.From = wire.MsgSnap, t.cfg.NodeID
	var off uint64
	for done := false; !done; {
		n, rerr := io.ReadFull(body, chunk)
		switch {
		case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
			done = true
		case rerr != nil:
			return fmt.Errorf("transport: reading snapshot body at offset %d: %w", off+uint64(n), rerr)
		}
		m.SnapOffset, m.SnapData, m.SnapDone = off, chunk[:n], done
		if buf, err = wire.AppendMessage(buf[:0], &m, &l.opts); err != nil {
			return fmt.Errorf("transport: encoding snapshot chunk: %w", err)
		}
		if err = l.conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); err == nil {
			_, err = l.conn.Write(buf)
		}
		if err != nil {
			timer := time.NewTimer(snapRespGraceTime)
			select {
			case <-respDone:
				timer.Stop()
				if respErr == nil {
					return result(false)
				}
			case <-timer.C:
			}
			return t.snapErr(ctx, fmt.Errorf("transport: snapshot to node %d: writing chunk at offset %d: %w", meta.To, off, err))
		}
		off += uint64(n)
		select {
		case <-respDone:
			return result(done)
		default:
		}
	}
	select {
	case <-respDone:
		return result(true)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// snapErr prefers the reason the connection was closed on purpose
// (cancellation, Close) over the I/O error that reason caused.
func (t *Transport) snapErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if t.isClosed() {
		return ErrClosed
	}
	return err
}

// serveSnapshot receives one snapshot stream on an inbound ConnSnapshot
// connection: it hands the first chunk's metadata and a body reader to
// SnapshotHandler, then answers with MsgSnapResp (Reject set if the handler
// failed or did not consume the whole stream). It returns a non-nil error
// only when the stream itself was malformed or broken.
func (t *Transport) serveSnapshot(l *link) error {
	from := l.remote.NodeID
	reply := func(index, received uint64, reject bool) error {
		m := wire.Message{Type: wire.MsgSnapResp, From: t.cfg.NodeID, To: from,
			Index: index, SnapOffset: received, Reject: reject}
		b, err := wire.AppendMessage(nil, &m, &l.opts)
		if err != nil {
			panic("transport: encoding MsgSnapResp failed (invariant: a fixed-size message always encodes): " + err.Error())
		}
		if err := l.conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); err != nil {
			return err
		}
		_, err = l.conn.Write(b)
		return err
	}
	if t.cfg.SnapshotHandler == nil {
		t.cfg.Logger.Warn("transport: refusing inbound snapshot: no SnapshotHandler configured", "peer", from)
		return reply(0, 0, true)
	}
	// The slot is released before the answer is sent, so that a sender
	// that got its answer can start the next transfer at once.
	released := false
	release := func() {
		if !released {
			released = true
			<-t.snapshotSlots
		}
	}
	select {
	case t.snapshotSlots <- struct{}{}:
		defer release()
	default:
		t.cfg.Logger.Warn("transport: refusing inbound snapshot: too many in progress",
			"peer", from, "max_inbound_snapshots", t.cfg.MaxInboundSnapshots)
		return reply(0, 0, true)
	}

	// Slabs that hold a whole default chunk or two: fewer tail copies.
	l.r.slabBytes = snapSlabBytes
	body := &snapBody{t: t, l: l}
	if err := body.next(); err != nil {
		return err
	}
	meta := body.m // the handler owns meta; body decodes later chunks elsewhere
	body.m = wire.Message{}
	if meta.To != t.cfg.NodeID || meta.From != from {
		return fmt.Errorf("%w: snapshot from %d to %d on a connection from node %d", ErrSnapshotStream, meta.From, meta.To, from)
	}
	body.index = meta.Snapshot.Index
	meta.SnapData, meta.SnapDone, meta.SnapOffset = nil, false, 0

	herr := t.cfg.SnapshotHandler(&meta, body)
	if herr == nil {
		herr = body.finish()
	}
	if herr != nil {
		t.cfg.Logger.Warn("transport: inbound snapshot failed", "peer", from,
			"index", meta.Snapshot.Index, "received_bytes", body.off, "err", herr)
	}
	release()
	if err := reply(meta.Snapshot.Index, body.off, herr != nil); err != nil && body.err == nil {
		body.err = err
	}
	if body.err != nil && !errors.Is(body.err, errSnapUnconsumed) {
		return body.err
	}
	return nil
}

// errSnapUnconsumed means the SnapshotHandler returned nil before reading
// the whole stream; the sender is told the transfer failed.
var errSnapUnconsumed = fmt.Errorf("%w: handler returned before the end of the stream", ErrSnapshotStream)

// snapBody is the io.Reader a SnapshotHandler consumes. It reads the next
// MsgSnap frame on demand, on the handler's own goroutine, so a snapshot of
// any size costs a few chunks of memory on the receiving side (slabs of
// snapSlabBytes, dropped as they are consumed).
type snapBody struct {
	// t supplies the idle timeout.
	t *Transport
	// l is the snapshot connection.
	l *link
	// m is the last decoded chunk (reused).
	m wire.Message
	// cur is the unread rest of the current chunk's data.
	cur []byte
	// off is the stream offset just after the last chunk received; the next
	// chunk must start there. Invariant: chunks arrive contiguously.
	off uint64
	// index is the snapshot index every chunk must name.
	index uint64
	// done is set once the chunk with SnapDone arrived.
	done bool
	// err is the first stream error; Read returns it from then on.
	err error
	// first is set once the first chunk (the one that carries the metadata
	// the handler gets) has been read.
	first bool
}

// Read implements io.Reader over the chunks' data.
func (b *snapBody) Read(p []byte) (int, error) {
	for len(b.cur) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		if b.done {
			return 0, io.EOF
		}
		b.err = b.next()
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

// next reads and checks one MsgSnap frame into b.m and makes its data the
// current chunk.
func (b *snapBody) next() error {
	if err := b.l.conn.SetReadDeadline(time.Now().Add(b.t.cfg.SnapshotIdleTimeout)); err != nil {
		return err
	}
	f, err := b.l.r.next()
	if err != nil {
		if err == io.EOF {
			err = fmt.Errorf("%w: stream ended before its last chunk: %w", ErrSnapshotStream, io.ErrUnexpectedEOF)
		}
		return err
	}
	if f.Type != wire.MsgSnap {
		return fmt.Errorf("%w: frame type %v on a snapshot connection", ErrSnapshotStream, f.Type)
	}
	if err := wire.DecodeMessage(f.Type, f.Payload, &b.m); err != nil {
		return err
	}
	if b.m.SnapOffset != b.off || (b.first && b.m.Snapshot.Index != b.index) {
		return fmt.Errorf("%w: chunk at offset %d for index %d, expected offset %d for index %d",
			ErrSnapshotStream, b.m.SnapOffset, b.m.Snapshot.Index, b.off, b.index)
	}
	b.first = true
	b.cur = b.m.SnapData
	b.off += uint64(len(b.m.SnapData))
	b.done = b.m.SnapDone
	return nil
}

// finish checks, after the handler returned nil, that it consumed the whole
// stream (reading the final, possibly empty, chunk if needed).
func (b *snapBody) finish() error {
	var one [1]byte
	n, err := b.Read(one[:])
	switch {
	case n > 0:
		b.err = errSnapUnconsumed
		return errSnapUnconsumed
	case err == io.EOF:
		return nil
	}
	return err
}
