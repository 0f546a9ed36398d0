package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// conn is one connection to one node, shared by every caller that targets
// that node. Callers encode their request straight into the connection's
// write buffer and register a call in the pending map; the writer goroutine
// sends whatever has accumulated in one write; the reader goroutine matches
// responses to calls by ID.
//
// Lifecycle: created by Client.connFor (in the Client's conns map), dialled
// by its own dial goroutine, ready when the handshake succeeds, failed
// exactly once by fail (by the reader, the writer, the dialer, or Close),
// after which it is removed from the map and never used again.
type conn struct {
	// client is the owner, told when this connection fails.
	client *Client
	// addr is the node's client address, the key in Client.mu.conns.
	addr string
	// ready is closed when dialling ends, successfully or not; dialErr says
	// which. Callers wait on it before enqueueing.
	ready chan struct{}
	// dialErr is the dial or handshake error. Written once before ready is
	// closed; read only after.
	dialErr error
	// opts are the wire options for this connection: the Client's, with the
	// compression negotiated in the handshake. Set before ready is closed.
	opts wire.Options
	// slots is the in-flight semaphore: a caller puts a token before it
	// enqueues and takes it back when its attempt ends. Capacity is
	// Config.MaxInflight, so the pending map and the write buffer are
	// bounded.
	slots chan struct{}
	// kick wakes the writer. Invariant: whenever mu.wbuf is non-empty, a
	// token is in kick or the writer is about to take the buffer.
	kick chan struct{}
	// dead is closed by fail; the writer and blocked callers watch it.
	dead chan struct{}

	// mu guards the fields in it. Held only for map and slice operations
	// and one request's encoding, never across I/O.
	mu struct {
		sync.Mutex
		// nc is the socket, once dialled; fail closes it.
		nc net.Conn
		// failed is set once, by fail. After it, nothing is enqueued.
		failed bool
		// wbuf holds encoded requests not yet taken by the writer.
		wbuf []byte
		// spare is the writer's previous buffer, reused for wbuf so steady
		// state allocates nothing.
		spare []byte
		// batch numbers the contents of wbuf: a call enqueued into wbuf
		// records it, and the writer increments it when it takes wbuf. A
		// call whose batch is below the current value was handed to
		// write(2), so it may have reached the node.
		batch uint64
		// nextID is the last request ID assigned on this connection.
		nextID uint64
		// pending maps request ID to the waiting call. Whoever removes an
		// entry (the reader on a response, fail, or the caller giving up)
		// owns the call and is the only one that may signal it.
		pending map[uint64]*call
	}
}

// newConn returns an undialled conn for addr.
func newConn(c *Client, addr string) *conn {
	cn := &conn{
		client: c,
		addr:   addr,
		ready:  make(chan struct{}),
		slots:  make(chan struct{}, c.cfg.MaxInflight),
		kick:   make(chan struct{}, 1),
		dead:   make(chan struct{}),
	}
	cn.mu.pending = make(map[uint64]*call)
	return cn
}

// connError reports that a connection failed while a call was pending.
type connError struct {
	// sent is whether the request was handed to write(2) before the
	// failure; if so, the node may have applied it.
	sent bool
	// err is the cause.
	err error
}

func (e *connError) Error() string {
	if e.sent {
		return "connection lost after send: " + e.err.Error()
	}
	return "connection lost before send: " + e.err.Error()
}

func (e *connError) Unwrap() error { return e.err }

// dial connects, exchanges handshakes and starts the reader and writer. It
// runs on its own goroutine (counted in Client.wg) so that a caller whose
// context ends does not abandon a half-open connection.
func (cn *conn) dial() {
	defer cn.client.wg.Done()
	r, err := cn.connect()
	if err != nil {
		cn.dialErr = err
		cn.fail(err)
		close(cn.ready)
		return
	}
	cn.mu.Lock()
	if cn.mu.failed { // Close ran during the handshake
		cn.mu.Unlock()
		cn.dialErr = ErrClosed
		close(cn.ready)
		return
	}
	cn.client.wg.Add(2)
	cn.mu.Unlock()
	go cn.readLoop(r)
	go cn.writeLoop()
	cn.client.cfg.Logger.Debug("client: connected", "addr", cn.addr, "compression", cn.opts.Compression)
	close(cn.ready)
	cn.client.connUp()
}

