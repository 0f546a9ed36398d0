package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// outcome classifies how one attempt ended, which decides whether the
// operation may be retried (see the package doc).
type outcome uint8

const (
	// outResponse: the node answered; the response is in the call.
	outResponse outcome = iota
	// outNotSent: the request certainly did not reach a node (dial failed,
	// the connection failed before the writer took it, or time ran out
	// before it was enqueued). Any operation may be retried.
	outNotSent
	// outMaybeSent: the request may have reached the node but no answer
	// came (connection lost after send, timeout, context ended, Close).
	// Only idempotent operations may be retried.
	outMaybeSent
	// outFatal: stop and return the error (context ended or Close before
	// anything was sent, or the request cannot be encoded).
	outFatal
)

// isIdempotent reports whether req may be sent twice with the same effect
// as once, so that an attempt with an unknown outcome can be retried.
func isIdempotent(req *wire.ClientRequest) bool {
	return req.Op == wire.OpGet || req.Op == wire.OpNoop || req.Op == wire.OpShardMap
}

// run executes req with leader discovery and retries, leaving the final
// response in cl. It returns nil when a response with a final status
// arrived (anything but NotLeader, Busy, and Unknown for reads).
func (c *Client) run(ctx context.Context, req *wire.ClientRequest, cl *call) error {
	select {
	case <-c.firstMap: // fast path: the shard map was fetched (or given up on) once
	default:
		if err := c.awaitFirstMap(ctx); err != nil {
			return err
		}
	}
	idempotent := isIdempotent(req)
	attempts := 1 + c.cfg.MaxRetries
	var lastErr error
	backoff := time.Duration(0) // pause before the next attempt
	failures := 0               // attempts that asked for a backoff, for doubling
	redirects := 0              // hinted redirects followed in this call
	notLeader := 0              // StatusNotLeader answers in this call
	for attempt := 0; attempt < attempts; attempt++ {
		if backoff > 0 {
			if err := c.sleep(ctx, cl, backoff); err != nil {
				return err
			}
			backoff = 0
		}
		addr, rt := c.targetFor(req.Key)
		out, err := c.attempt(ctx, addr, req, cl)
		switch out {
		case outResponse:
			switch cl.status {
			case wire.StatusNotLeader:
				lastErr = fmt.Errorf("%w: %s is not the leader", ErrNotLeader, addr)
				notLeader++
				if notLeader == 2 {
					// Leaders moved under this call: the cached map may be
					// stale for more groups than this one.
					c.markMapStale()
				}
				if cl.hint != "" && cl.hint != addr && c.redirect(rt, addr, cl.hint) {
					redirects++
					if redirects == 1 {
						continue // the hint names the group's leader: go there at once
					}
					// Hints that chase each other mean an election is in
					// progress: back off below rather than burn attempts.
				} else {
					c.advance(rt, addr)
				}
			case wire.StatusBusy:
				lastErr = fmt.Errorf("%w: %s", ErrBusy, addr)
			case wire.StatusUnknown:
				if !idempotent {
					return fmt.Errorf("%w: %s reported the outcome unknown", ErrUnknownOutcome, addr)
				}
				lastErr = fmt.Errorf("%w: %s reported the outcome unknown", ErrUnavailable, addr)
			default:
				if !(req.Op == wire.OpGet && req.Flags&wire.FlagStale != 0) {
					c.confirm(rt, addr)
				}
				return nil
			}
		case outNotSent:
			lastErr = unavailable(err)
			if !errors.Is(err, ErrTimeout) {
				c.advanceAll(addr)
			}
		case outMaybeSent:
			if !idempotent {
				return fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
			}
			if c.isClosed() {
				return ErrClosed
			}
			if ctxErr := ctx.Err(); ctxErr != nil {
				return fmt.Errorf("client: %w", ctxErr)
			}
			lastErr = unavailable(err)
			// The node may be partitioned with its socket still open; try
			// another, which redirects back if this one is still leader.
			c.advanceAll(addr)
		case outFatal:
			return err
		}
		if !errors.Is(lastErr, ErrTimeout) {
			// A timeout already waited a full attempt; anything else
			// failed fast and backs off so an election can finish.
			backoff = min(retryBackoffMin<<min(failures, 16), retryBackoffMax)
			failures++
		}
	}
	return fmt.Errorf("client: gave up after %d attempts: %w", attempts, lastErr)
}

