package client

import (
	"context"
	"fmt"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// route is the client's view of one group: where its requests go. The
// Client keeps one per group of the cached shard map, in Client.mu.routes.
type route struct {
	// target indexes Client.mu.addrs: where the group's next request goes.
	// It starts at the map's leader for the group (or the node that sent
	// the map) and moves on StatusNotLeader hints and failures.
	target int
	// leader is the address that last answered a linearizable request of
	// this group as its leader, or "" when not known.
	leader string
}

// routeRef names the route an attempt used, so that what the attempt
// learns updates that route and no other. groups is the map's group count
// when the attempt started: if the map has been replaced by one with
// another count since, the group number means something else and the
// update is dropped.
type routeRef struct {
	group  uint32
	groups uint32
}

// shardMapRefreshMin is the least time between two shard map fetches. The
// map's group count is static and leaders are also learned from hints, so
// a refresh is an optimisation; this keeps a cluster in an election, or
// unreachable, from being asked many times per round trip. It equals
// retryBackoffMax: about how long a new leader takes to be found anyway.
const shardMapRefreshMin = retryBackoffMax

// targetFor returns where the next attempt for key goes, and the route it
// used. With one group it costs what the single-group client did: no hash.
func (c *Client) targetFor(key []byte) (string, routeRef) {
	n := c.groups.Load()
	g := uint32(0)
	if n > 1 {
		g = wire.GroupOf(key, n)
	}
	c.mu.Lock()
	if uint32(len(c.mu.routes)) != n {
		// The map was replaced between the load and the lock.
		n = uint32(len(c.mu.routes))
		g = wire.GroupOf(key, n)
	}
	addr := c.mu.addrs[c.mu.routes[g].target]
	if c.mu.mapStale {
		c.maybeFetchLocked()
	}
	c.mu.Unlock()
	return addr, routeRef{group: g, groups: n}
}

// routeLocked returns the route rt refers to, or nil if the map changed
// shape since. REQUIRES: c.mu held.
func (c *Client) routeLocked(rt routeRef) *route {
	if uint32(len(c.mu.routes)) != rt.groups {
		return nil
	}
	return &c.mu.routes[rt.group]
}

// advance moves rt's group to the address after from, if the group still
// targets from: when many callers of a group fail on the same node at
// once, its target moves once, not once per caller. Other groups are left
// alone; StatusNotLeader from a node says nothing about its other groups.
func (c *Client) advance(rt routeRef, from string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.routeLocked(rt); r != nil {
		c.advanceLocked(r, from)
	}
}

// advanceAll moves every group that targets from to the next address: from
// could not be reached or did not answer, which is true of all its groups.
func (c *Client) advanceAll(from string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.mu.routes {
		c.advanceLocked(&c.mu.routes[i], from)
	}
}

func (c *Client) advanceLocked(r *route, from string) {
	if r.leader == from {
		r.leader = ""
	}
	if c.mu.addrs[r.target] == from {
		r.target = (r.target + 1) % len(c.mu.addrs)
	}
}

// redirect points rt's group at hint (learning the address if new) if the
// group still targets from. It returns false if hint cannot be learned
// (the address list is full), in which case the caller advances instead.
func (c *Client) redirect(rt routeRef, from, hint string) bool {
	c.mu.Lock()
	i, learned := c.learnLocked(hint)
	if i < 0 {
		c.mu.Unlock()
		return false
	}
	if r := c.routeLocked(rt); r != nil {
		if r.leader == from {
			r.leader = ""
		}
		if c.mu.addrs[r.target] == from {
			r.target = i
		}
	}
	c.mu.Unlock()
	if learned {
		c.cfg.Logger.Info("client: learned node address from leader hint", "addr", hint, "from", from, "group", rt.group)
	}
	return true
}

// confirm records that addr answered a linearizable request of rt's group
// as its leader.
func (c *Client) confirm(rt routeRef, addr string) {
	c.mu.Lock()
	r := c.routeLocked(rt)
	if r == nil || r.leader == addr {
		c.mu.Unlock()
		return
	}
	prev := r.leader
	r.leader = addr
	groups := len(c.mu.routes)
	c.mu.Unlock()
	if groups == 1 {
		c.cfg.Logger.Info("client: leader", "addr", addr, "previous", prev)
	} else {
		// One line per group at start-up would flood the log with many groups.
		c.cfg.Logger.Debug("client: group leader", "group", rt.group, "addr", addr, "previous", prev)
	}
}

// learnLocked returns the index of addr in c.mu.addrs, appending it if it is
// new and there is room (learned reports that), or -1 if the list is full.
// REQUIRES: c.mu held.
func (c *Client) learnLocked(addr string) (i int, learned bool) {
	if i := indexAddr(c.mu.addrs, addr); i >= 0 {
		return i, false
	}
	if len(c.mu.addrs) >= maxKnownAddrs {
		return -1, false
	}
	c.mu.addrs = append(c.mu.addrs, addr)
	return len(c.mu.addrs) - 1, true
}

func indexAddr(addrs []string, a string) int {
	for i, x := range addrs {
		if x == a {
			return i
		}
	}
	return -1
}

// markMapStale asks for the shard map to be fetched again soon (in the
// background: no caller waits for a refresh).
func (c *Client) markMapStale() {
	c.mu.Lock()
	c.mu.mapStale = true
	c.maybeFetchLocked()
	c.mu.Unlock()
}

// maybeFetchLocked starts a shard map fetch unless one is running, the
// Client is closed, or the last one started less than shardMapRefreshMin
// ago (then mapStale stays set and a later request starts it). REQUIRES:
// c.mu held.
func (c *Client) maybeFetchLocked() {
	if c.mu.closed || c.mu.fetching {
		return
	}
	now := time.Now()
	if c.mu.fetchStarted && now.Sub(c.mu.lastFetch) < shardMapRefreshMin {
		return
	}
	if !c.mu.fetchStarted {
		c.mu.gateTimer = time.AfterFunc(firstMapWaitMax, c.openGate)
	}
	c.mu.fetchStarted = true
	c.mu.fetching = true
	c.mu.mapStale = false
	c.mu.lastFetch = now
	c.wg.Add(1)
	go c.fetchShardMap()
}

// firstMapWaitMax bounds how long requests wait for the first shard map
// fetch before they go ahead routed as one group (correct, because nodes
// redirect by key, only slower). A healthy node answers within a few round
// trips, dial and TLS included; a node that accepted the connection and
// hangs would otherwise hold every first request for a whole
// RequestTimeout, and a caller with a shorter deadline would never send at
// all. It equals retryBackoffMax, the time a redirect costs anyway.
const firstMapWaitMax = retryBackoffMax

// awaitFirstMap starts the first shard map fetch if this is the first
// request, and waits until firstMap opens: when that fetch ends (with a
// map or without) or firstMapWaitMax after it started, whichever is first.
// The wait is counted from the fetch's start, not per caller, so once it
// is over no request waits again. Only the first fetch is waited for: it
// decides whether requests are routed per group from the start, and a
// client that has never fetched has nothing better to go on. Later
// refreshes run in the background.
func (c *Client) awaitFirstMap(ctx context.Context) error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if !c.mu.fetchStarted {
		c.maybeFetchLocked()
	}
	c.mu.Unlock()
	select {
	case <-c.firstMap:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("client: %w", ctx.Err())
	case <-c.closeCtx.Done():
		return ErrClosed
	}
}

