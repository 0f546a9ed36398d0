// Package testcluster builds N-node clusters of raft/node on loopback, in
// one process: real nodes with real WALs and Pebble stores under one fresh
// directory, talking TCP on 127.0.0.1. Options add a proxy network between
// the peers (for partitions and other faults), TLS, spare slots for
// membership changes, and any other change to a node's Config.
//
// It uses only raft/node's exported API (Start, Config, Member and Node's
// methods), so it serves every package above raft/node: the chaos tests,
// bench/cluster (raftbench's embedded cluster, which is why this package
// returns errors instead of taking a testing.TB), and external tests.
// raft/node's own in-package tests cannot import it: that is an import
// cycle. The waiting and certificate helpers without that dependency are
// in internal/testutil.
//
// A Cluster is not safe for concurrent use: one goroutine (the test's, or
// a nemesis) starts and stops its nodes. The nodes themselves may be used
// from any goroutine, as raft/node allows.
package testcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/raftpipe/raftpipe/internal/loopback"
	"github.com/raftpipe/raftpipe/raft/node"
)

// Network carries the peer links of a cluster, one proxy per directed pair
// of slots (internal/chaos's Network is one). Slots are 0-based: slot i is
// node ID i+1.
type Network interface {
	// Addr is the address slot from dials to reach slot to.
	Addr(from, to int) string
	// Close stops every proxy; the cluster calls it after its nodes stopped.
	Close() error
}

// Options configure a cluster. The zero value is a 3-node cluster with
// cluster ID 1 under os.TempDir().
type Options struct {
	// Voters is how many nodes Start bootstraps as voters (default 3).
	Voters int
	// Spares is how many more slots get addresses (and proxies) but are not
	// started: nodes for a test to add as members later.
	Spares int
	// Dir is where the cluster makes its own directory ("" is os.TempDir());
	// Close removes that directory.
	Dir string
	// ClusterID is every node's handshake cluster ID (default 1).
	ClusterID uint64
	// TLS, if set, is every node's TLS configuration (peer and client ports).
	TLS *tls.Config
	// Network, if set, builds the proxies every peer link goes through,
	// given the slots' real peer addresses. Without it peers dial each
	// other directly.
	Network func(peerAddrs []string) (Network, error)
	// Configure, if set, adjusts a node's Config (cfg.ID says which) each
	// time the node starts, after everything above was applied.
	Configure func(cfg *node.Config)
	// Logger receives the nodes' logs (nil discards them, as raft/node does).
	Logger *slog.Logger
}

// Cluster is a running in-process cluster.
type Cluster struct {
	// opts are the options with defaults filled in.
	opts Options
	// dir holds one data directory per slot, n1, n2, ...
	dir string
	// members are the slots' real listen addresses; they stay fixed across
	// restarts so that peers and clients find a restarted node again.
	members []node.Member
	// nodes[i] is slot i's running node, nil while it is stopped.
	nodes []*node.Node
	// net is the proxy network, nil without Options.Network.
	net Network
}

// Start reserves addresses for every slot, builds the network if asked,
// and starts the voters bootstrapped. It does not wait for a leader (see
// WaitLeader). On error everything already started is closed.
func Start(opts Options) (*Cluster, error) {
	if opts.Voters <= 0 {
		opts.Voters = 3
	}
	if opts.ClusterID == 0 {
		opts.ClusterID = 1
	}
	dir, err := os.MkdirTemp(opts.Dir, "raftpipe-cluster-")
	if err != nil {
		return nil, err
	}
	total := opts.Voters + opts.Spares
	c := &Cluster{opts: opts, dir: dir, nodes: make([]*node.Node, total)}
	peers := make([]string, total)
	for i := range total {
		// Reserved ports, not ":0": internal/loopback says why.
		peer, err1 := loopback.Reserve()
		client, err2 := loopback.Reserve()
		if err := errors.Join(err1, err2); err != nil {
			return nil, errors.Join(err, c.Close())
		}
		c.members = append(c.members, node.Member{ID: uint64(i + 1), PeerAddr: peer, ClientAddr: client})
		peers[i] = peer
	}
	if opts.Network != nil {
		nw, err := opts.Network(peers)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("network: %w", err), c.Close())
		}
		c.net = nw
	}
	for i := range opts.Voters {
		if err := c.StartNode(uint64(i+1), true); err != nil {
			return nil, errors.Join(err, c.Close())
		}
	}
	return c, nil
}

// Size is the number of slots, voters and spares.
func (c *Cluster) Size() int { return len(c.members) }

// Member is slot id's identity and real (unproxied) listen addresses.
func (c *Cluster) Member(id uint64) node.Member { return c.members[id-1] }

// Members lists every slot's identity and addresses, in ID order.
func (c *Cluster) Members() []node.Member { return append([]node.Member(nil), c.members...) }

