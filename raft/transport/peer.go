package transport

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// PeerStats are one outbound link's counters.
type PeerStats struct {
	// Addr is the address the link dials.
	Addr string
	// Connected is true while the link has a handshaken connection; Sends
	// made while it is false are dropped.
	Connected bool
	// Sent counts messages written to the connection (accepted by the kernel;
	// not necessarily received).
	Sent uint64
	// SentBytes counts encoded bytes written, frame headers included.
	SentBytes uint64
	// Dropped counts messages discarded: queue full, not connected, lost with
	// a failed write, or unencodable (too large).
	Dropped uint64
	// Reconnects counts connections established after the first.
	Reconnects uint64
	// DialFailures counts failed connection attempts (connect, TLS or
	// handshake).
	DialFailures uint64
	// QueueLen is the number of messages waiting for the writer.
	QueueLen int
}

// peer is one outbound link: a bounded queue that Send appends to and one
// writer goroutine (run) that owns the connection, drains the queue in
// batches and redials after failures.
type peer struct {
	// t is the owning transport (config, logger, wait group).
	t *Transport
	// id is the remote node.
	id uint64
	// ctx is cancelled by stop; it aborts dials, backoff sleeps and the
	// writer's wait for work.
	ctx context.Context
	// cancel cancels ctx (idempotent).
	cancel context.CancelFunc
	// done is closed when run has returned and its connection is closed.
	done chan struct{}
	// wake has room for one token; enqueue puts one there when the queue goes
	// from empty to non-empty, so the writer sleeps only on an empty queue.
	wake chan struct{}
	// redial has room for one token; setAddr puts one there to cut a backoff
	// sleep short.
	redial chan struct{}
	// connected mirrors whether run holds a handshaken connection. Send drops
	// while it is false: queuing for a dead link would only hold memory and
	// deliver stale messages later.
	connected atomic.Bool

	// stats back the PeerStats fields of the same names; atomics because
	// run updates them while Send (drops) and PeerStats run concurrently.
	stats struct {
		sent, sentBytes, dropped, reconnects, dialFailures atomic.Uint64
	}

	// mu guards the fields in it; held only for short, non-blocking work.
	mu struct {
		sync.Mutex
		// pending is the queue. Invariant: len(pending) <= QueueDepthMsgs.
		// The writer swaps it with its drained batch slice, so one lock
		// hand-off moves a whole batch.
		pending []wire.Message
		// addr is the address to dial next.
		addr string
		// conn is the current connection, or nil; setAddr and stop close it
		// to interrupt a write.
		conn interface{ Close() error }
	}
}