// connect dials and handshakes, returning the frame reader positioned after
// the node's handshake.
func (cn *conn) connect() (*wire.Reader, error) {
	c := cn.client
	ctx, cancel := context.WithTimeout(c.closeCtx, dialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", cn.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", cn.addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		// Requests are batched by the writer already; Nagle would only add
		// latency.
		_ = tc.SetNoDelay(true)
	}
	if c.cfg.TLS != nil {
		tcfg := c.cfg.TLS
		if tcfg.ServerName == "" {
			tcfg = tcfg.Clone()
			if host, _, err := net.SplitHostPort(cn.addr); err == nil {
				tcfg.ServerName = host
			}
		}
		nc = tls.Client(nc, tcfg)
	}
	cn.mu.Lock()
	if cn.mu.failed {
		cn.mu.Unlock()
		_ = nc.Close()
		return nil, ErrClosed
	}
	cn.mu.nc = nc // from here on, fail (e.g. by Close) interrupts the handshake
	cn.mu.Unlock()

	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	local := wire.SupportedFeatures()
	hs := wire.Handshake{
		ClusterID: c.cfg.ClusterID,
		NodeID:    0,
		Version:   wire.ProtocolVersion,
		Kind:      wire.ConnClient,
		Features:  local,
	}
	if _, err := nc.Write(wire.AppendHandshake(nil, &hs)); err != nil {
		return nil, fmt.Errorf("handshake with %s: %w", cn.addr, err)
	}
	r := wire.NewReader(nc, c.cfg.Wire) // buffers wire.ReaderBufferBytes
	f, err := r.Next(nil)
	if err != nil {
		return nil, fmt.Errorf("handshake with %s: %w", cn.addr, err)
	}
	if f.Type != wire.MsgHandshake {
		return nil, fmt.Errorf("handshake with %s: got frame type %d: %w", cn.addr, f.Type, ErrHandshake)
	}
	var remote wire.Handshake
	if err := wire.DecodeHandshake(f.Payload, &remote); err != nil {
		return nil, fmt.Errorf("handshake with %s: %w: %w", cn.addr, ErrHandshake, err)
	}
	switch {
	case remote.ClusterID != c.cfg.ClusterID:
		return nil, fmt.Errorf("handshake with %s: cluster ID %d, want %d: %w", cn.addr, remote.ClusterID, c.cfg.ClusterID, ErrHandshake)
	case remote.Version != wire.ProtocolVersion:
		return nil, fmt.Errorf("handshake with %s: protocol version %d, want %d: %w", cn.addr, remote.Version, wire.ProtocolVersion, ErrHandshake)
	case remote.Kind != wire.ConnClient:
		return nil, fmt.Errorf("handshake with %s: connection kind %d, want %d: %w", cn.addr, remote.Kind, wire.ConnClient, ErrHandshake)
	}
	_ = nc.SetDeadline(time.Time{})
	cn.opts = c.cfg.Wire
	cn.opts.Compression = wire.Negotiate(local, remote.Features, c.cfg.Wire.Compression)
	return r, nil
}

// fail marks the connection failed, closes the socket, removes it from the
// Client, and signals every pending call with a connError. Idempotent: only
// the first cause is kept.
func (cn *conn) fail(err error) {
	cn.mu.Lock()
	if cn.mu.failed {
		cn.mu.Unlock()
		return
	}
	cn.mu.failed = true
	pending := cn.mu.pending
	cn.mu.pending = nil
	taken := cn.mu.batch
	nc := cn.mu.nc
	cn.mu.Unlock()

	if nc != nil {
		_ = nc.Close()
	}
	close(cn.dead)
	cn.client.forget(cn)
	if len(pending) > 0 || !errors.Is(err, ErrClosed) {
		cn.client.cfg.Logger.Debug("client: connection failed", "addr", cn.addr, "pending", len(pending), "err", err)
	}
	for _, cl := range pending {
		cl.done <- &connError{sent: cl.batch < taken, err: err}
	}
}

