package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/raft/transport"
	"github.com/raftpipe/raftpipe/wal"
)

// Node is one raftpipe process: the host of this node's replicas. It owns
// what every Raft group on the process shares: the WAL (one writer, one
// fsync for all), the peer transport (one connection per peer host, its
// messages routed by group), the client server, the admin HTTP handler
// and the metrics. Each group this host is a member of is a replica
// (replica.go): its core, storage, applier, state machine and loop.
//
// A host runs Config.Groups replicas, groups 0 to G-1, all with the same
// members. Requests route by key (wire.GroupOf) to their group's replica
// (Submit, Do, Put, Get and the client server); the administrative calls
// (Status, AddMember, TransferLeadership, ...) act on group 0, and
// GroupStatus, GroupLeader and Groups look at any group.
//
// Goroutines: per replica a loop (owns the RawNode) and an apply
// goroutine, plus one per snapshot in flight; the host ticker; the WAL writer; the
// transport's goroutines; the client server's accept loop plus two
// goroutines per client connection. Stop ends all of them.
type Node struct {
	// cfg is the validated configuration.
	cfg Config
	// log is the structured logger, tagged with the node ID.
	log *slog.Logger
	// fs is Config.FS: every file the node writes goes through it.
	fs vfs.FS
	// snapSeq numbers snapshot files so that names never repeat, across
	// every group of the host.
	snapSeq atomic.Uint64
	// wal is the durable Raft log of every group on this host.
	wal *wal.Log
	// tr carries peer messages and snapshots for every group.
	tr *transport.Transport
	// replicas holds this host's replicas, indexed by group ID. Written
	// once by open, before the transport can deliver anything; read-only
	// after, so routing a message takes no lock.
	replicas []*replica
	// r0 is replicas[0]: the single group of a one-group host, and the
	// group the administrative methods act on.
	r0 *replica
	// unknownGroup counts and logs peer messages for groups this host
	// does not have (route.go).
	unknownGroup unknownGroupDrops
	// engine is the kv.Engine whose group views are the state machines of
	// a host with more than one group (nil with one group, or with
	// Config.OpenStateMachine). Closed after every view.
	engine *kv.Engine
	// ticks counts the host ticker's ticks (ticker.go): a replica that
	// stopped being ticked while quiesced catches up on the difference.
	ticks atomic.Uint64
	// peerDownPending holds the peers whose loss onPeerDown is still
	// reporting to the replicas (uint64 -> struct{}).
	peerDownPending sync.Map
	// boot waits for the bootstrap batches of new groups (maybeBootstrap),
	// queued together so that they share fsyncs; bootErr keeps the first
	// failure.
	boot    sync.WaitGroup
	bootErr atomic.Pointer[error]
	// snapSends holds one token per outgoing snapshot transfer, over all
	// groups (maxHostSnapshotSends).
	snapSends chan struct{}
	// balanceTokens is what is left of this tick's leader-balancing
	// budget (balanceTransfersPerTick); the host ticker refills it.
	balanceTokens atomic.Int64

	// srv is the client server (nil without ClientAddr).
	srv *clientServer
	// metrics holds counters exported on /metrics.
	metrics counters
	// draining is set by Drain: new requests are refused (retryable).
	draining atomic.Bool

	// stopc is closed by Stop; every goroutine watches it.
	stopc chan struct{}
	// stopOnce guards stopc.
	stopOnce sync.Once
	// wg tracks every replica's loop, apply and snapshot goroutines.
	wg sync.WaitGroup
	// fatal records the first fatal error (a WAL failure) or ErrRemoved;
	// the node stops serving after it.
	fatal atomic.Pointer[error]
}

// Start opens (or creates) the node's data, recovers, and starts serving.
func Start(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:   cfg,
		log:   cfg.Logger.With("node", cfg.ID),
		fs:    cfg.FS,
		stopc: make(chan struct{}),

		snapSends: make(chan struct{}, maxHostSnapshotSends),
	}
	if err := n.open(); err != nil {
		if n.tr != nil {
			n.tr.Close()
		}
		n.closeStores()
		return nil, err
	}
	for _, rep := range n.replicas {
		rep.start()
	}
	n.wg.Add(1)
	go n.runTicker()
	if cfg.ClientAddr != "" {
		srv, err := newClientServer(n, cfg.ClientAddr)
		if err != nil {
			n.Stop()
			return nil, err
		}
		n.srv = srv
	}
	n.log.Info("node started", "peer", n.PeerAddr(), "client", n.ClientAddr(),
		"first", n.wal.FirstIndex(), "last", n.wal.LastIndex(), "applied", n.r0.sm.AppliedIndex(), "groups", cfg.Groups)
	return n, nil
}

