package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// proxyConn is one accepted connection and its dialled twin.
type proxyConn struct {
	// p is the owning proxy (fault state, stats, wait group).
	p *Proxy
	// client is the accepted side; server is the side dialled to Target.
	client, server net.Conn
	// done is closed by close; every goroutine of the connection selects
	// on it so that none outlives the connection.
	done chan struct{}
	// closeOnce makes close idempotent; it is called from many places.
	closeOnce sync.Once
	// tainted[i] is set once direction i discarded bytes under Drop: the
	// stream has a hole and must never forward again. Guarded by p.mu.
	tainted [2]bool
	// pipes are the two directions, indexed like Faults arrays. Immutable.
	pipes [2]*pipe
	// eofs counts directions whose writer passed an EOF on; at two the
	// connection is finished and closed.
	eofs atomic.Int32
}

// close tears the connection down and unregisters it. Idempotent; it
// reports whether this call did the closing, so that counters count
// connections rather than attempts.
// REQUIRES: p.mu not held.
func (c *proxyConn) close() (first bool) {
	c.closeOnce.Do(func() {
		first = true
		close(c.done)
		_ = c.client.Close()
		_ = c.server.Close()
		c.p.mu.Lock()
		delete(c.p.mu.conns, c)
		c.p.mu.Unlock()
	})
	return first
}

// wait blocks for d (forever if d < 0) or until the faults change. It
// returns false if the connection closed meanwhile.
func (c *proxyConn) wait(d time.Duration, changed <-chan struct{}) bool {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-changed:
		return true
	case <-c.done:
		return false
	}
}

// chunk is one read from the sender, held until the writer delivers it.
type chunk struct {
	// data is a private copy of the bytes read.
	data []byte
	// readyAt is when Delay/Jitter allow the chunk to be written.
	readyAt time.Time
	// eof marks the sender's half-close; it carries no data.
	eof bool
}

// pipe moves bytes in one direction of one connection through a bounded
// queue. The reader goroutine owns src and the push side; the writer
// goroutine owns dst, nextSend and the pop side.
//
// Rejected alternative: a single goroutine per direction doing read,
// sleep, write. It cannot keep reading while it waits out a delay, so a
// delayed link would also be a bandwidth-starved one.
type pipe struct {
	// c is the connection this pipe belongs to.
	c *proxyConn
	// dir is the direction's index (0 forward, 1 backward).
	dir int
	// src is read by the reader; dst is written by the writer.
	src, dst net.Conn
	// dataReady (capacity 1) wakes the writer after a push.
	dataReady chan struct{}
	// spaceFree (capacity 1) wakes the reader after a release.
	spaceFree chan struct{}
	// nextSend is the earliest time the next paced write may start.
	// Owned by the writer goroutine.
	nextSend time.Time

	// mu guards the queue and its byte count.
	mu struct {
		sync.Mutex
		// q holds chunks not yet taken by the writer.
		q []chunk
		// heldBytes counts bytes in q plus the bytes of the chunk the
		// writer is delivering.
		// Invariant: 0 <= heldBytes <= cfg.MaxBufferedBytes.
		heldBytes int
	}
}

// newPipe builds the pipe for one direction (Forward or Backward).
func newPipe(c *proxyConn, dir Direction, src, dst net.Conn) *pipe {
	return &pipe{
		c:         c,
		dir:       dirIndex(dir),
		src:       src,
		dst:       dst,
		dataReady: make(chan struct{}, 1),
		spaceFree: make(chan struct{}, 1),
	}
}

// readLoop reads from src while there is room in the queue.
func (pp *pipe) readLoop() {
	defer pp.c.p.wg.Done()
	cfg := &pp.c.p.cfg
	buf := make([]byte, min(cfg.ReadChunkBytes, cfg.MaxBufferedBytes))
	for {
		space, ok := pp.waitSpace()
		if !ok {
			return
		}
		n, err := pp.src.Read(buf[:min(len(buf), space)])
		if n > 0 && !pp.admit(buf[:n]) {
			return
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				pp.push(chunk{eof: true})
			} else {
				pp.c.close()
			}
			return
		}
	}
}

// waitSpace blocks until the queue has room and returns how much. It
// returns false if the connection closed.
func (pp *pipe) waitSpace() (int, bool) {
	limit := pp.c.p.cfg.MaxBufferedBytes
	for {
		pp.mu.Lock()
		space := limit - pp.mu.heldBytes
		pp.mu.Unlock()
		if space > 0 {
			return space, true
		}
		select {
		case <-pp.spaceFree:
		case <-pp.c.done:
			return 0, false
		}
	}
}