// openGate opens firstMap; it is called when the first fetch ends and by
// the gate timer, and only the first call closes the channel.
func (c *Client) openGate() {
	c.gateOnce.Do(func() { close(c.firstMap) })
}

// fetchShardMap asks the known nodes, one after another, for the shard map
// and installs the first answer. It runs on its own goroutine (counted in
// c.wg) so that a caller that gives up does not cut it short.
func (c *Client) fetchShardMap() {
	defer c.wg.Done()
	m, from, ok := c.queryShardMap()
	c.installShardMap(m, from, ok)
}

// queryShardMap tries each known address once, starting with group 0's
// target, until one answers. A node that predates OpShardMap answers
// StatusBadRequest: that is a cluster of one group. ok is false if no node
// answered (the map is then marked stale and fetched again later).
func (c *Client) queryShardMap() (m wire.ShardMap, from string, ok bool) {
	c.mu.Lock()
	addrs := append([]string(nil), c.mu.addrs...)
	first := c.mu.routes[0].target
	c.mu.Unlock()
	cl := getCall(true)
	defer putCall(cl)
	for i := range addrs {
		addr := addrs[(first+i)%len(addrs)]
		req := wire.ClientRequest{Op: wire.OpShardMap}
		out, err := c.attempt(c.closeCtx, addr, &req, cl)
		switch out {
		case outResponse:
		case outFatal:
			return m, "", false // closed
		default:
			c.cfg.Logger.Debug("client: shard map fetch failed", "addr", addr, "err", err)
			continue
		}
		switch cl.status {
		case wire.StatusOK:
			if err := wire.DecodeShardMap(cl.value, &m); err != nil {
				// A newer map format, or a broken node. Hints still steer
				// every request to the right leader, only slower.
				c.cfg.Logger.Warn("client: unreadable shard map; routing as one group", "addr", addr, "err", err)
				return wire.ShardMap{Groups: 1, Leaders: []string{""}}, addr, true
			}
			return m, addr, true
		case wire.StatusBadRequest:
			return wire.ShardMap{Groups: 1, Leaders: []string{""}}, addr, true
		}
		c.cfg.Logger.Debug("client: shard map fetch refused", "addr", addr, "status", cl.status)
	}
	return m, "", false
}

// installShardMap replaces the routes with m's, if ok: a new group count
// starts every group afresh at its leader from m, or at from (which
// redirects); the same count keeps each route and moves it only where m
// names a leader. Either way it ends the fetch and, the first time,
// releases the callers waiting for it.
func (c *Client) installShardMap(m wire.ShardMap, from string, ok bool) {
	var learned []string
	c.mu.Lock()
	c.mu.fetching = false
	if ok {
		if uint32(len(c.mu.routes)) != m.Groups {
			def, _ := c.learnLocked(from)
			if def < 0 {
				def = c.mu.routes[0].target
			}
			c.mu.routes = make([]route, m.Groups)
			for i := range c.mu.routes {
				c.mu.routes[i].target = def
			}
			c.groups.Store(m.Groups)
		}
		for g, a := range m.Leaders {
			if a == "" {
				continue
			}
			i, isNew := c.learnLocked(a)
			if i < 0 {
				continue // address list full: this group follows hints
			}
			if isNew {
				learned = append(learned, a)
			}
			if r := &c.mu.routes[g]; r.target != i {
				r.target = i
				r.leader = ""
			}
		}
	} else {
		c.mu.mapStale = true
	}
	groups := len(c.mu.routes)
	first := !c.mu.firstFetchDone
	c.mu.firstFetchDone = true
	gate := c.mu.gateTimer
	c.mu.Unlock()
	for _, a := range learned {
		c.cfg.Logger.Info("client: learned node address from shard map", "addr", a, "from", from)
	}
	if first {
		c.cfg.Logger.Debug("client: shard map", "groups", groups, "from", from, "fetched", ok)
		gate.Stop()
		c.openGate()
	}
}
