package node

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/raft/client"
	"github.com/raftpipe/raftpipe/wire"
)

// withGroups returns a cluster option that sets Config.Groups (and an
// optional further change).
func withGroups(g int, more func(*Config)) func(*Config) {
	return func(cfg *Config) {
		cfg.Groups = g
		if more != nil {
			more(cfg)
		}
	}
}

// groupKeys returns, for every group of g, `per` keys that map to it.
func groupKeys(prefix string, g, per int) [][]string {
	keys := make([][]string, g)
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		gi := wire.GroupOf([]byte(k), uint32(g))
		if len(keys[gi]) < per {
			keys[gi] = append(keys[gi], k)
		}
		done := true
		for _, ks := range keys {
			done = done && len(ks) == per
		}
		if done {
			return keys
		}
	}
}

// groupLeader waits until some running node leads group g and returns it.
func (c *testCluster) groupLeader(g uint64) *Node {
	c.t.Helper()
	var l *Node
	waitFor(c.t, 20*time.Second, fmt.Sprintf("a leader of group %d", g), func() bool {
		l = nil
		for _, n := range c.nodes {
			if n.IsGroupLeader(g) {
				l = n
			}
		}
		return l != nil
	})
	return l
}

// clusterClient is a raft/client on every node's client address.
func (c *testCluster) clusterClient() *client.Client {
	c.t.Helper()
	var addrs []string
	for _, m := range c.members {
		addrs = append(addrs, m.ClientAddr)
	}
	cl, err := client.New(client.Config{Addrs: addrs, ClusterID: 7, MaxRetries: 50})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// checkGroupsAll waits until every running node applied, in every group, a
// barrier write made after the acknowledged ones, then looks every
// acknowledged key up in its group's local replica.
func checkGroupsAll(t *testing.T, c *testCluster, G int, acked map[string]string) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	barriers := groupKeys("barrier", G, 1)
	for g := 0; g < G; g++ {
		var idx uint64
		for {
			var err error
			if idx, err = c.groupLeader(uint64(g)).Put(ctx, []byte(barriers[g][0]), []byte("b")); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("barrier in group %d: %v", g, err)
			}
		}
		for id, n := range c.nodes {
			rep := n.replicas[g]
			waitFor(t, 30*time.Second, fmt.Sprintf("node %d group %d applies %d", id, g, idx), func() bool { return rep.sm.AppliedIndex() >= idx })
		}
	}
	for id, n := range c.nodes {
		for k, v := range acked {
			rep := n.replicas[n.GroupOf([]byte(k))]
			got, ok, err := rep.sm.Lookup([]byte(k))
			if err != nil || !ok || string(got) != v {
				t.Fatalf("node %d group %d lost acknowledged write %s=%s: got %q ok=%v err=%v", id, rep.group, k, v, got, ok, err)
			}
		}
	}
}

// TestGroupsClientWritesSurviveRestart writes keys of every group of a
// 3-node, 4-group cluster through the routing client, restarts every node,
// and reads every acknowledged write back through the client and from every
// node's replica of the key's group.
func TestGroupsClientWritesSurviveRestart(t *testing.T) {
	const G = 4
	c := newTestCluster(t, 3, withGroups(G, nil))
	cl := c.clusterClient()
	ctx := ctxT(t, 90*time.Second)
	acked := map[string]string{}
	for _, ks := range groupKeys("k", G, 25) {
		for _, k := range ks {
			v := "v-" + k
			if _, err := cl.Put(ctx, []byte(k), []byte(v)); err != nil {
				t.Fatalf("put %s: %v", k, err)
			}
			acked[k] = v
		}
	}
	if sm := cl.ShardMap(); sm.Groups != G {
		t.Fatalf("client's shard map has %d groups, want %d", sm.Groups, G)
	}
	for id, n := range c.nodes {
		for g := 0; g < G; g++ {
			if got := n.replicas[g].sm.AppliedIndex(); got == 0 {
				t.Fatalf("node %d group %d applied nothing", id, g)
			}
		}
	}
	c.stopAll()
	for _, m := range c.members {
		c.start(m.ID, true)
	}
	checkGroupsAll(t, c, G, acked)
	for k, v := range acked {
		got, ok, err := cl.Get(ctx, []byte(k))
		if err != nil || !ok || string(got) != v {
			t.Fatalf("client get %s after restart = %q %v %v, want %q", k, got, ok, err, v)
		}
	}
	// A stale get is served by the key's group's replica on any node.
	for k, v := range acked {
		for id, n := range c.nodes {
			resp, err := n.Do(ctx, &wire.ClientRequest{Op: wire.OpGet, Key: []byte(k), Flags: wire.FlagStale})
			if err != nil || resp.Status != wire.StatusOK || string(resp.Value) != v {
				t.Fatalf("stale get %s at node %d: %v %+v, want %q", k, id, err, resp, v)
			}
		}
	}
	// A no-op with a key routes to the key's group and stores nothing.
	if err := cl.NoopKey(ctx, []byte(groupKeys("k", G, 1)[3][0])); err != nil {
		t.Fatalf("noop with a key: %v", err)
	}
}

