// Package cluster runs an embedded raftpipe cluster for benchmarks: real
// nodes over loopback TCP with real WALs (fsync on) and Pebble stores in a
// temporary directory, plus bench.Target and bench.LagSource adapters for
// driving it in-process ("direct" mode) or through the client protocol
// ("client" mode), and for driving a remote cluster.
package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/raftpipe/raftpipe/internal/testcluster"
	"github.com/raftpipe/raftpipe/raft/node"
	"github.com/raftpipe/raftpipe/wire"
)

// Options configure an embedded cluster.
type Options struct {
	// Nodes is the cluster size (default 3).
	Nodes int
	// Dir is the parent of the temporary data directory ("" = os.TempDir()).
	Dir string
	// ClusterID is used in every handshake (default 1).
	ClusterID uint64
	// Groups is the number of Raft groups (node.Config.Groups; 0 or 1 is
	// one group). Start waits until every group has a leader.
	Groups int
	// Tune, if set, adjusts each node's config before start (after Groups
	// was set).
	Tune func(*node.Config)
	// Logger receives node logs (nil discards them).
	Logger *slog.Logger
	// LeaderTimeout bounds the wait for the first leader (default 30 s).
	LeaderTimeout time.Duration
}

// Cluster is a running embedded cluster.
type Cluster struct {
	// Nodes are the running nodes, index i has ID i+1.
	Nodes []*node.Node
	// Members lists every node's addresses.
	Members []node.Member
	// ClusterID is the cluster's handshake ID.
	ClusterID uint64
	// Groups is the number of Raft groups (1 for one).
	Groups int
	// local owns the nodes and their directory.
	local *testcluster.Cluster
}

// Start starts opts.Nodes nodes with -bootstrap semantics and waits for a
// leader.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	if opts.ClusterID == 0 {
		opts.ClusterID = 1
	}
	if opts.LeaderTimeout <= 0 {
		opts.LeaderTimeout = 30 * time.Second
	}
	groups := max(opts.Groups, 1)
	local, err := testcluster.Start(testcluster.Options{
		Voters: opts.Nodes, Dir: opts.Dir, ClusterID: opts.ClusterID,
		Configure: func(cfg *node.Config) {
			cfg.Groups = groups
			if opts.Tune != nil {
				opts.Tune(cfg)
			}
		},
		Logger: opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	c := &Cluster{Nodes: local.Nodes(), Members: local.Members(), ClusterID: opts.ClusterID, Groups: groups, local: local}
	wctx, cancel := context.WithTimeout(ctx, opts.LeaderTimeout)
	defer cancel()
	if _, err := c.WaitLeader(wctx); err != nil {
		c.Close()
		return nil, err
	}
	for g := 1; g < groups; g++ {
		if _, err := c.waitGroupLeader(wctx, uint64(g)); err != nil {
			c.Close()
			return nil, err
		}
	}
	if groups > 1 {
		// Leader balancing moves leaders in the first seconds; measuring
		// then would count its hand-offs as not-leader retries. Not
		// fatal: a cluster that does not settle is measured as it is.
		bctx, cancel := context.WithTimeout(ctx, balanceWait)
		c.waitBalanced(bctx)
		cancel()
	}
	return c, nil
}

// balanceWait bounds Start's wait for leader balancing to settle.
const balanceWait = 10 * time.Second

// waitBalanced polls until every group is led by its preferred node (node
// IDs are 1..N: group g prefers node g mod N + 1, raft/node's rule) or
// ctx ends.
func (c *Cluster) waitBalanced(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		balanced := true
		for g := 0; g < c.Groups && balanced; g++ {
			l := c.GroupLeader(uint64(g))
			balanced = l != nil && l.ID() == uint64(g%len(c.Nodes))+1
		}
		if balanced {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// GroupLeader returns the node leading group g, or nil if none is known.
// Cheap enough to call per request (one atomic load per node).
func (c *Cluster) GroupLeader(g uint64) *node.Node {
	for _, n := range c.Nodes {
		if n.IsGroupLeader(g) {
			return n
		}
	}
	return nil
}

// LeaderFor returns the node leading key's group, or nil if none is known.
func (c *Cluster) LeaderFor(key []byte) *node.Node {
	if c.Groups <= 1 {
		return c.Leader()
	}
	return c.GroupLeader(uint64(wire.GroupOf(key, uint32(c.Groups))))
}

// waitGroupLeader polls until group g has a leader or ctx ends.
func (c *Cluster) waitGroupLeader(ctx context.Context, g uint64) (*node.Node, error) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if l := c.GroupLeader(g); l != nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: no leader of group %d: %w", g, ctx.Err())
		case <-t.C:
		}
	}
}

// WaitLeaderFor polls until key's group has a leader or ctx ends.
func (c *Cluster) WaitLeaderFor(ctx context.Context, key []byte) (*node.Node, error) {
	if c.Groups <= 1 {
		return c.WaitLeader(ctx)
	}
	return c.waitGroupLeader(ctx, uint64(wire.GroupOf(key, uint32(c.Groups))))
}

// Leader returns the current leader, or nil if none is known. It is cheap
// enough to call per request.
func (c *Cluster) Leader() *node.Node { return c.local.Leader() }

// WaitLeader polls until a leader exists or ctx ends.
func (c *Cluster) WaitLeader(ctx context.Context) (*node.Node, error) {
	return c.local.WaitLeader(ctx)
}

// ClientAddrs lists the nodes' client addresses.
func (c *Cluster) ClientAddrs() []string { return c.local.ClientAddrs() }

// Dir is the cluster's temporary data directory.
func (c *Cluster) Dir() string { return c.local.Dir() }

// Close stops every node and removes the data directory.
func (c *Cluster) Close() error {
	c.Nodes = nil
	return c.local.Close()
}

// WALNotes describes each node's group commit since start (cumulative, so
// it includes warm-up): fsyncs, entries per fsync and mean fsync latency.
func (c *Cluster) WALNotes() []string {
	var out []string
	for _, n := range c.Nodes {
		st := n.WALStats()
		if st.Syncs == 0 {
			continue
		}
		mean := st.SyncLatency.Sum / time.Duration(max(st.SyncLatency.Count, 1))
		groups := ""
		if c.Groups > 1 {
			groups = fmt.Sprintf(" (%d groups, %d led here, %.1f group appends/fsync)", c.Groups, n.GroupsLed(), float64(st.Calls)/float64(st.Syncs))
		}
		out = append(out, fmt.Sprintf("node %d WAL%s: %d fsyncs, %.1f entries/fsync, mean fsync %v; %d peer messages dropped at a full inbox; %d Pebble write stalls",
			n.ID(), groups, st.Syncs, float64(st.Entries)/float64(st.Syncs), mean.Round(time.Microsecond), n.InboxDropped(), n.StateMachineWriteStalls()))
	}
	return out
}