// unavailable wraps a connection-level error in ErrUnavailable, unless it is
// already a timeout (which callers test for with ErrTimeout).
func unavailable(err error) error {
	if errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// attempt sends req once to addr and waits for the answer, the connection's
// failure, the attempt timeout, the context, or Close.
func (c *Client) attempt(ctx context.Context, addr string, req *wire.ClientRequest, cl *call) (outcome, error) {
	var timeout <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		cl.timer.Reset(c.cfg.RequestTimeout)
		defer cl.timer.Stop()
		timeout = cl.timer.C
	}
	cn, out, err := c.connFor(ctx, addr, timeout)
	if cn == nil {
		return out, err
	}

	// Take an in-flight slot; give it back when the attempt ends, whatever
	// the outcome (the pending entry is gone by then).
	select {
	case cn.slots <- struct{}{}: // fast path: a free slot, no selectgo
	default:
		if out, err := c.waitSlot(ctx, cn, addr, timeout); err != nil {
			return out, err
		}
	}
	defer func() { <-cn.slots }()
	if err := ctx.Err(); err != nil {
		// select picks among ready cases at random; never send a request
		// for a caller that has already given up.
		return outFatal, fmt.Errorf("client: %w", err)
	}

	if err := cn.enqueue(req, cl); err != nil {
		var ce *connError
		if errors.As(err, &ce) {
			return outNotSent, err
		}
		return outFatal, err
	}

	var cause error
	select {
	case err := <-cl.done:
		return doneOutcome(err)
	case <-timeout:
		cause = fmt.Errorf("%w: no answer from %s within %v", ErrTimeout, addr, c.cfg.RequestTimeout)
	case <-ctx.Done():
		cause = fmt.Errorf("client: %w", ctx.Err())
	}
	if !cn.withdraw(cl) {
		// The reader or fail took the call first and is signalling it.
		return doneOutcome(<-cl.done)
	}
	return outMaybeSent, cause
}

// doneOutcome classifies what a pending call was signalled with.
func doneOutcome(err error) (outcome, error) {
	if err == nil {
		return outResponse, nil
	}
	var ce *connError
	if errors.As(err, &ce) && !ce.sent {
		return outNotSent, err
	}
	return outMaybeSent, err
}

// connFor returns the connection to addr, dialling it if there is none and
// waiting until its handshake is done. On failure it returns a nil conn and
// the outcome to report.
func (c *Client) connFor(ctx context.Context, addr string, timeout <-chan time.Time) (*conn, outcome, error) {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil, outFatal, ErrClosed
	}
	cn := c.mu.conns[addr]
	if cn == nil {
		cn = newConn(c, addr)
		c.mu.conns[addr] = cn
		c.wg.Add(1)
		go cn.dial()
	}
	c.mu.Unlock()

	select {
	case <-cn.ready: // fast path: already connected, no selectgo
	default:
		if out, err := c.waitReady(ctx, cn, addr, timeout); err != nil {
			return nil, out, err
		}
	}
	if cn.dialErr != nil {
		if c.isClosed() {
			return nil, outFatal, ErrClosed
		}
		return nil, outNotSent, cn.dialErr
	}
	return cn, 0, nil
}

// sleep waits d before a retry, unless ctx ends or the Client closes.
func (c *Client) sleep(ctx context.Context, cl *call, d time.Duration) error {
	cl.timer.Reset(d)
	defer cl.timer.Stop()
	select {
	case <-cl.timer.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("client: %w", ctx.Err())
	case <-c.closeCtx.Done():
		return ErrClosed
	}
}

// forget removes cn from the connection map if it is still there, so the
// next request to its address dials afresh.
func (c *Client) forget(cn *conn) {
	c.mu.Lock()
	if c.mu.conns[cn.addr] == cn {
		delete(c.mu.conns, cn.addr)
	}
	if !c.mu.closed {
		c.mu.connLost = true
	}
	c.mu.Unlock()
}

// connUp is told that a connection's handshake succeeded. If a connection
// was lost before it, this is a reconnect: the node may have restarted or
// the leaders moved, so the shard map is refreshed. (Refreshing on the loss
// itself was the simpler rule; a node that stays down would then cause a
// fetch every shardMapRefreshMin for as long as it is down.)
func (c *Client) connUp() {
	c.mu.Lock()
	if c.mu.connLost {
		c.mu.connLost = false
		c.mu.mapStale = true
		c.maybeFetchLocked()
	}
	c.mu.Unlock()
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.closed
}

// waitSlot blocks until cn has a free in-flight slot and takes it.
func (c *Client) waitSlot(ctx context.Context, cn *conn, addr string, timeout <-chan time.Time) (outcome, error) {
	select {
	case cn.slots <- struct{}{}:
		return 0, nil
	case <-cn.dead:
		return outNotSent, &connError{err: errConnFailed}
	case <-timeout:
		return outNotSent, fmt.Errorf("%w: waiting for an in-flight slot on %s", ErrTimeout, addr)
	case <-ctx.Done():
		return outFatal, fmt.Errorf("client: %w", ctx.Err())
	}
}

// waitReady blocks until cn's dial ends (it may have failed: check dialErr).
func (c *Client) waitReady(ctx context.Context, cn *conn, addr string, timeout <-chan time.Time) (outcome, error) {
	select {
	case <-cn.ready:
		return 0, nil
	case <-timeout:
		return outNotSent, fmt.Errorf("%w: connecting to %s", ErrTimeout, addr)
	case <-ctx.Done():
		return outFatal, fmt.Errorf("client: %w", ctx.Err())
	case <-c.closeCtx.Done():
		return outFatal, ErrClosed
	}
}
