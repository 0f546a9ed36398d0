package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// Client sends operations to a raftpipe cluster. It is safe for concurrent
// use; concurrent calls share connections and are pipelined.
type Client struct {
	// cfg is the validated configuration with defaults filled in.
	cfg Config
	// closeCtx is cancelled by Close; it aborts dials in progress.
	closeCtx context.Context
	// closeCancel cancels closeCtx.
	closeCancel context.CancelFunc
	// wg counts the dial, reader and writer goroutines, so Close can wait
	// for all of them.
	wg sync.WaitGroup
	// firstMap opens (is closed) when the first shard map fetch has ended,
	// with a map or without, or firstMapWaitMax after it started; until
	// then requests wait for it (see awaitFirstMap).
	firstMap chan struct{}
	// gateOnce closes firstMap once.
	gateOnce sync.Once
	// groups mirrors len(mu.routes), so that a request hashes its key
	// before taking mu. Written only with mu held.
	groups atomic.Uint32

	// mu guards the fields in it; never held across I/O or while waiting.
	mu struct {
		sync.Mutex
		// closed is set by Close; no connection is created after it.
		closed bool
		// addrs are the known node addresses: Config.Addrs, then leader
		// hints learned from nodes. Invariant: non-empty, no duplicates, at
		// most maxKnownAddrs.
		addrs []string
		// routes has one entry per group of the cached shard map: where
		// that group's requests go. Invariant: 1 <= len(routes) <=
		// wire.MaxShardGroups (one until a map with more groups arrives);
		// every target indexes addrs.
		routes []route
		// fetchStarted is set when the first shard map fetch starts.
		fetchStarted bool
		// firstFetchDone is set when the first fetch has ended.
		firstFetchDone bool
		// gateTimer opens firstMap if the first fetch takes longer than
		// firstMapWaitMax. Set when the first fetch starts.
		gateTimer *time.Timer
		// fetching is set while a fetch goroutine runs; there is at most one.
		fetching bool
		// mapStale asks for a fetch at the next request: set when a call
		// met several StatusNotLeader answers, a connection failed, or the
		// last fetch got no answer.
		mapStale bool
		// connLost is set when a connection fails (not by Close), and
		// cleared by the next successful handshake, which then marks the
		// map stale: a reconnect.
		connLost bool
		// lastFetch is when the last fetch started, for
		// shardMapRefreshMin.
		lastFetch time.Time
		// conns holds the live (or dialling) connection per address.
		// Bounded by len(addrs).
		conns map[string]*conn
	}
}

// New returns a Client for the cluster. It does not connect: the first
// request dials. It fails only on an invalid Config.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, firstMap: make(chan struct{})}
	c.closeCtx, c.closeCancel = context.WithCancel(context.Background())
	c.mu.routes = []route{{}}
	c.groups.Store(1)
	for _, a := range cfg.Addrs {
		if indexAddr(c.mu.addrs, a) < 0 {
			c.mu.addrs = append(c.mu.addrs, a)
		}
	}
	c.mu.conns = make(map[string]*conn)
	return c, nil
}

// Put sets key to value and returns the log index at which it applied.
// On ErrUnknownOutcome the write may or may not have applied.
func (c *Client) Put(ctx context.Context, key, value []byte) (index uint64, err error) {
	req := wire.ClientRequest{Op: wire.OpPut, Key: key, Value: value}
	cl := getCall(false)
	defer putCall(cl)
	if err := c.run(ctx, &req, cl); err != nil {
		return 0, err
	}
	if err := statusError(cl, wire.StatusOK); err != nil {
		return 0, err
	}
	return cl.index, nil
}

// Get reads key linearizably: the leader confirms its leadership (ReadIndex)
// before answering. The returned value is the caller's to keep.
func (c *Client) Get(ctx context.Context, key []byte) (value []byte, found bool, err error) {
	return c.get(ctx, key, 0)
}

// GetStale reads key from the state machine of the node it reaches, without
// a leadership check: fast, but it may miss recent writes.
func (c *Client) GetStale(ctx context.Context, key []byte) ([]byte, bool, error) {
	return c.get(ctx, key, wire.FlagStale)
}

func (c *Client) get(ctx context.Context, key []byte, flags wire.ReqFlags) ([]byte, bool, error) {
	req := wire.ClientRequest{Op: wire.OpGet, Flags: flags, Key: key}
	cl := getCall(true)
	defer putCall(cl)
	if err := c.run(ctx, &req, cl); err != nil {
		return nil, false, err
	}
	if cl.status == wire.StatusNotFound {
		return nil, false, nil
	}
	if err := statusError(cl, wire.StatusOK); err != nil {
		return nil, false, err
	}
	return cl.value, true, nil
}

// Delete removes key; deleting a missing key succeeds. On
// ErrUnknownOutcome the delete may or may not have applied.
func (c *Client) Delete(ctx context.Context, key []byte) error {
	req := wire.ClientRequest{Op: wire.OpDelete, Key: key}
	cl := getCall(false)
	defer putCall(cl)
	if err := c.run(ctx, &req, cl); err != nil {
		return err
	}
	return statusError(cl, wire.StatusOK, wire.StatusNotFound)
}