// open prepares the data directory and the WAL, recovers the replicas,
// then starts the transport (whose handlers route to the replicas, so it
// comes last) and registers every known member with it.
func (n *Node) open() error {
	cfg := n.cfg
	if err := vfsutil.MkdirAllDurable(n.fs, cfg.DataDir); err != nil {
		return fmt.Errorf("node: data dir: %w", err)
	}
	// Before anything is changed: a directory of another group count is
	// refused untouched.
	if err := n.checkGroups(); err != nil {
		return err
	}
	for _, d := range []string{snapInDir, snapOutDir} {
		dir := n.fs.PathJoin(cfg.DataDir, d)
		if err := n.fs.RemoveAll(dir); err != nil {
			return fmt.Errorf("node: clear %s: %w", dir, err)
		}
		if err := n.fs.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("node: %s: %w", dir, err)
		}
	}
	if err := vfsutil.SyncDir(n.fs, cfg.DataDir); err != nil {
		return err
	}
	walOpts := cfg.WAL
	if walOpts.Logger == nil {
		walOpts.Logger = n.log
	}
	if walOpts.MaxGroups != 0 && walOpts.MaxGroups < cfg.Groups {
		walOpts.MaxGroups = cfg.Groups
	}
	var err error
	if n.wal, err = wal.Open(n.fs.PathJoin(cfg.DataDir, "wal"), walOpts); err != nil {
		return err
	}
	// Every group's view shares the one writer and fsync; group 0 is the
	// Log's own methods, so a single-group host reads its log as before.
	n.replicas = make([]*replica, cfg.Groups)
	for g := range n.replicas {
		var view logView = n.wal
		if g > 0 {
			view = n.wal.Group(uint64(g))
		}
		sm, err := n.openGroupStateMachine(uint64(g))
		if err != nil {
			return fmt.Errorf("node: group %d: %w", g, err)
		}
		rep, err := newReplica(n, uint64(g), view, sm)
		if err != nil {
			return fmt.Errorf("node: group %d: %w", g, err)
		}
		n.replicas[g] = rep
	}
	n.r0 = n.replicas[0]
	// Every group's founding membership was queued as one WAL batch each;
	// one fsync (or a few) made them durable. Nothing is sent before.
	n.boot.Wait()
	if p := n.bootErr.Load(); p != nil {
		return fmt.Errorf("node: bootstrap: %w", *p)
	}

	n.tr, err = transport.New(transport.Config{
		ClusterID:       cfg.ClusterID,
		NodeID:          cfg.ID,
		ListenAddr:      cfg.PeerAddr,
		TLS:             cfg.TLS,
		Wire:            cfg.Wire,
		Handler:         n.onPeerMessage,
		SnapshotHandler: n.onSnapshot,
		PeerDown:        n.onPeerDown,
		Logger:          n.log,
	})
	if err != nil {
		return err
	}
	for _, rep := range n.replicas {
		rep.tr = n.tr
	}
	// Peers are hosts: every group names the same ones (re-adding a peer
	// at its known address changes nothing), and they share one link.
	for _, rep := range n.replicas {
		for _, m := range rep.members.members {
			n.addPeer(m)
		}
	}
	return nil
}

// ID is this node's Raft ID.
func (n *Node) ID() uint64 { return n.cfg.ID }

// PeerAddr is the bound peer listener address.
func (n *Node) PeerAddr() string {
	if n.tr == nil {
		return ""
	}
	return n.tr.Addr().String()
}

// ClientAddr is the bound client listener address ("" without one).
func (n *Node) ClientAddr() string {
	if n.srv == nil {
		return ""
	}
	return n.srv.ln.Addr().String()
}

// IsLeader reports whether this node currently leads.
func (n *Node) IsLeader() bool { return n.r0.isLeader.Load() }

// Leader is the known leader's ID, 0 if unknown.
func (n *Node) Leader() uint64 { return n.r0.leaderID.Load() }