// TestGroupsShardMap asks every node, leader of some groups or none, for
// the shard map: G groups, and once the leaders are known, each group's
// leader's client address.
func TestGroupsShardMap(t *testing.T) {
	const G = 5
	c := newTestCluster(t, 3, withGroups(G, nil))
	want := make([]string, G)
	for g := range want {
		l := c.groupLeader(uint64(g))
		for _, m := range c.members {
			if m.ID == l.ID() {
				want[g] = m.ClientAddr
			}
		}
	}
	ctx := ctxT(t, 30*time.Second)
	for id, n := range c.nodes {
		waitFor(t, 20*time.Second, fmt.Sprintf("node %d knows every leader", id), func() bool {
			for g := 0; g < G; g++ {
				if n.GroupLeader(uint64(g)) == 0 {
					return false
				}
			}
			return true
		})
		resp, err := n.Do(ctx, &wire.ClientRequest{Op: wire.OpShardMap})
		if err != nil || resp.Status != wire.StatusOK {
			t.Fatalf("node %d: shard map: %v %+v", id, err, resp)
		}
		var m wire.ShardMap
		if err := wire.DecodeShardMap(resp.Value, &m); err != nil {
			t.Fatal(err)
		}
		if m.Groups != G || len(m.Leaders) != G {
			t.Fatalf("node %d: map %+v", id, m)
		}
		for g := range m.Leaders {
			if m.Leaders[g] == "" {
				t.Fatalf("node %d: no leader for group %d in %+v", id, g, m)
			}
		}
		bad, err := n.Do(ctx, &wire.ClientRequest{Op: wire.OpShardMap, Key: []byte("x")})
		if err != nil || bad.Status != wire.StatusBadRequest {
			t.Fatalf("node %d: shard map with a key answered %v %+v, want bad request", id, err, bad)
		}
	}
	// A request at a node that does not lead its key's group names that
	// group's leader, not another's.
	for g, ks := range groupKeys("hint", G, 1) {
		for _, n := range c.nodes {
			if n.IsGroupLeader(uint64(g)) {
				continue
			}
			resp, err := n.Do(ctx, &wire.ClientRequest{Op: wire.OpPut, Key: []byte(ks[0]), Value: []byte("v")})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status == wire.StatusNotLeader && resp.LeaderHint != c.addrOf(n.GroupLeader(uint64(g))) {
				t.Fatalf("group %d at node %d: hint %q, its leader is %d", g, n.ID(), resp.LeaderHint, n.GroupLeader(uint64(g)))
			}
		}
	}
}

// addrOf is member id's client address.
func (c *testCluster) addrOf(id uint64) string {
	for _, m := range c.members {
		if m.ID == id {
			return m.ClientAddr
		}
	}
	return ""
}

// TestGroupsLeadersSpread: with 6 (and 48) groups on 3 nodes, leader
// balancing settles with every node leading a third of them, each group
// on its preferred node.
func TestGroupsLeadersSpread(t *testing.T) {
	for _, G := range []int{6, 48} {
		t.Run(fmt.Sprintf("groups=%d", G), func(t *testing.T) { testLeadersSpread(t, G) })
	}
}