// admit applies the read-time faults to data: drop it, refuse it on a
// tainted stream, or queue a copy stamped with its delivery time. It
// returns false if the connection was closed.
func (pp *pipe) admit(data []byte) bool {
	p := pp.c.p
	p.mu.Lock()
	f := p.mu.faults[pp.dir]
	if f.Drop {
		pp.c.tainted[pp.dir] = true
		p.mu.Unlock()
		p.stats.dropped[pp.dir].Add(int64(len(data)))
		return true
	}
	if pp.c.tainted[pp.dir] {
		p.mu.Unlock()
		if pp.c.close() {
			p.stats.taintClosed.Add(1)
		}
		return false
	}
	ready := time.Now().Add(f.Delay)
	if f.Jitter > 0 {
		ready = ready.Add(time.Duration(p.mu.rng.Int64N(int64(f.Jitter) + 1)))
	}
	p.mu.Unlock()
	pp.push(chunk{data: bytes.Clone(data), readyAt: ready})
	return true
}

// push queues ch and wakes the writer.
func (pp *pipe) push(ch chunk) {
	pp.mu.Lock()
	pp.mu.q = append(pp.mu.q, ch)
	pp.mu.heldBytes += len(ch.data)
	if pp.mu.heldBytes > pp.c.p.cfg.MaxBufferedBytes {
		panic(fmt.Sprintf("chaos: invariant violated: heldBytes %d > MaxBufferedBytes %d",
			pp.mu.heldBytes, pp.c.p.cfg.MaxBufferedBytes))
	}
	pp.mu.Unlock()
	select {
	case pp.dataReady <- struct{}{}:
	default:
	}
}

// held returns the bytes the pipe holds now. Lock order: p.mu, then pp.mu.
func (pp *pipe) held() int {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.mu.heldBytes
}

// release returns n delivered or discarded bytes to the budget.
func (pp *pipe) release(n int) {
	pp.mu.Lock()
	pp.mu.heldBytes -= n
	if pp.mu.heldBytes < 0 {
		panic(fmt.Sprintf("chaos: invariant violated: heldBytes %d < 0", pp.mu.heldBytes))
	}
	pp.mu.Unlock()
	select {
	case pp.spaceFree <- struct{}{}:
	default:
	}
}

// next takes the oldest chunk, waiting for one. It returns false if the
// connection closed.
func (pp *pipe) next() (chunk, bool) {
	for {
		pp.mu.Lock()
		if len(pp.mu.q) > 0 {
			ch := pp.mu.q[0]
			pp.mu.q[0] = chunk{}
			pp.mu.q = pp.mu.q[1:]
			pp.mu.Unlock()
			return ch, true
		}
		pp.mu.Unlock()
		select {
		case <-pp.dataReady:
		case <-pp.c.done:
			return chunk{}, false
		}
	}
}

// writeLoop delivers chunks in order, applying the write-time faults.
func (pp *pipe) writeLoop() {
	defer pp.c.p.wg.Done()
	for {
		ch, ok := pp.next()
		if !ok {
			return
		}
		if !pp.deliver(ch) {
			return
		}
	}
}

// finish passes the sender's EOF on as a half-close, and closes the whole
// connection once both directions have ended.
func (pp *pipe) finish() {
	tc, ok := pp.dst.(*net.TCPConn)
	if !ok || tc.CloseWrite() != nil || pp.c.eofs.Add(1) == 2 {
		pp.c.close()
	}
}

// deliver writes one chunk, re-reading the faults before every write so
// that a change (Heal, a new Drop) applies to bytes already queued. An
// EOF chunk goes through the same faults: a stall or delay holds the
// sender's FIN like its bytes, and a drop loses it. It returns false when
// the writer is finished: the connection closed or the EOF was passed on.
func (pp *pipe) deliver(ch chunk) bool {
	p := pp.c.p
	data := ch.data
	for len(data) > 0 || ch.eof {
		p.mu.Lock()
		f := p.mu.faults[pp.dir]
		changed := p.mu.changed
		tainted := pp.c.tainted[pp.dir]
		if f.Drop {
			pp.c.tainted[pp.dir] = true
		}
		p.mu.Unlock()
		switch {
		case f.Drop:
			p.stats.dropped[pp.dir].Add(int64(len(data)))
			pp.release(len(data))
			return true
		case tainted:
			if pp.c.close() {
				p.stats.taintClosed.Add(1)
			}
			return false
		case f.Stall:
			if !pp.c.wait(-1, changed) {
				return false
			}
			continue
		}
		if f.Delay > 0 || f.Jitter > 0 {
			if d := time.Until(ch.readyAt); d > 0 {
				if !pp.c.wait(d, changed) {
					return false
				}
				continue
			}
		}
		if ch.eof {
			pp.finish()
			return false
		}
		n := len(data)
		bw := f.BandwidthBytesPerSec
		if bw > 0 {
			n = min(n, int(max(1, bw/paceSlicesPerSec)))
			if d := time.Until(pp.nextSend); d > 0 {
				if !pp.c.wait(d, changed) {
					return false
				}
				continue
			}
		}
		if _, err := pp.dst.Write(data[:n]); err != nil {
			pp.c.close()
			return false
		}
		p.stats.forwarded[pp.dir].Add(int64(n))
		if bw > 0 {
			base := time.Now()
			if pp.nextSend.After(base) {
				base = pp.nextSend
			}
			pp.nextSend = base.Add(time.Duration(n) * time.Second / time.Duration(bw))
		}
		data = data[n:]
		pp.release(n)
	}
	return true
}