// CAS sets key to value if its current value equals expect (or, with
// expectAbsent, if key does not exist). A comparison that fails is not an
// error: swapped is false and current is the value found (nil if the key
// does not exist). On ErrUnknownOutcome the swap may or may not have
// applied.
func (c *Client) CAS(ctx context.Context, key, expect, value []byte, expectAbsent bool) (swapped bool, current []byte, err error) {
	req := wire.ClientRequest{Op: wire.OpCAS, Key: key, Expect: expect, Value: value}
	if expectAbsent {
		req.Flags |= wire.FlagExpectAbsent
	}
	cl := getCall(true)
	defer putCall(cl)
	if err := c.run(ctx, &req, cl); err != nil {
		return false, nil, err
	}
	switch cl.status {
	case wire.StatusOK:
		return true, nil, nil
	case wire.StatusCASFailed:
		return false, cl.value, nil
	case wire.StatusNotFound:
		return false, nil, nil
	}
	return false, nil, statusError(cl)
}

// Noop replicates an entry that changes nothing through group 0: a round
// trip through the log, for benchmarks and for waiting until a leader can
// commit.
func (c *Client) Noop(ctx context.Context) error {
	return c.noop(ctx, nil)
}

// NoopKey is Noop through the group that owns key, so that a benchmark can
// spread no-ops over groups. The key only routes the request; nothing is
// stored. Against a cluster of one group (including nodes that predate
// shard maps, which refuse a no-op with a key) the key is not sent.
func (c *Client) NoopKey(ctx context.Context, key []byte) error {
	select {
	case <-c.firstMap:
	default:
		if err := c.awaitFirstMap(ctx); err != nil {
			return err
		}
	}
	if c.groups.Load() <= 1 {
		key = nil
	}
	return c.noop(ctx, key)
}

func (c *Client) noop(ctx context.Context, key []byte) error {
	req := wire.ClientRequest{Op: wire.OpNoop, Key: key}
	cl := getCall(false)
	defer putCall(cl)
	if err := c.run(ctx, &req, cl); err != nil {
		return err
	}
	return statusError(cl, wire.StatusOK)
}

// Do sends a raw request with the same routing, leader discovery and retry
// rules as the typed methods (OpGet, OpNoop and OpShardMap count as
// idempotent, every other Op as a write). It assigns req.ID, so req must not be shared by concurrent
// calls. When an answer arrives it is returned, together with an error for
// StatusBadRequest, StatusError and unexpected statuses; StatusOK,
// StatusNotFound and StatusCASFailed are not errors. The response's Value
// is the caller's to keep.
func (c *Client) Do(ctx context.Context, req *wire.ClientRequest) (*wire.ClientResponse, error) {
	cl := getCall(true)
	defer putCall(cl)
	if err := c.run(ctx, req, cl); err != nil {
		return nil, err
	}
	resp := &wire.ClientResponse{
		ID:         req.ID,
		Status:     cl.status,
		Value:      cl.value,
		LeaderHint: cl.hint,
		Index:      cl.index,
		Err:        cl.errMsg,
	}
	return resp, statusError(cl, wire.StatusOK, wire.StatusNotFound, wire.StatusCASFailed)
}

// Leader returns the address of the node that last answered a linearizable
// request of group 0 as its leader, or "" if none has (yet, or since it
// stopped being leader). With one group that is the cluster's leader; with
// more, see ShardMap.
func (c *Client) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.routes[0].leader
}

// ShardMap returns the client's current routing, as a copy: the number of
// groups it knows of (1 until a node has sent a map with more, and against
// nodes that predate shard maps) and, per group, the address that group's
// next request goes to. That address is the client's best guess (from the
// map, a StatusNotLeader hint, or the last node that answered), not a
// confirmed leader. A tool that wants the map before any request can call
// Noop first.
func (c *Client) ShardMap() wire.ShardMap {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := wire.ShardMap{Groups: uint32(len(c.mu.routes)), Leaders: make([]string, len(c.mu.routes))}
	for g, r := range c.mu.routes {
		m.Leaders[g] = c.mu.addrs[r.target]
	}
	return m
}

// Close closes every connection, fails outstanding calls with ErrClosed
// (writes already sent get ErrUnknownOutcome wrapping ErrClosed), and
// returns after every goroutine the Client started has exited. Calls made
// after Close return ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	conns := make([]*conn, 0, len(c.mu.conns))
	for _, cn := range c.mu.conns {
		conns = append(conns, cn)
	}
	c.mu.Unlock()
	c.closeCancel()
	for _, cn := range conns {
		cn.fail(ErrClosed)
	}
	c.wg.Wait()
	return nil
}

// statusError maps a final status to nil (if it is one of ok) or an error.
func statusError(cl *call, ok ...wire.Status) error {
	for _, s := range ok {
		if cl.status == s {
			return nil
		}
	}
	switch cl.status {
	case wire.StatusBadRequest:
		return fmt.Errorf("%w: %s", ErrBadRequest, cl.errMsg)
	case wire.StatusError:
		return fmt.Errorf("%w: %s", ErrServer, cl.errMsg)
	}
	return fmt.Errorf("%w: unexpected status %d for this operation", ErrProtocol, cl.status)
}
