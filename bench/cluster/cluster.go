// Package cluster runs an embedded raftpipe cluster for benchmarks: real
// nodes over loopback TCP with real WALs (fsync on) and Pebble stores in a
// temporary directory, plus bench.Target and bench.LagSource adapters for
// driving it in-process ("direct" mode) or through the client protocol
// ("client" mode), and for driving a remote cluster.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/raftpipe/raftpipe/internal/loopback"
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
	dir       string
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
	dir, err := os.MkdirTemp(opts.Dir, "raftpipe-bench-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, ClusterID: opts.ClusterID}
	for i := 1; i <= opts.Nodes; i++ {
		peer, err1 := loopback.Reserve()
		client, err2 := loopback.Reserve()
		if err := errors.Join(err1, err2); err != nil {
			c.Close()
			return nil, err
		}
		c.Members = append(c.Members, node.Member{ID: uint64(i), PeerAddr: peer, ClientAddr: client})
	}
	for _, m := range c.Members {
		cfg := node.Config{
			ID: m.ID, ClusterID: opts.ClusterID, DataDir: filepath.Join(dir, fmt.Sprintf("n%d", m.ID)),
			PeerAddr: m.PeerAddr, ClientAddr: m.ClientAddr, Members: c.Members, Bootstrap: true,
			Logger: opts.Logger,
		}
		if opts.Tune != nil {
			opts.Tune(&cfg)
		}
		n, err := node.Start(cfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("start node %d: %w", m.ID, err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	wctx, cancel := context.WithTimeout(ctx, opts.LeaderTimeout)
	defer cancel()
	if _, err := c.WaitLeader(wctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Leader returns the current leader, or nil if none is known.
func (c *Cluster) Leader() *node.Node {
	for _, n := range c.Nodes {
		if n.IsLeader() {
			return n
		}
	}
	return nil
}

// WaitLeader polls until a leader exists or ctx ends.
func (c *Cluster) WaitLeader(ctx context.Context) (*node.Node, error) {
	t := time.NewTicker(5 * time.Millisecond)
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

// ClientAddrs lists the nodes' client addresses.
func (c *Cluster) ClientAddrs() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientAddr
	}
	return out
}

// Dir is the cluster's temporary data directory.
func (c *Cluster) Dir() string { return c.dir }

// Close stops every node and removes the data directory.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, n.Stop())
	}
	c.Nodes = nil
	errs = append(errs, os.RemoveAll(c.dir))
	return errors.Join(errs...)
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
