package node

import (
	"context"
	"errors"
	"fmt"
	"github.com/raftpipe/raftpipe/raft"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/chaos"
	"github.com/raftpipe/raftpipe/internal/loopback"
)

// testCluster is an in-process cluster over loopback with real WALs and
// Pebble stores in temp dirs.
type testCluster struct {
	t       *testing.T
	members []Member
	dirs    map[uint64]string
	nodes   map[uint64]*Node
	opts    func(*Config)
	// nw, if set, carries every peer connection through fault-injecting
	// proxies (node i dials nw.Addr(i-1, j-1) to reach node j).
	nw *chaos.Network
}

// freeAddr reserves a loopback port (see internal/loopback for why not ":0").
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := loopback.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func newTestCluster(t *testing.T, size int, opts func(*Config)) *testCluster {
	return newCluster(t, size, false, opts)
}

// newNetCluster is newTestCluster with every peer link behind a proxy of
// c.nw, so that tests can partition nodes.
func newNetCluster(t *testing.T, size int, opts func(*Config)) *testCluster {
	return newCluster(t, size, true, opts)
}

func newCluster(t *testing.T, size int, proxied bool, opts func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, dirs: map[uint64]string{}, nodes: map[uint64]*Node{}, opts: opts}
	base := t.TempDir()
	var targets []string
	for i := 1; i <= size; i++ {
		id := uint64(i)
		c.members = append(c.members, Member{ID: id, PeerAddr: freeAddr(t), ClientAddr: freeAddr(t)})
		c.dirs[id] = filepath.Join(base, fmt.Sprintf("n%d", i))
		targets = append(targets, c.members[i-1].PeerAddr)
	}
	if proxied {
		nw, err := chaos.NewNetwork(targets, chaos.NetworkConfig{Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		c.nw = nw
		t.Cleanup(func() { nw.Close() })
	}
	for _, m := range c.members {
		c.start(m.ID, true)
	}
	t.Cleanup(c.stopAll)
	return c
}

func (c *testCluster) config(id uint64, bootstrap bool) Config {
	var me Member
	for _, m := range c.members {
		if m.ID == id {
			me = m
		}
	}
	cfg := Config{
		ID: id, ClusterID: 7, DataDir: c.dirs[id], PeerAddr: me.PeerAddr, ClientAddr: me.ClientAddr,
		Members: c.members, Bootstrap: bootstrap, TickInterval: 20 * time.Millisecond,
	}
	if c.nw != nil {
		from := int(id - 1)
		cfg.ResolvePeerAddr = func(peer uint64, advertised string) string {
			if peer == 0 || int(peer) > c.nw.Size() || int(peer-1) == from {
				return advertised
			}
			return c.nw.Addr(from, int(peer-1))
		}
	}
	if c.opts != nil {
		c.opts(&cfg)
	}
	return cfg
}

func (c *testCluster) start(id uint64, bootstrap bool) *Node {
	c.t.Helper()
	n, err := Start(c.config(id, bootstrap))
	if err != nil {
		c.t.Fatalf("start node %d: %v", id, err)
	}
	c.nodes[id] = n
	return n
}

func (c *testCluster) stop(id uint64) {
	if n := c.nodes[id]; n != nil {
		if err := n.Stop(); err != nil {
			c.t.Logf("stop node %d: %v", id, err)
		}
		delete(c.nodes, id)
	}
}

func (c *testCluster) stopAll() {
	for id := range c.nodes {
		c.stop(id)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// leader waits until exactly one running node leads and all running nodes
// agree on it.
func (c *testCluster) leader() *Node {
	c.t.Helper()
	var l *Node
	waitFor(c.t, 20*time.Second, "a leader", func() bool {
		l = nil
		for _, n := range c.nodes {
			if n.IsLeader() {
				if l != nil {
					return false
				}
				l = n
			}
		}
		return l != nil
	})
	return l
}

// onLeader runs op on the current leader until it returns nil, looking
// the leader up again after each retryable failure: the leader stepped
// down or lost the outcome (under -race on a loaded machine a fresh leader
// can step down for want of a quorum heard within an election timeout), a
// fresh leader has not yet committed in its term, a transfer is under
// way. Any other error, or ctx ending, fails the test. It returns the
// leader that succeeded.
func (c *testCluster) onLeader(ctx context.Context, what string, op func(l *Node) error) *Node {
	c.t.Helper()
	for {
		l := c.leader()
		err := op(l)
		if err == nil {
			return l
		}
		retryable := errors.Is(err, ErrNotLeader) || errors.Is(err, raft.ErrNotLeader) ||
			errors.Is(err, raft.ErrConfChangePending) || errors.Is(err, raft.ErrTransferInProgress) ||
			errors.Is(err, raft.ErrProposalDropped) || errors.Is(err, ErrUnknownOutcome)
		if !retryable || ctx.Err() != nil {
			c.t.Fatalf("%s on leader %d: %v", what, l.ID(), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