// Node is node id, or nil while it is stopped.
func (c *Cluster) Node(id uint64) *node.Node { return c.nodes[id-1] }

// Running lists the IDs of the running nodes, in order.
func (c *Cluster) Running() []uint64 {
	var ids []uint64
	for i, n := range c.nodes {
		if n != nil {
			ids = append(ids, uint64(i+1))
		}
	}
	return ids
}

// Nodes lists the running nodes in ID order.
func (c *Cluster) Nodes() []*node.Node {
	var out []*node.Node
	for _, n := range c.nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

// ClientAddrs lists every slot's client address, stopped or not: clients
// try them in turn and follow leader hints.
func (c *Cluster) ClientAddrs() []string {
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.ClientAddr
	}
	return out
}

// Dir is the cluster's directory, which Close removes.
func (c *Cluster) Dir() string { return c.dir }

// NodeDir is node id's data directory.
func (c *Cluster) NodeDir(id uint64) string {
	return filepath.Join(c.dir, fmt.Sprintf("n%d", id))
}

// Config is the configuration node id starts with. Its members are the
// initial voters, plus the node itself if it is a spare (a joining node
// must know how to reach the voters; a bootstrapped node's membership
// must not include the spares).
func (c *Cluster) Config(id uint64, bootstrap bool) node.Config {
	me := c.members[id-1]
	members := append([]node.Member(nil), c.members[:c.opts.Voters]...)
	if int(id) > c.opts.Voters {
		members = append(members, me)
	}
	cfg := node.Config{
		ID: id, ClusterID: c.opts.ClusterID, DataDir: c.NodeDir(id),
		PeerAddr: me.PeerAddr, ClientAddr: me.ClientAddr,
		Members: members, Bootstrap: bootstrap,
		TLS: c.opts.TLS, Logger: c.opts.Logger,
	}
	if c.net != nil {
		from := int(id - 1)
		cfg.ResolvePeerAddr = func(peer uint64, advertised string) string {
			if peer == 0 || int(peer) > len(c.members) || int(peer-1) == from {
				return advertised
			}
			return c.net.Addr(from, int(peer-1))
		}
	}
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	return cfg
}

// StartNode starts node id; its stored state, if any, wins over bootstrap.
//
// REQUIRES: node id is stopped.
func (c *Cluster) StartNode(id uint64, bootstrap bool) error {
	if c.nodes[id-1] != nil {
		panic(fmt.Sprintf("testcluster: node %d started while it runs", id))
	}
	n, err := node.Start(c.Config(id, bootstrap))
	if err != nil {
		return fmt.Errorf("start node %d: %w", id, err)
	}
	c.nodes[id-1] = n
	return nil
}

// StopNode stops node id if it runs. Its data stays; StartNode brings it
// back with what it had made durable.
func (c *Cluster) StopNode(id uint64) error {
	n := c.nodes[id-1]
	if n == nil {
		return nil
	}
	c.nodes[id-1] = nil
	if err := n.Stop(); err != nil {
		return fmt.Errorf("stop node %d: %w", id, err)
	}
	return nil
}

// Wipe stops node id, deletes its data and starts it again empty and not
// bootstrapped: the leader must bring it back (by log or by snapshot).
func (c *Cluster) Wipe(id uint64) error {
	if err := c.StopNode(id); err != nil {
		return err
	}
	if err := os.RemoveAll(c.NodeDir(id)); err != nil {
		return fmt.Errorf("wipe node %d: %w", id, err)
	}
	return c.StartNode(id, false)
}

// Leader is the first running node, in ID order, that believes it leads,
// or nil. It costs one atomic load per node, so a load generator may call
// it per request. Right after a partition a deposed leader may still
// believe it leads; a caller that must tell them apart compares terms.
func (c *Cluster) Leader() *node.Node {
	for _, n := range c.nodes {
		if n != nil && n.IsLeader() {
			return n
		}
	}
	return nil
}

// leaderPollInterval is how often WaitLeader looks: an election takes tens
// of milliseconds at the shortest.
const leaderPollInterval = 5 * time.Millisecond

// WaitLeader waits until Leader is not nil, or ctx ends.
func (c *Cluster) WaitLeader(ctx context.Context) (*node.Node, error) {
	t := time.NewTicker(leaderPollInterval)
	defer t.Stop()
	for {
		if l := c.Leader(); l != nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader elected: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Close stops every node, then the network, and removes the cluster's
// directory. It returns every error it met.
func (c *Cluster) Close() error {
	var errs []error
	for i := range c.nodes {
		errs = append(errs, c.StopNode(uint64(i+1)))
	}
	if c.net != nil {
		if err := c.net.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close network: %w", err))
		}
		c.net = nil
	}
	errs = append(errs, os.RemoveAll(c.dir))
	return errors.Join(errs...)
}
