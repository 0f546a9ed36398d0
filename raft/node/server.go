package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// Client server bounds.
const (
	// clientHandshakeTimeout bounds the handshake of a new client connection.
	clientHandshakeTimeout = 5 * time.Second
	// clientWriteTimeout bounds one flush of responses; a client that reads
	// nothing for this long is disconnected.
	clientWriteTimeout = 30 * time.Second
	// drainIdleRead is how long a draining connection waits for the next
	// request before closing: clients that were refused (not leader) have
	// moved on by then; one still pipelining gets refusals.
	drainIdleRead = 100 * time.Millisecond
	// clientFlushBytes is how many encoded response bytes are buffered
	// before a write mid-batch.
	clientFlushBytes = 64 << 10
)

// clientServer accepts client connections and serves the pipelined client
// protocol: requests are handed to Node.Submit as they arrive and answered
// in completion order, matched by ID.
type clientServer struct {
	n  *Node
	ln net.Listener
	// slots bounds open connections.
	slots chan struct{}
	// unanswered counts requests handed to Submit whose answer has not
	// come back yet, over all connections: each holds one of its
	// connection's in-flight slots. Every request is answered exactly
	// once, so this returns to zero when the node is idle.
	unanswered atomic.Int64
	// draining makes connection readers stop (flushAndClose): a reader
	// that sees it after a read deadline exits once its writer has written
	// every answer it owes.
	draining atomic.Bool
	// closing is closed by close: connections still waiting in waitOwed
	// give up.
	closing chan struct{}
	wg      sync.WaitGroup
	mu      struct {
		sync.Mutex
		conns  map[net.Conn]struct{}
		closed bool
	}
}

func newClientServer(n *Node, addr string) (*clientServer, error) {
	ln, err := listen(addr)
	if err != nil {
		return nil, err
	}
	if n.cfg.TLS != nil {
		ln = tls.NewListener(ln, n.cfg.TLS)
	}
	s := &clientServer{n: n, ln: ln, slots: make(chan struct{}, n.cfg.MaxClientConns), closing: make(chan struct{})}
	s.mu.conns = map[net.Conn]struct{}{}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *clientServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.n.log.Warn("client connection refused: too many connections", "remote", c.RemoteAddr())
			c.Close()
			continue
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			defer s.untrack(c)
			s.serve(c)
		}()
	}
}

func (s *clientServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return false
	}
	s.mu.conns[c] = struct{}{}
	return true
}

func (s *clientServer) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.mu.conns, c)
	s.mu.Unlock()
	c.Close()
}

// stopAccepting closes the listener: new connections are refused by the
// operating system; open ones are served on.
func (s *clientServer) stopAccepting() { s.ln.Close() }