// writeLoop sends the accumulated write buffer each time it is kicked: all
// requests enqueued while the previous write was in progress go out in one
// write(2).
func (cn *conn) writeLoop() {
	defer cn.client.wg.Done()
	for {
		select {
		case <-cn.kick:
		case <-cn.dead:
			return
		}
		// Yield once so callers already runnable (typically the ones the
		// reader just woke) can enqueue too: measured against the fake
		// server, 256 callers went from 1.6 to ~38 requests per write(2)
		// and throughput rose ~40%. Writing at once was the rejected
		// simpler design.
		runtime.Gosched()
		cn.mu.Lock()
		if cn.mu.failed {
			cn.mu.Unlock()
			return
		}
		buf := cn.mu.wbuf
		cn.mu.wbuf = cn.mu.spare[:0]
		cn.mu.spare = nil
		cn.mu.batch++
		nc := cn.mu.nc
		cn.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		if _, err := nc.Write(buf); err != nil {
			cn.fail(fmt.Errorf("write to %s: %w", cn.addr, err))
			return
		}
		if cap(buf) <= maxRetainedWriteBufferBytes {
			cn.mu.Lock()
			cn.mu.spare = buf[:0]
			cn.mu.Unlock()
		}
	}
}

// readLoop decodes responses and hands each to the call waiting for its ID.
// Responses to calls that gave up are dropped.
func (cn *conn) readLoop(r *wire.Reader) {
	defer cn.client.wg.Done()
	buf := make([]byte, frameBufferBytes)
	var resp wire.ClientResponse
	for {
		f, err := r.Next(buf)
		if err != nil {
			cn.fail(fmt.Errorf("read from %s: %w", cn.addr, err))
			return
		}
		if f.Type != wire.MsgClientResponse {
			cn.fail(fmt.Errorf("read from %s: frame type %d: %w", cn.addr, f.Type, ErrProtocol))
			return
		}
		if err := wire.DecodeClientResponse(f.Payload, &resp); err != nil {
			cn.fail(fmt.Errorf("read from %s: %w: %w", cn.addr, ErrProtocol, err))
			return
		}
		cn.mu.Lock()
		cl := cn.mu.pending[resp.ID]
		if cl != nil {
			delete(cn.mu.pending, resp.ID)
		}
		cn.mu.Unlock()
		if cl == nil {
			continue
		}
		cl.setResponse(&resp)
		cl.done <- nil
	}
}

// enqueue assigns req an ID, encodes it into the write buffer and registers
// cl as pending. REQUIRES: the caller holds a slot.
func (cn *conn) enqueue(req *wire.ClientRequest, cl *call) error {
	cn.mu.Lock()
	if cn.mu.failed {
		cn.mu.Unlock()
		return &connError{sent: false, err: errConnFailed}
	}
	cn.mu.nextID++
	req.ID = cn.mu.nextID
	n := len(cn.mu.wbuf)
	buf, err := wire.AppendClientRequest(cn.mu.wbuf, req, &cn.opts)
	if err != nil {
		cn.mu.Unlock()
		return fmt.Errorf("client: encode request: %w", err)
	}
	cn.mu.wbuf = buf
	cl.id = req.ID
	cl.batch = cn.mu.batch
	cn.mu.pending[req.ID] = cl
	cn.mu.Unlock()
	if n == 0 {
		select {
		case cn.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// withdraw removes cl from the pending map if it is still there and reports
// whether it did. If it did not, the reader or fail owns cl and is about to
// signal cl.done, which the caller must then receive.
func (cn *conn) withdraw(cl *call) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.mu.pending[cl.id] == cl {
		delete(cn.mu.pending, cl.id)
		return true
	}
	return false
}

// errConnFailed is the cause reported for a request that found its
// connection already failed; it was never sent.
var errConnFailed = errors.New("connection already failed")
