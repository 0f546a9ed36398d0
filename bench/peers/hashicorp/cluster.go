package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"

	"github.com/raftpipe/raftpipe/bench"
)

const (
	// transportMaxPool is the TCP connection pool per peer (hashicorp's
	// usual value in examples and Consul).
	transportMaxPool = 3
	// transportTimeout bounds one transport I/O operation.
	transportTimeout = 10 * time.Second
	// snapshotRetain is how many snapshots the file store keeps.
	snapshotRetain = 1
	// leaderWaitTimeout bounds waiting for the first leader.
	leaderWaitTimeout = 30 * time.Second
	// leaderPollInterval is how often the leader wait re-checks the state.
	leaderPollInterval = 10 * time.Millisecond
	// maxNodes bounds -nodes.
	maxNodes = 7
	// noSnapshotEntries and noSnapshotInterval are the snapshot threshold,
	// trailing logs and check interval that keep snapshots (and the log
	// compaction that follows them) out of any run: far more entries than
	// a run writes, and an interval longer than a run lasts. hashicorp
	// adds up to one interval of jitter, so the interval must stay well
	// below the time.Duration limit.
	noSnapshotEntries  = 1 << 40
	noSnapshotInterval = 24 * time.Hour
)

// clusterOptions are the knobs main exposes as flags.
type clusterOptions struct {
	// nodes is the cluster size.
	nodes int
	// parentDir holds the temporary data directory ("" = os.TempDir()).
	parentDir string
	// batchApplyCh and maxAppendEntries set the raft.Config fields of the
	// same name; see doc.go for why.
	batchApplyCh     bool
	maxAppendEntries int
	// logCacheEntries > 0 puts a raft.LogCache of that many entries in
	// front of the log store.
	logCacheEntries int
	// noSnapshots keeps snapshots and log compaction out of a run.
	noSnapshots bool
	// logOutput receives hashicorp's WARN and ERROR logs.
	logOutput io.Writer
}

// node is one in-process raft server.
type node struct {
	id        raft.ServerID
	raft      *raft.Raft
	transport *raft.NetworkTransport
	store     *wal.WAL
}

// cluster owns the nodes and their temporary data directory.
type cluster struct {
	dir   string
	nodes []*node
}

// startCluster starts opts.nodes servers on loopback TCP, bootstraps them
// as one cluster and waits for a leader.
func startCluster(ctx context.Context, opts clusterOptions) (c *cluster, err error) {
	if opts.nodes < 1 || opts.nodes > maxNodes {
		return nil, fmt.Errorf("nodes %d not in 1..%d", opts.nodes, maxNodes)
	}
	if opts.maxAppendEntries < 1 || opts.maxAppendEntries > 1024 {
		return nil, fmt.Errorf("max append entries %d not in 1..1024 (hashicorp's limit)", opts.maxAppendEntries)
	}
	dir, err := os.MkdirTemp(opts.parentDir, "hashicorp-peer-*")
	if err != nil {
		return nil, err
	}
	c = &cluster{dir: dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.close())
		}
	}()
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: opts.logOutput})
	var servers []raft.Server
	for i := 1; i <= opts.nodes; i++ {
		id := raft.ServerID(strconv.Itoa(i))
		n := &node{id: id}
		c.nodes = append(c.nodes, n)
		ndir := filepath.Join(dir, string(id))
		if err := os.MkdirAll(ndir, 0o755); err != nil {
			return c, err
		}
		if err := os.MkdirAll(filepath.Join(ndir, "wal"), 0o755); err != nil {
			return c, err
		}
		if n.store, err = wal.Open(filepath.Join(ndir, "wal")); err != nil {
			return c, fmt.Errorf("open raft-wal: %w", err)
		}
		snaps, err := raft.NewFileSnapshotStoreWithLogger(ndir, snapshotRetain, logger.Named("snap"))
		if err != nil {
			return c, fmt.Errorf("snapshot store: %w", err)
		}
		n.transport, err = raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, transportMaxPool, transportTimeout, logger.Named("net"))
		if err != nil {
			return c, fmt.Errorf("tcp transport: %w", err)
		}
		conf := raft.DefaultConfig()
		conf.LocalID = id
		conf.Logger = logger.Named(string(id))
		conf.BatchApplyCh = opts.batchApplyCh
		conf.MaxAppendEntries = opts.maxAppendEntries
		if opts.noSnapshots {
			conf.TrailingLogs = noSnapshotEntries
			conf.SnapshotThreshold = noSnapshotEntries
			conf.SnapshotInterval = noSnapshotInterval
		}
		var logs raft.LogStore = n.store
		if opts.logCacheEntries > 0 {
			if logs, err = raft.NewLogCache(opts.logCacheEntries, n.store); err != nil {
				return c, fmt.Errorf("log cache: %w", err)
			}
		}
		n.raft, err = raft.NewRaft(conf, newKVFSM(), logs, n.store, snaps, n.transport)
		if err != nil {
			return c, fmt.Errorf("new raft %s: %w", id, err)
		}
		servers = append(servers, raft.Server{ID: id, Address: n.transport.LocalAddr()})
	}
	if err := c.nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		return c, fmt.Errorf("bootstrap: %w", err)
	}
	if _, err := c.waitLeader(ctx); err != nil {
		return c, err
	}
	return c, nil
}

