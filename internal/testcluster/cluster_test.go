package testcluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/chaos"
	"github.com/raftpipe/raftpipe/internal/testcluster"
	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/raft/node"
	"github.com/raftpipe/raftpipe/wire"
)

// fastTick shortens elections so that the test spends its time on the
// cluster's life cycle, not on waiting.
const fastTick = 10 * time.Millisecond

func start(t *testing.T, opts testcluster.Options) *testcluster.Cluster {
	t.Helper()
	opts.Dir = t.TempDir()
	configure := opts.Configure
	opts.Configure = func(cfg *node.Config) {
		cfg.TickInterval = fastTick
		if configure != nil {
			configure(cfg)
		}
	}
	c, err := testcluster.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

func waitLeader(t *testing.T, c *testcluster.Cluster) *node.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.DefaultWait)
	defer cancel()
	l, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// put writes key=value through the current leader, looking it up again
// while leadership moves (under -race on a loaded machine a leader can
// step down for want of a quorum heard in time); a put is idempotent, so
// a retry after an unknown outcome is safe.
func put(t *testing.T, c *testcluster.Cluster, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.DefaultWait)
	defer cancel()
	for {
		l := waitLeader(t, c)
		_, err := l.Put(ctx, []byte(key), []byte(value))
		if err == nil {
			return
		}
		if !errors.Is(err, node.ErrNotLeader) && !errors.Is(err, node.ErrUnknownOutcome) || ctx.Err() != nil {
			t.Fatalf("put %s on node %d: %v", key, l.ID(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// applied reports whether node id serves key=value from its own state
// machine.
func applied(c *testcluster.Cluster, id uint64, key, value string) bool {
	n := c.Node(id)
	if n == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := n.Do(ctx, &wire.ClientRequest{Op: wire.OpGet, Flags: wire.FlagStale, Key: []byte(key)})
	return err == nil && r.Status == wire.StatusOK && string(r.Value) == value
}

// TestLifeCycle: the voters start and elect a leader, a stopped node comes
// back with its data, a wiped one is brought back by the leader, and
// Close removes the cluster's directory.
func TestLifeCycle(t *testing.T) {
	c := start(t, testcluster.Options{Spares: 1})
	if c.Size() != 4 || len(c.Running()) != 3 || c.Node(4) != nil {
		t.Fatalf("size %d, running %v: want 3 voters and a stopped spare", c.Size(), c.Running())
	}
	if cfg := c.Config(1, true); len(cfg.Members) != 3 {
		t.Fatalf("a voter's members %v: want the 3 voters only", cfg.Members)
	}
	if cfg := c.Config(4, false); len(cfg.Members) != 4 || cfg.Members[3].ID != 4 {
		t.Fatalf("the spare's members %v: want the voters and itself", cfg.Members)
	}
	l := waitLeader(t, c)
	put(t, c, "a", "1")

	f := c.Running()[0]
	if f == l.ID() {
		f = c.Running()[1]
	}
	if err := c.StopNode(f); err != nil {
		t.Fatal(err)
	}
	if c.Node(f) != nil || len(c.Nodes()) != 2 {
		t.Fatalf("node %d still listed after StopNode", f)
	}
	put(t, c, "b", "2")
	if err := c.StartNode(f, false); err != nil {
		t.Fatal(err)
	}
	testutil.Wait(t, fmt.Sprintf("node %d to apply b after a restart", f), func() bool { return applied(c, f, "b", "2") })

	if err := c.Wipe(f); err != nil {
		t.Fatal(err)
	}
	// An idle leader does not notice the lost log: it still holds the
	// node's old match index and sends only heartbeats. A new write makes
	// the wiped node reject an append, and the leader backs up.
	put(t, c, "c", "3")
	testutil.Wait(t, fmt.Sprintf("node %d to apply a after a wipe", f), func() bool { return applied(c, f, "a", "1") })

	dir := c.Dir()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("cluster directory after Close: %v, want it gone", err)
	}
}

// TestNetworkCarriesPeerLinks: with a Network every peer link goes through
// its proxies, so isolating the leader's slot makes the others elect
// another leader.
func TestNetworkCarriesPeerLinks(t *testing.T) {
	var nw *chaos.Network
	c := start(t, testcluster.Options{Network: func(peers []string) (testcluster.Network, error) {
		var err error
		nw, err = chaos.NewNetwork(peers, chaos.NetworkConfig{Seed: 1})
		if err != nil {
			return nil, err
		}
		return nw, nil
	}})
	put(t, c, "k", "v")
	old := waitLeader(t, c)
	nw.Isolate(int(old.ID() - 1))
	testutil.Wait(t, "a leader other than the isolated one", func() bool {
		for _, n := range c.Nodes() {
			if n != old && n.IsLeader() {
				return true
			}
		}
		return false
	})
	nw.Heal()
}