// Done is closed once the node has stopped (by Stop or a fatal error).
func (n *Node) Done() <-chan struct{} { return n.r0.loopDone }

// Err is the fatal error that stopped the node, if any, or ErrRemoved if
// it stopped because it was removed from the cluster.
func (n *Node) Err() error {
	if p := n.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// failFatal records a fatal error (a WAL write or sync failure: not
// retryable) and stops the node.
func (n *Node) failFatal(err error) {
	if n.fatal.CompareAndSwap(nil, &err) {
		n.log.Error("fatal error, stopping", "err", err)
	}
	n.stopOnce.Do(func() { close(n.stopc) })
}

// stopWith records why the node stops (if it is the first reason) and
// stops it, without logging it as a failure.
func (n *Node) stopWith(err error) {
	n.fatal.CompareAndSwap(nil, &err)
	n.stopOnce.Do(func() { close(n.stopc) })
}

// Stop stops accepting work, ends every goroutine, and closes the WAL and
// the state machines. Pending requests fail (writes with an unknown
// outcome). Safe to call more than once.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() { close(n.stopc) })
	if n.srv != nil {
		n.srv.close()
	}
	n.wg.Wait()
	var errs []error
	if n.tr != nil {
		errs = append(errs, n.tr.Close())
	}
	for _, rep := range n.replicas {
		if rep == nil {
			continue
		}
		rep.failQueued(ErrStopped)
		rep.ap.failAll(ErrStopped)
	}
	errs = append(errs, n.closeStores())
	return errors.Join(errs...)
}

// closeStores closes the WAL and the replicas' state machines if open.
func (n *Node) closeStores() error {
	var errs []error
	if n.wal != nil {
		errs = append(errs, n.wal.Close())
		n.wal = nil
	}
	for _, rep := range n.replicas {
		if rep != nil && rep.sm != nil {
			errs = append(errs, rep.sm.Close())
			rep.sm = nil
		}
	}
	// The engine last: its groups' views flush through it on Close.
	if n.engine != nil {
		errs = append(errs, n.engine.Close())
		n.engine = nil
	}
	return errors.Join(errs...)
}

// setSyncDelay sets the WAL's fsync delay; replicas call it as they gain
// and lose leadership (adjustLeaderSyncDelay). With many groups it becomes
// a host-wide choice, which is why it is the host's to make.
func (n *Node) setSyncDelay(d time.Duration) { n.wal.SetSyncDelay(d) }

// listen opens a TCP listener; the caller wraps it in TLS if configured.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("node: listen %s: %w", addr, err)
	}
	return ln, nil
}

// addPeer registers m's peer address with the transport (never our own).
// Peers are hosts: every group a peer host is a member of shares its link.
func (n *Node) addPeer(m Member) {
	if m.ID == n.cfg.ID {
		return
	}
	addr := m.PeerAddr
	if n.cfg.ResolvePeerAddr != nil {
		addr = n.cfg.ResolvePeerAddr(m.ID, addr)
	}
	n.tr.AddPeer(m.ID, addr)
}

// snapFileName returns a fresh name in DataDir/dir for a snapshot file.
func (n *Node) snapFileName(dir, prefix string, peer uint64) string {
	return n.fs.PathJoin(n.cfg.DataDir, dir, fmt.Sprintf("%s-%d-%d", prefix, peer, n.snapSeq.Add(1)))
}

// InboxDropped is the number of peer messages dropped because the loop's
// inbox was full.
func (n *Node) InboxDropped() uint64 { return n.metrics.inboxDropped.Load() }

// UnknownGroupDropped is the number of peer messages and snapshots dropped
// because they named a group this node does not host.
func (n *Node) UnknownGroupDropped() uint64 { return n.unknownGroup.count.Load() }

// StateMachineWriteStalls is how many times the state machine delayed its
// writes (Pebble's write stalls, for benchmarks); 0 for a state machine
// that does not report them.
func (n *Node) StateMachineWriteStalls() int64 {
	if s, ok := n.r0.sm.(interface{ WriteStalls() int64 }); ok {
		return s.WriteStalls()
	}
	return 0
}

// WALStats reports the WAL's group-commit counters (batches, entries,
// fsyncs and their latency), e.g. for entries-per-fsync in benchmarks.
func (n *Node) WALStats() wal.Stats { return n.wal.Stats() }
