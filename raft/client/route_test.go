package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/wire"
)

// keyIn returns the n-th key (n >= 0) that GroupOf puts in group g.
func keyIn(g, groups uint32, n int) []byte {
	for i := 0; ; i++ {
		k := []byte(fmt.Sprintf("key-%d", i))
		if wire.GroupOf(k, groups) == g {
			if n == 0 {
				return k
			}
			n--
		}
	}
}

// notLeaderTotal sums the NotLeader answers the nodes gave for groups they
// do not lead.
func notLeaderTotal(srvs []*fakeServer) int64 {
	var n int64
	for _, s := range srvs {
		n += s.notLeaderSent.Load()
	}
	return n
}

func shardMapTotal(srvs []*fakeServer) int64 {
	var n int64
	for _, s := range srvs {
		n += s.shardMapReqs.Load()
	}
	return n
}

// awaitMap makes c fetch the map and waits until it is installed, so that
// a test can count redirects from then on. (The first request waits for
// the map only up to firstMapWaitMax, which a loaded machine can exceed.)
func awaitMap(t *testing.T, c *Client, groups uint32) {
	t.Helper()
	if err := c.Noop(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.Wait(t, "the shard map", func() bool { return c.ShardMap().Groups == groups })
}

// TestKeysGoStraightToTheirGroupLeader: once the map is cached, every key
// goes to its group's leader with no redirect, and each node serves only
// its groups.
func TestKeysGoStraightToTheirGroupLeader(t *testing.T) {
	const groups = 8
	srvs, sh := newFakeCluster(t, 3, groups)
	c := newTestClient(t, Config{Addrs: []string{srvs[1].addr}}) // one address is enough
	ctx := context.Background()
	awaitMap(t, c, groups)
	for i := range 200 {
		key := fmt.Appendf(nil, "user/%04d", i)
		if _, err := c.Put(ctx, key, key); err != nil {
			t.Fatal(err)
		}
		if _, ok := sh.leader(wire.GroupOf(key, groups)).value(string(key)); !ok {
			t.Fatalf("key %q is not at its group's leader", key)
		}
	}
	if n := notLeaderTotal(srvs); n != 0 {
		t.Fatalf("%d NotLeader answers; every request should have gone to its group's leader", n)
	}
	if n := shardMapTotal(srvs); n != 1 {
		t.Fatalf("shard map fetched %d times, want once", n)
	}
	m := c.ShardMap()
	if m.Groups != groups {
		t.Fatalf("ShardMap() has %d groups, want %d", m.Groups, groups)
	}
	for g, a := range m.Leaders {
		if want := sh.leader(uint32(g)).addr; a != want {
			t.Errorf("ShardMap() group %d -> %s, want %s", g, a, want)
		}
	}
	m.Leaders[0] = "changed" // a copy
	if c.ShardMap().Leaders[0] == "changed" {
		t.Fatal("ShardMap() returned the client's own slice")
	}
}

// TestConcurrentFirstUse: many callers start at once; one fetch serves
// them all and none is sent to the wrong node.
func TestConcurrentFirstUse(t *testing.T) {
	const groups, callers = 16, 32
	srvs, sh := newFakeCluster(t, 3, groups)
	c := newTestClient(t, Config{Addrs: []string{srvs[0].addr, srvs[1].addr, srvs[2].addr}})
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Appendf(nil, "caller-%d", i)
			if _, err := c.Put(context.Background(), key, key); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := shardMapTotal(srvs); n != 1 {
		t.Fatalf("shard map fetched %d times, want once", n)
	}
	// (A caller may have gone ahead after firstMapWaitMax on a loaded
	// machine, so redirects are not counted here.)
	for i := range callers {
		key := fmt.Sprintf("caller-%d", i)
		if _, ok := sh.leader(wire.GroupOf([]byte(key), groups)).value(key); !ok {
			t.Fatalf("key %q is not at its group's leader", key)
		}
	}
}

// TestHungNodeDoesNotHoldFirstRequest: a node that accepts connections and
// never answers cannot hold the first request for longer than
// firstMapWaitMax; the request is sent (and, as a write with no answer,
// reported as an unknown outcome).
func TestHungNodeDoesNotHoldFirstRequest(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	s.setHold(true)
	s.holdShardMap.Store(true)
	c := newTestClient(t, Config{Addrs: []string{s.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*firstMapWaitMax)
	defer cancel()
	_, err := c.Put(ctx, []byte("k"), []byte("v"))
	if !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want an unknown outcome: the write should have been sent", err)
	}
	if n := s.received.Load(); n != 1 {
		t.Fatalf("server received %d requests, want 1", n)
	}
	select {
	case <-c.firstMap: // later requests do not wait again
	default:
		t.Fatal("the first-map wait is still closed after firstMapWaitMax")
	}
}

// TestPerGroupRedirects: a map that names no leaders starts every group at
// the node that sent it; each group then follows its own hint once.
func TestPerGroupRedirects(t *testing.T) {
	const groups = 6
	srvs, sh := newFakeCluster(t, 3, groups)
	sh.mu.Lock()
	sh.mu.blankMap = true
	sh.mu.Unlock()
	c := newTestClient(t, Config{Addrs: []string{srvs[0].addr}})
	ctx := context.Background()
	awaitMap(t, c, groups)
	for round := range 3 {
		for g := range uint32(groups) {
			if _, err := c.Put(ctx, keyIn(g, groups, round), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		// Groups 1, 2, 4, 5 are led elsewhere: one redirect each, in the
		// first round only.
		if n := notLeaderTotal(srvs); n != 4 {
			t.Fatalf("round %d: %d NotLeader answers in total, want 4", round, n)
		}
	}
	for g, a := range c.ShardMap().Leaders {
		if want := sh.leader(uint32(g)).addr; a != want {
			t.Errorf("group %d routed to %s, want %s", g, a, want)
		}
	}
}

// TestLeaderChangeOfOneGroup: when one group's leader moves, only that
// group is redirected; the others keep going straight to their leaders.
func TestLeaderChangeOfOneGroup(t *testing.T) {
	for _, hintless := range []bool{false, true} {
		t.Run(fmt.Sprintf("hintless=%v", hintless), func(t *testing.T) {
			const groups = 6
			srvs, sh := newFakeCluster(t, 3, groups)
			c := newTestClient(t, Config{Addrs: []string{srvs[0].addr}})
			ctx := context.Background()
			awaitMap(t, c, groups)
			for g := range uint32(groups) {
				if _, err := c.Put(ctx, keyIn(g, groups, 0), []byte("v")); err != nil {
					t.Fatal(err)
				}
			}
			// Group 1 moves from node 1 to node 2 (the next address in
			// the client's list, so a hintless rotation finds it in one
			// step).
			sh.mu.Lock()
			sh.mu.hintless = hintless
			sh.mu.Unlock()
			sh.setLeader(1, srvs[2])
			if _, err := c.Put(ctx, keyIn(1, groups, 1), []byte("v")); err != nil {
				t.Fatal(err)
			}
			if _, ok := srvs[2].value(string(keyIn(1, groups, 1))); !ok {
				t.Fatal("group 1's write did not reach its new leader")
			}
			if n := notLeaderTotal(srvs); n != 1 {
				t.Fatalf("%d NotLeader answers, want 1", n)
			}
			for round := 2; round < 5; round++ {
				for g := range uint32(groups) {
					if _, err := c.Put(ctx, keyIn(g, groups, round), []byte("v")); err != nil {
						t.Fatal(err)
					}
				}
			}
			if n := notLeaderTotal(srvs); n != 1 {
				t.Fatalf("%d NotLeader answers after the move, want still 1: other groups were disturbed", n)
			}
			m := c.ShardMap()
			for g, a := range m.Leaders {
				if want := sh.leader(uint32(g)).addr; a != want {
					t.Errorf("group %d routed to %s, want %s", g, a, want)
				}
			}
		})
	}
}

// TestRedirectStormRefreshesMap: when leaders of many groups move and a
// call needs two NotLeader answers to find one, the client fetches the map
// again, after which every group goes straight to its new leader.
func TestRedirectStormRefreshesMap(t *testing.T) {
	const groups = 6
	srvs, sh := newFakeCluster(t, 3, groups)
	c := newTestClient(t, Config{Addrs: []string{srvs[0].addr}})
	ctx := context.Background()
	awaitMap(t, c, groups)
	for g := range uint32(groups) {
		if _, err := c.Put(ctx, keyIn(g, groups, 0), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	// Every group moves two nodes on, and nodes give no hints: a hintless
	// rotation needs two NotLeader answers per group.
	sh.mu.Lock()
	sh.mu.hintless = true
	sh.mu.Unlock()
	for g := range uint32(groups) {
		sh.setLeader(g, srvs[(g+2)%3])
	}
	round := 1
	testutil.Wait(t, "a second shard map fetch", func() bool {
		if _, err := c.Put(ctx, keyIn(0, groups, round), []byte("v")); err != nil {
			t.Fatal(err)
		}
		round++
		return shardMapTotal(srvs) >= 2
	})
	testutil.Wait(t, "the refreshed map to be installed", func() bool {
		m := c.ShardMap()
		for g, a := range m.Leaders {
			if a != sh.leader(uint32(g)).addr {
				return false
			}
		}
		return true
	})
	before := notLeaderTotal(srvs)
	for g := range uint32(groups) {
		if _, err := c.Put(ctx, keyIn(g, groups, 100), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if n := notLeaderTotal(srvs) - before; n != 0 {
		t.Fatalf("%d NotLeader answers after the refresh, want none", n)
	}
}

// TestOldServerMeansOneGroup: a node that answers OpShardMap with
// StatusBadRequest is a single-group cluster, and everything works as
// before; NoopKey does not send its key to it.
func TestOldServerMeansOneGroup(t *testing.T) {
	s := newFakeServer(t, testClusterID)
	c := newTestClient(t, Config{Addrs: []string{s.addr}})
	ctx := context.Background()
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := c.NoopKey(ctx, []byte("k")); err != nil {
		t.Fatalf("NoopKey against a single-group node: %v", err)
	}
	if err := c.Noop(ctx); err != nil {
		t.Fatal(err)
	}
	m := c.ShardMap()
	if m.Groups != 1 || len(m.Leaders) != 1 || m.Leaders[0] != s.addr {
		t.Fatalf("ShardMap() = %+v, want one group at %s", m, s.addr)
	}
	if n := s.shardMapReqs.Load(); n != 1 {
		t.Fatalf("shard map asked for %d times, want once", n)
	}
	if n := s.received.Load(); n != 3 {
		t.Fatalf("server received %d requests, want 3", n)
	}
}

// TestUnreadableMapMeansOneGroup: a map the client cannot decode (a newer
// format) is not fatal: it routes as one group and hints do the rest.
func TestUnreadableMapMeansOneGroup(t *testing.T) {
	srvs, sh := newFakeCluster(t, 2, 4)
	sh.mu.Lock()
	sh.mu.rawMap = []byte{wire.ShardMapFormatVersion + 1, 4, 0, 0, 0}
	sh.mu.Unlock()
	c := newTestClient(t, Config{Addrs: []string{srvs[0].addr}})
	ctx := context.Background()
	for g := range uint32(4) {
		if _, err := c.Put(ctx, keyIn(g, 4, 0), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if _, ok := sh.leader(g).value(string(keyIn(g, 4, 0))); !ok {
			t.Fatalf("group %d's write did not reach its leader", g)
		}
	}
	if m := c.ShardMap(); m.Groups != 1 {
		t.Fatalf("ShardMap() has %d groups, want 1", m.Groups)
	}
}

// TestNoopKeySpreads: with several groups, NoopKey sends the key so that
// the no-op goes to the key's group, and Noop goes to group 0.
func TestNoopKeySpreads(t *testing.T) {
	const groups = 3
	srvs, _ := newFakeCluster(t, 3, groups)
	c := newTestClient(t, Config{Addrs: []string{srvs[0].addr}})
	ctx := context.Background()
	awaitMap(t, c, groups)
	for g := range uint32(groups) {
		before := srvs[g].received.Load()
		if err := c.NoopKey(ctx, keyIn(g, groups, 0)); err != nil {
			t.Fatal(err)
		}
		if srvs[g].received.Load() != before+1 {
			t.Fatalf("NoopKey for group %d did not go to its leader", g)
		}
	}
	before := srvs[0].received.Load()
	if err := c.Noop(ctx); err != nil {
		t.Fatal(err)
	}
	if srvs[0].received.Load() != before+1 || notLeaderTotal(srvs) != 0 {
		t.Fatal("Noop did not go straight to group 0's leader")
	}
}

// TestReconnectRefreshesMap: after a lost connection is re-established the
// client asks for the map again (leaders may have moved meanwhile).
func TestReconnectRefreshesMap(t *testing.T) {
	srvs, _ := newFakeCluster(t, 1, 2)
	s := srvs[0]
	c := newTestClient(t, Config{Addrs: []string{s.addr}})
	ctx := context.Background()
	if _, _, err := c.Get(ctx, []byte("k")); err != nil {
		t.Fatal(err)
	}
	s.dropNext.Store(1)
	if _, _, err := c.Get(ctx, []byte("k")); err != nil { // retried on a new connection
		t.Fatal(err)
	}
	testutil.Wait(t, "a second shard map fetch", func() bool {
		if _, _, err := c.Get(ctx, []byte("k")); err != nil {
			t.Fatal(err)
		}
		return s.shardMapReqs.Load() >= 2
	})
}

// TestFirstMapWaitHonoursContext: a caller waiting for the first fetch
// gives up with its context, and nothing is sent on its behalf.
func TestFirstMapWaitHonoursContext(t *testing.T) {
	c := newTestClient(t, Config{Addrs: []string{deadAddr(t)}, MaxRetries: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("got %v, want a plain context.Canceled", err)
	}
}