// flushAndClose ends every connection once its client has been quiet for
// drainIdleRead (requests it still sends are answered, with the refusals
// Drain gives) and its writer has written every answer owed; bounded by
// ctx. A client that pauses longer than drainIdleRead in the middle of a
// frame sees the connection close without an answer to it.
func (s *clientServer) flushAndClose(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	for c := range s.mu.conns {
		c.SetReadDeadline(time.Now().Add(drainIdleRead))
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops accepting, closes every connection and waits for the
// connection goroutines.
func (s *clientServer) close() {
	s.mu.Lock()
	if !s.mu.closed {
		close(s.closing)
	}
	s.mu.closed = true
	for c := range s.mu.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

// serve runs one connection: handshake, then a reader loop (this goroutine)
// and a writer goroutine that batches responses into few writes.
func (s *clientServer) serve(c net.Conn) {
	n := s.n
	c.SetDeadline(time.Now().Add(clientHandshakeTimeout))
	r := wire.NewReader(c, n.cfg.Wire)
	f, err := r.Next(nil)
	if err != nil || f.Type != wire.MsgHandshake {
		n.log.Debug("client handshake failed", "remote", c.RemoteAddr(), "err", err)
		return
	}
	var hs wire.Handshake
	err = wire.DecodeHandshake(f.Payload, &hs)
	// Answer with our own handshake even when refusing, so a client of
	// another cluster learns why (it sees the mismatch) instead of an EOF.
	reply := wire.AppendHandshake(nil, &wire.Handshake{ClusterID: n.cfg.ClusterID, NodeID: n.cfg.ID, Version: wire.ProtocolVersion, Kind: wire.ConnClient})
	if _, werr := c.Write(reply); werr != nil {
		return
	}
	if err != nil || hs.ClusterID != n.cfg.ClusterID || hs.Version != wire.ProtocolVersion || hs.Kind != wire.ConnClient {
		n.log.Warn("client refused: bad handshake", "remote", c.RemoteAddr(), "cluster", hs.ClusterID, "version", hs.Version, "err", err)
		return
	}
	c.SetDeadline(time.Time{})

	// inflight bounds requests being processed on this connection; the
	// reader stops reading when it is full, so TCP pushes back.
	inflight := make(chan struct{}, DefaultClientInflight)
	// out carries responses to the writer; its capacity equals the in-flight
	// bound, so a completion callback never blocks.
	out := make(chan *wire.ClientResponse, DefaultClientInflight)
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	// owed counts requests read on this connection whose answers the
	// writer has not yet flushed (flushAndClose waits for it to drain).
	var owed atomic.Int64
	go func() {
		defer close(writerDone)
		s.writeLoop(c, out, inflight, stop, &owed)
	}()
	defer func() {
		if s.draining.Load() {
			s.waitOwed(&owed, writerDone)
		}
		close(stop)
		c.Close()
		<-writerDone
	}()
	var req wire.ClientRequest
	buf := make([]byte, 0, 4096)
	for {
		select {
		case inflight <- struct{}{}:
		case <-stop:
			return
		}
		if s.draining.Load() {
			// Keep answering (with refusals) what the client still sends,
			// until it has been quiet for drainIdleRead.
			c.SetReadDeadline(time.Now().Add(drainIdleRead))
		}
		f, err := r.Next(buf[:0])
		if err != nil {
			if !isClosedErr(err) {
				n.log.Debug("client connection closed", "remote", c.RemoteAddr(), "err", err)
			}
			return
		}
		if cap(f.Payload) > cap(buf) && cap(f.Payload) <= 1<<20 {
			buf = f.Payload[:0]
		}
		if f.Type != wire.MsgClientRequest {
			n.log.Warn("client sent unexpected frame; closing", "remote", c.RemoteAddr(), "type", f.Type)
			return
		}
		if err := wire.DecodeClientRequest(f.Payload, &req); err != nil {
			n.log.Warn("client sent malformed request; closing", "remote", c.RemoteAddr(), "err", err)
			return
		}
		op := opLabel(req.Op, req.Flags)
		owed.Add(1)
		s.unanswered.Add(1)
		n.Submit(&req, func(resp *wire.ClientResponse) {
			s.unanswered.Add(-1)
			n.metrics.clientAnswered(op, resp.Status)
			out <- resp
		})
	}
}

// writeLoop encodes responses as they complete and flushes when none are
// waiting, so a burst of completions costs one write.
func (s *clientServer) writeLoop(c net.Conn, out <-chan *wire.ClientResponse, inflight <-chan struct{}, stop <-chan struct{}, owed *atomic.Int64) {
	bw := bufio.NewWriterSize(c, clientFlushBytes)
	var buf []byte
	opts := s.n.cfg.Wire
	opts.Compression = wire.CompressionNone
	for {
		var resp *wire.ClientResponse
		select {
		case resp = <-out:
		case <-stop:
			return
		}
		written := int64(0)
		for resp != nil {
			written++
			var err error
			buf, err = wire.AppendClientResponse(buf[:0], resp, &opts)
			if err != nil {
				buf, _ = wire.AppendClientResponse(buf[:0], &wire.ClientResponse{ID: resp.ID, Status: wire.StatusError, Err: "response too large"}, &opts)
			}
			<-inflight
			c.SetWriteDeadline(time.Now().Add(clientWriteTimeout))
			if _, err := bw.Write(buf); err != nil {
				c.Close()
				return
			}
			select {
			case resp = <-out:
			default:
				resp = nil
			}
		}
		if err := bw.Flush(); err != nil {
			c.Close()
			return
		}
		owed.Add(-written)
	}
}

// waitOwed waits, while draining, until the connection's writer flushed
// every answer owed or exited; flushAndClose's ctx bounds the whole drain
// (Stop closes the connection if it is still waiting).
func (s *clientServer) waitOwed(owed *atomic.Int64, writerDone <-chan struct{}) {
	t := time.NewTicker(drainPollInterval)
	defer t.Stop()
	for owed.Load() > 0 {
		select {
		case <-t.C:
		case <-writerDone:
			return
		case <-s.closing:
			return
		}
	}
}

// isClosedErr reports errors that just mean the peer or we closed.
func isClosedErr(err error) bool {
	var ne *net.OpError
	return errors.Is(err, net.ErrClosed) || errors.As(err, &ne) || errors.Is(err, wire.ErrTruncated)
}