// newPeer returns a stopped-until-run link to id at addr.
func newPeer(t *Transport, id uint64, addr string) *peer {
	p := &peer{
		t:      t,
		id:     id,
		done:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
		redial: make(chan struct{}, 1),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.mu.addr = addr
	return p
}

// enqueue appends a copy of *m to the queue, or drops it (see Send).
func (p *peer) enqueue(m *wire.Message) bool {
	if !p.connected.Load() {
		p.stats.dropped.Add(1)
		return false
	}
	p.mu.Lock()
	n := len(p.mu.pending)
	if n >= p.t.cfg.QueueDepthMsgs {
		p.mu.Unlock()
		p.stats.dropped.Add(1)
		return false
	}
	p.mu.pending = append(p.mu.pending, *m)
	p.mu.Unlock()
	if n == 0 {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// setAddr changes the address to dial; if it differs, the current connection
// is closed so that the writer redials.
func (p *peer) setAddr(addr string) {
	p.mu.Lock()
	if p.mu.addr == addr {
		p.mu.Unlock()
		return
	}
	p.mu.addr = addr
	c := p.mu.conn
	p.mu.Unlock()
	p.t.cfg.Logger.Info("transport: peer address changed", "peer", p.id, "addr", addr)
	if c != nil {
		c.Close()
	}
	select {
	case p.redial <- struct{}{}:
	default:
	}
}

// stop makes run return (soon) by cancelling its context and closing its
// connection. Idempotent.
func (p *peer) stop() {
	p.cancel()
	p.mu.Lock()
	c := p.mu.conn
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// snapshotStats copies the counters.
func (p *peer) snapshotStats() PeerStats {
	p.mu.Lock()
	addr, qlen := p.mu.addr, len(p.mu.pending)
	p.mu.Unlock()
	return PeerStats{
		Addr:         addr,
		Connected:    p.connected.Load(),
		Sent:         p.stats.sent.Load(),
		SentBytes:    p.stats.sentBytes.Load(),
		Dropped:      p.stats.dropped.Load(),
		Reconnects:   p.stats.reconnects.Load(),
		DialFailures: p.stats.dialFailures.Load(),
		QueueLen:     qlen,
	}
}

// backoff returns the delay before reconnect attempt n (n >= 1): BackoffMin
// doubled n-1 times, capped at BackoffMax, then jittered uniformly into
// [d/2, d) so that peers restarting together do not redial in lockstep.
func (p *peer) backoff(n int) time.Duration {
	d := p.t.cfg.BackoffMin
	for i := 1; i < n && d < p.t.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.t.cfg.BackoffMax)
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits d, or less if the address changes; it returns false if the
// link was stopped meanwhile.
func (p *peer) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-p.redial:
		return true
	case <-timer.C:
		return true
	}
}

// run is the link's writer goroutine: dial, handshake, write batches until
// the connection fails, back off, repeat; until stop.
func (p *peer) run() {
	defer p.t.wg.Done()
	defer close(p.done)
	log := p.t.cfg.Logger.With("peer", p.id)
	failures := 0
	everConnected := false
	for p.ctx.Err() == nil {
		p.mu.Lock()
		addr := p.mu.addr
		p.mu.Unlock()
		l, err := p.t.dial(p.ctx, addr, p.id, wire.ConnPeer)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			failures++
			p.stats.dialFailures.Add(1)
			lvl := log.Debug
			if failures == 1 {
				lvl = log.Warn
			}
			lvl("transport: dial failed", "addr", addr, "attempt", failures, "err", err)
			if !p.sleep(p.backoff(failures)) {
				return
			}
			continue
		}
		if everConnected {
			p.stats.reconnects.Add(1)
		}
		everConnected = true
		failures = 0
		log.Info("transport: connected", "addr", addr, "compression", l.opts.Compression.String())
		err = p.serve(l, addr)
		if p.ctx.Err() != nil {
			return
		}
		log.Warn("transport: connection lost", "addr", addr, "err", err)
		if f := p.t.cfg.PeerDown; f != nil {
			f(p.id)
		}
		failures++
		if !p.sleep(p.backoff(failures)) {
			return
		}
	}
}

// serve writes queued messages to l (dialed at addr) until a write fails,
// the remote closes the connection, or the link is stopped. It returns why
// it stopped.
func (p *peer) serve(l *link, addr string) error {
	p.mu.Lock()
	if p.ctx.Err() != nil {
		p.mu.Unlock()
		l.conn.Close()
		return p.ctx.Err()
	}
	if p.mu.addr != addr {
		// AddPeer moved the peer while we were dialing the old address.
		p.mu.Unlock()
		l.conn.Close()
		return fmt.Errorf("transport: peer moved from %s to a new address while dialing", addr)
	}
	p.mu.conn = l.conn
	p.mu.Unlock()

	// The remote never sends on our outbound connection after its handshake;
	// this goroutine reads only to learn at once when the connection dies.
	// brokenErr is written before broken is closed.
	broken := make(chan struct{})
	var brokenErr error
	p.t.wg.Add(1)
	go func() {
		defer p.t.wg.Done()
		_, err := l.r.next()
		if err == nil {
			err = fmt.Errorf("%w: remote sent a frame on an outbound-only connection", ErrHandshake)
		}
		l.conn.Close()
		brokenErr = err
		close(broken)
	}()

	p.connected.Store(true)
	err := p.writeLoop(l, broken)
	p.connected.Store(false)

	p.mu.Lock()
	p.mu.conn = nil
	dropped := len(p.mu.pending)
	clear(p.mu.pending)
	p.mu.pending = p.mu.pending[:0]
	p.mu.Unlock()
	p.stats.dropped.Add(uint64(dropped))
	l.conn.Close()
	<-broken
	if err == nil {
		err = brokenErr
	}
	return err
}

// writeLoop is the hot path: swap out the whole queue, encode it into one
// buffer, write it with as few syscalls as the buffer allows, repeat. It
// never waits for responses (pipelining); it sleeps only on an empty queue.
func (p *peer) writeLoop(l *link, broken <-chan struct{}) error {
	var batch []wire.Message
	var buf []byte
	timeout := p.t.cfg.WriteTimeout
	// The write deadline is pushed forward only when less than half of
	// WriteTimeout is left, not on every flush: resetting it re-arms a
	// runtime timer, which showed in profiles. So a stalled write fails
	// after between WriteTimeout/2 and WriteTimeout.
	var deadline time.Time
	flush := func(n int) error {
		if len(buf) == 0 {
			return nil
		}
		if now := time.Now(); deadline.Sub(now) < timeout/2 {
			deadline = now.Add(timeout)
			if err := l.conn.SetWriteDeadline(deadline); err != nil {
				return err
			}
		}
		w, err := l.conn.Write(buf)
		p.stats.sentBytes.Add(uint64(w))
		if err != nil {
			p.stats.dropped.Add(uint64(n))
			return err
		}
		p.stats.sent.Add(uint64(n))
		buf = buf[:0]
		return nil
	}
	for {
		p.mu.Lock()
		batch, p.mu.pending = p.mu.pending, batch[:0]
		p.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-p.wake:
				continue
			case <-broken:
				return nil // serve reports the reader's error
			case <-p.ctx.Done():
				return p.ctx.Err()
			}
		}
		inBuf := 0
		for i := range batch {
			var err error
			before := len(buf)
			buf, err = wire.AppendMessage(buf, &batch[i], &l.opts)
			if err != nil {
				buf = buf[:before]
				p.stats.dropped.Add(1)
				p.t.cfg.Logger.Warn("transport: dropping unencodable message", "peer", p.id, "type", batch[i].Type, "err", err)
				continue
			}
			inBuf++
			if len(buf) >= flushThresholdBytes {
				if err := flush(inBuf); err != nil {
					p.stats.dropped.Add(uint64(len(batch) - i - 1))
					clear(batch)
					return err
				}
				inBuf = 0
			}
		}
		err := flush(inBuf)
		clear(batch) // release the references to the caller's entry data
		if err != nil {
			return err
		}
		if cap(buf) > maxRetainedBufBytes {
			buf = nil
		}
	}
}
