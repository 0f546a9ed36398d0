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
)

// Options configure an embedded cluster.
type Options struct {
	// Nodes is the cluster size (default 3).
	Nodes int
	// Dir is the parent of the temporary data directory ("" = os.TempDir()).
	Dir string
	// ClusterID is used in every handshake (default 1).
	ClusterID uint64
	// Tune, if set, adjusts each node's config before start.
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
	local, err := testcluster.Start(testcluster.Options{
		Voters: opts.Nodes, Dir: opts.Dir, ClusterID: opts.ClusterID,
		Configure: opts.Tune, Logger: opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	c := &Cluster{Nodes: local.Nodes(), Members: local.Members(), ClusterID: opts.ClusterID, local: local}
	wctx, cancel := context.WithTimeout(ctx, opts.LeaderTimeout)
	defer cancel()
	if _, err := c.WaitLeader(wctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
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
		out = append(out, fmt.Sprintf("node %d WAL: %d fsyncs, %.1f entries/fsync, mean fsync %v; %d peer messages dropped at a full inbox; %d Pebble write stalls",
			n.ID(), st.Syncs, float64(st.Entries)/float64(st.Syncs), mean.Round(time.Microsecond), n.InboxDropped(), n.StateMachineWriteStalls()))
	}
	return out
}