// waitLeader polls until one node is leader, or the deadline passes.
func (c *cluster) waitLeader(ctx context.Context) (*node, error) {
	ctx, cancel := context.WithTimeout(ctx, leaderWaitTimeout)
	defer cancel()
	tick := time.NewTicker(leaderPollInterval)
	defer tick.Stop()
	for {
		if l := c.leader(); l != nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader elected: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// leader returns the node that believes it is leader, or nil.
func (c *cluster) leader() *node {
	for _, n := range c.nodes {
		if n.raft != nil && n.raft.State() == raft.Leader {
			return n
		}
	}
	return nil
}

// close shuts every node down and removes the data directory.
func (c *cluster) close() error {
	var errs []error
	for _, n := range c.nodes {
		if n.raft != nil {
			errs = append(errs, n.raft.Shutdown().Error())
		}
		if n.transport != nil {
			errs = append(errs, n.transport.Close())
		}
		if n.store != nil {
			errs = append(errs, n.store.Close())
		}
	}
	errs = append(errs, os.RemoveAll(c.dir))
	return errors.Join(errs...)
}

// applyTarget sends each write to the current leader with raft.Apply.
type applyTarget struct {
	c *cluster
	// leader is the node writes go to. When Apply says this node is not
	// (or no longer) the leader, the op fails (counted as an error, never
	// retried, so the result stays honest) and the target waits for a new
	// leader before returning, as a redirecting client would; without the
	// wait, every client would spin on instant errors and starve the
	// election of CPU.
	leader atomic.Pointer[node]
	// timeout is Apply's enqueue timeout, and bounds the wait for a leader.
	timeout time.Duration
}

func newApplyTarget(c *cluster, leader *node, timeout time.Duration) *applyTarget {
	t := &applyTarget{c: c, timeout: timeout}
	t.leader.Store(leader)
	return t
}

// Do implements bench.Target. Apply has no context, only its own timeout,
// so ctx is consulted only while waiting for a new leader.
func (t *applyTarget) Do(ctx context.Context, op *bench.Op) error {
	if !op.Write {
		return errors.New("hashicorp peer: reads are not supported")
	}
	err := t.leader.Load().raft.Apply(encodePut(op.Key, op.Value), t.timeout).Error()
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		wctx, cancel := context.WithTimeout(ctx, t.timeout)
		if l, werr := t.c.waitLeader(wctx); werr == nil {
			t.leader.Store(l)
		}
		cancel()
	}
	return err
}

// ErrorKind implements bench.ErrorClassifier for hashicorp's errors.
func (t *applyTarget) ErrorKind(err error) string {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return bench.KindNotLeader
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return bench.KindTimeout
	case errors.Is(err, raft.ErrLeadershipLost):
		return "leadership_lost"
	case errors.Is(err, raft.ErrRaftShutdown):
		return "shutdown"
	}
	return bench.ErrorKind(err)
}

// lagSource samples replication progress from the in-process nodes,
// following the target's current leader.
type lagSource struct {
	c      *cluster
	target *applyTarget
}

// SampleLag implements bench.LagSource.
func (l *lagSource) SampleLag(context.Context) (bench.LagSample, error) {
	leader := l.target.leader.Load()
	commit, err := strconv.ParseUint(leader.raft.Stats()["commit_index"], 10, 64)
	if err != nil {
		return bench.LagSample{}, fmt.Errorf("leader commit_index: %w", err)
	}
	s := bench.LagSample{LeaderLast: leader.raft.LastIndex(), LeaderCommit: commit, Followers: map[uint64]uint64{}}
	for _, n := range l.c.nodes {
		if n == leader {
			continue
		}
		id, _ := strconv.ParseUint(string(n.id), 10, 64)
		s.Followers[id] = n.raft.LastIndex()
	}
	return s, nil
}