func testLeadersSpread(t *testing.T, G int) {
	c := newTestCluster(t, 3, withGroups(G, nil))
	waitFor(t, 30*time.Second, fmt.Sprintf("each node leads %d groups", G/3), func() bool {
		for _, n := range c.nodes {
			if n.GroupsLed() != G/3 {
				return false
			}
		}
		return true
	})
	for _, n := range c.nodes {
		for g := uint64(0); g < uint64(G); g++ {
			if want := preferredLeader(g, []uint64{1, 2, 3}); n.IsGroupLeader(g) != (want == n.ID()) {
				t.Errorf("node %d leads group %d: %v, preferred leader %d", n.ID(), g, n.IsGroupLeader(g), want)
			}
		}
	}
}

// TestGroupsCountIsDurable: a data directory made with 4 groups refuses to
// start with 2 (or 1), and starts again, data intact, with 4. A directory
// from before group counts were recorded is one group.
func TestGroupsCountIsDurable(t *testing.T) {
	c := newTestCluster(t, 1, withGroups(4, nil))
	ctx := ctxT(t, 30*time.Second)
	keys := groupKeys("d", 4, 2)
	for _, ks := range keys {
		for _, k := range ks {
			if _, err := c.groupLeader(c.nodes[1].GroupOf([]byte(k))).Put(ctx, []byte(k), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.stopAll()
	listing := func() map[string]int64 {
		out := map[string]int64{}
		filepath.Walk(c.dirs[1], func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				out[p] = fi.Size()
			}
			return nil
		})
		return out
	}
	before := listing()
	for _, g := range []int{2, 1, 0} {
		cfg := c.config(1, true)
		cfg.Groups = g
		n, err := Start(cfg)
		if err == nil {
			n.Stop()
			t.Fatalf("started with Groups %d on a 4-group data directory", g)
		}
		if !errors.Is(err, ErrGroupsMismatch) {
			t.Fatalf("Groups %d: %v, want ErrGroupsMismatch", g, err)
		}
		t.Logf("Groups %d refused: %v", g, err)
	}
	after := listing()
	for p, sz := range before {
		if after[p] != sz {
			t.Errorf("refused starts changed %s: %d -> %d bytes", p, sz, after[p])
		}
	}
	n := c.start(1, true)
	for _, ks := range keys {
		for _, k := range ks {
			c.groupLeader(n.GroupOf([]byte(k)))
			if v, ok, err := n.Get(ctx, []byte(k)); err != nil || !ok || string(v) != "v" {
				t.Fatalf("get %s = %q %v %v", k, v, ok, err)
			}
		}
	}
	c.stopAll()

	// An old single-group directory: no GROUPS file, a WAL.
	if err := os.Remove(filepath.Join(c.dirs[1], groupsFile)); err != nil {
		t.Fatal(err)
	}
	cfg := c.config(1, true)
	if _, err := Start(cfg); !errors.Is(err, ErrGroupsMismatch) {
		t.Fatalf("4 groups on a directory without a group count: %v, want ErrGroupsMismatch", err)
	}
}

// TestGroupsUnknownGroupRefused: a message for a group beyond the map of a
// multi-group node is dropped, counted and logged, and the node serves on.
func TestGroupsUnknownGroupRefused(t *testing.T) {
	var logs syncBuffer
	c := newTestCluster(t, 1, withGroups(3, func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}))
	n := c.nodes[1]
	for g := uint64(0); g < 3; g++ {
		c.groupLeader(g)
	}
	n.onPeerMessage(&wire.Message{Type: wire.MsgHeartbeat, Group: 3, From: 2, To: 1, Term: 1})
	n.onPeerMessage(&wire.Message{Type: wire.MsgHeartbeat, Group: 1 << 40, From: 2, To: 1, Term: 1})
	if got := n.UnknownGroupDropped(); got != 2 {
		t.Fatalf("dropped %d messages for unknown groups, want 2", got)
	}
	if l := logs.String(); !strings.Contains(l, "for a group this node does not host") || !strings.Contains(l, "group=3") || !strings.Contains(l, "hosted_groups=3") {
		t.Fatalf("no clear log line for the unknown group; logs:\n%s", l)
	}
	ctx := ctxT(t, 20*time.Second)
	for _, ks := range groupKeys("u", 3, 1) {
		if _, err := c.groupLeader(n.GroupOf([]byte(ks[0]))).Put(ctx, []byte(ks[0]), []byte("v")); err != nil {
			t.Fatalf("node stopped serving after unknown-group messages: %v", err)
		}
	}
}

// TestGroupsWipedFollowerCatchesUpBySnapshot: in a 3-node, 3-group
// cluster, a follower that lost its disk is brought back in every group
// (by snapshots where the leader compacted past it).
func TestGroupsWipedFollowerCatchesUpBySnapshot(t *testing.T) {
	const G = 3
	c := newTestCluster(t, 3, withGroups(G, func(cfg *Config) {
		cfg.SnapshotEntries = 100
		cfg.RetainEntries = 20
	}))
	cl := c.clusterClient()
	ctx := ctxT(t, 90*time.Second)
	acked := map[string]string{}
	put := func(prefix string, per int) {
		for _, ks := range groupKeys(prefix, G, per) {
			for _, k := range ks {
				if _, err := cl.Put(ctx, []byte(k), []byte("v"+k)); err != nil {
					t.Fatalf("put %s: %v", k, err)
				}
				acked[k] = "v" + k
			}
		}
	}
	put("a", 150)
	victim := uint64(3)
	c.stop(victim)
	if err := os.RemoveAll(c.dirs[victim]); err != nil {
		t.Fatal(err)
	}
	put("b", 150)
	waitFor(t, 20*time.Second, "every group's log compacted on the running nodes", func() bool {
		for id, n := range c.nodes {
			for g := 0; g < G; g++ {
				if id != victim && n.replicas[g].wal.FirstIndex() <= 1 {
					return false
				}
			}
		}
		return true
	})
	n := c.start(victim, false)
	checkGroupsAll(t, c, G, acked)
	for g := 0; g < G; g++ {
		if n.replicas[g].wal.FirstIndex() <= 1 {
			t.Errorf("group %d: the rejoined node's log starts at 1: not restored from a snapshot", g)
		}
	}
	if n.metrics.snapRecv[0].Load() < G {
		t.Errorf("rejoined node received %d snapshots, want at least %d", n.metrics.snapRecv[0].Load(), G)
	}
}

// TestGroupsQuiesce: idle groups of a multi-group cluster quiesce on every
// node; a write wakes its group and succeeds; the host ticker stops
// ticking quiesced replicas.
func TestGroupsQuiesce(t *testing.T) {
	const G = 8
	c := newTestCluster(t, 3, withGroups(G, func(cfg *Config) { cfg.QuiesceAfterTicks = 5 }))
	for g := uint64(0); g < G; g++ {
		c.groupLeader(g)
	}
	waitFor(t, 30*time.Second, "every group quiesced on every node", func() bool {
		for _, n := range c.nodes {
			if n.GroupsQuiesced() != G {
				return false
			}
		}
		return true
	})
	ctx := ctxT(t, 20*time.Second)
	k := groupKeys("q", G, 1)[5][0]
	if _, err := c.groupLeader(5).Put(ctx, []byte(k), []byte("v")); err != nil {
		t.Fatalf("write to a quiesced group: %v", err)
	}
	waitFor(t, 30*time.Second, "the group quiesced again", func() bool {
		for _, n := range c.nodes {
			if n.GroupsQuiesced() != G {
				return false
			}
		}
		return true
	})
	// A peer's connection breaking wakes the groups it is in.
	c.stop(3)
	waitFor(t, 10*time.Second, "groups woken by the lost peer", func() bool {
		for _, n := range c.nodes {
			if n.GroupsQuiesced() == G {
				return false
			}
		}
		return true
	})
	for g := uint64(0); g < G; g++ {
		kg := groupKeys("w", G, 1)[g][0]
		for {
			l := c.groupLeader(g)
			if _, err := l.Put(ctx, []byte(kg), []byte("v")); err == nil {
				break
			} else if ctx.Err() != nil {
				t.Fatalf("group %d after losing node 3: %v", g, err)
			}
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the node's concurrent loggers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
