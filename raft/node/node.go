package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/raft"
	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/raft/transport"
	"github.com/raftpipe/raftpipe/wal"
	"github.com/raftpipe/raftpipe/wire"
)

// Node runs one member of a raftpipe cluster: the consensus core, its WAL,
// the peer transport, the Pebble state machine and the client server.
//
// Goroutines: the loop (owns the RawNode), the apply loop (owns applying
// to the state machine), the WAL writer, the transport's goroutines, one
// goroutine per snapshot in flight, and the client server's accept loop plus
// two goroutines per client connection. Stop ends all of them.
type Node struct {
	// cfg is the validated configuration.
	cfg Config
	// log is the structured logger, tagged with the node ID.
	log *slog.Logger
	// fs is Config.FS: every file the node writes goes through it.
	fs vfs.FS
	// snapSeq numbers snapshot files so that names never repeat.
	snapSeq atomic.Uint64
	// wal is the durable Raft log.
	wal *wal.Log
	// kv is the replicated state machine.
	kv *kv.Store
	// store adapts wal to the core's Storage.
	store *storage
	// tr carries peer messages and snapshots.
	tr *transport.Transport
	// rn is the core. Owned by the loop goroutine.
	rn *raft.RawNode

	// inbox carries peer messages from the transport to the loop (bounded;
	// overflow is dropped, which Raft tolerates).
	inbox chan wire.Message
	// propc carries client writes to the loop (bounded; overflow is Busy).
	propc chan *proposal
	// readc carries linearizable reads to the loop (bounded).
	readc chan *readReq
	// readsPending counts linearizable reads accepted and not yet
	// answered, wherever they wait: readc, a ReadIndex round or the apply
	// queue. Bounded by MaxPendingReads (beyond it: Busy). Counting reads,
	// not ReadIndex batches, is what keeps reads queued behind a leader
	// that cannot commit bounded.
	readsPending atomic.Int64
	// eventc carries rare events (snapshots, compaction, admin, status
	// requests) to the loop.
	eventc chan func()
	// persisted wakes the loop when the WAL reports durability; the
	// durable position itself is in persistedAt.
	persisted chan struct{}
	// persistedAt is the latest (index, term) the WAL made durable, written
	// by the WAL's completion callbacks in order.
	persistedAt struct {
		sync.Mutex
		index, term uint64
		fresh       bool
	}

	// ap is the apply side: waiters, reads, and the apply goroutine.
	ap *applier

	// members is the address book and membership, owned by the loop.
	members membership
	// leaderClientAddr is the leader's client address, for not-leader
	// answers; written by the loop.
	leaderClientAddr atomic.Pointer[string]
	// leaderID is the known leader, written by the loop.
	leaderID atomic.Uint64
	// isLeader is set while this node leads, written by the loop.
	isLeader atomic.Bool

	// srv is the client server (nil without ClientAddr).
	srv *clientServer

	// stopc is closed by Stop; every goroutine watches it.
	stopc chan struct{}
	// stopOnce guards stopc.
	stopOnce sync.Once
	// wg tracks the loop, the apply goroutine and snapshot goroutines.
	wg sync.WaitGroup
	// fatal records the first fatal error (a WAL failure); the node stops
	// serving writes after it.
	fatal atomic.Pointer[error]
	// loopDone is closed when the loop goroutine exits.
	loopDone chan struct{}

	// snaps tracks snapshot transfers, owned by the loop.
	snaps snapshotState
	// lastHanded is the (index, term) of the last entry handed to the WAL.
	lastHanded struct{ index, term uint64 }
	// removedAt is the index of a committed change removing this node,
	// set by applyConfChanges until handleReady has queued its batch.
	// Owned by the loop.
	removedAt uint64
	// leaderDelayOn says the WAL currently runs with LeaderSyncDelay (see
	// adjustLeaderSyncDelay). Owned by the loop.
	leaderDelayOn bool
	// hardState tracks, for the loop, the core's latest hard state and the
	// last one handed to the WAL (see hardStateToPersist).
	hardState struct{ latest, handed wire.HardState }
	// readSeq numbers ReadIndex batches.
	readSeq uint64
	// pendingReads maps a ReadIndex context to its batch, owned by the loop.
	pendingReads map[uint64][]*readReq
	// metrics holds counters exported on /metrics.
	metrics counters
	// stages times sampled writes stage by stage (stages.go).
	stages stageTracker
	// draining is set by Drain: new requests are refused (retryable).
	draining atomic.Bool
	// removedPeers holds nodes whose removal this node applied; their
	// messages get a removal notice instead of reaching the core. Owned by
	// the loop.
	removedPeers map[uint64]struct{}
	// clock counts core ticks by elapsed monotonic time in lease mode
	// (clock.go); owned by the loop.
	clock tickClock
}

// Start opens (or creates) the node's data, recovers, and starts serving.
func Start(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:          cfg,
		log:          cfg.Logger.With("node", cfg.ID),
		fs:           cfg.FS,
		inbox:        make(chan wire.Message, cfg.MaxInboxMsgs),
		propc:        make(chan *proposal, cfg.MaxPendingProposals),
		readc:        make(chan *readReq, cfg.MaxPendingReads),
		eventc:       make(chan func(), 64),
		persisted:    make(chan struct{}, 1),
		stopc:        make(chan struct{}),
		loopDone:     make(chan struct{}),
		pendingReads: map[uint64][]*readReq{},
		removedPeers: map[uint64]struct{}{},
	}
	n.stages.init(cfg.StageSampleEvery)
	if err := n.open(); err != nil {
		if n.tr != nil {
			n.tr.Close()
		}
		n.closeStores()
		return nil, err
	}
	n.wg.Add(2)
	go n.ap.run()
	go n.run()
	if cfg.ClientAddr != "" {
		srv, err := newClientServer(n, cfg.ClientAddr)
		if err != nil {
			n.Stop()
			return nil, err
		}
		n.srv = srv
	}
	n.log.Info("node started", "peer", n.PeerAddr(), "client", n.ClientAddr(),
		"first", n.wal.FirstIndex(), "last", n.wal.LastIndex(), "applied", n.kv.AppliedIndex())
	return n, nil
}

// open recovers the WAL and the state machine, bootstraps if asked, and
// builds the core and the transport.
func (n *Node) open() error {
	cfg := n.cfg
	if err := vfsutil.MkdirAllDurable(n.fs, cfg.DataDir); err != nil {
		return fmt.Errorf("node: data dir: %w", err)
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
	var err error
	if n.wal, err = wal.Open(n.fs.PathJoin(cfg.DataDir, "wal"), walOpts); err != nil {
		return err
	}
	kvOpts := cfg.KV
	if kvOpts.Logger == nil {
		kvOpts.Logger = n.log
	}
	if n.kv, err = kv.Open(n.fs.PathJoin(cfg.DataDir, "kv"), kvOpts); err != nil {
		return err
	}
	if err := n.finishInstall(); err != nil {
		return err
	}
	if err := n.maybeBootstrap(); err != nil {
		return err
	}
	n.store = &storage{log: n.wal, applied: n.kv.AppliedIndex()}
	base, err := baseMembership(n.wal)
	if err != nil {
		return err
	}

	// The address book: configured members, then what the log's base and
	// the state machine recorded (newer knowledge wins).
	for _, m := range cfg.Members {
		n.members.setMember(m)
	}
	for _, src := range [][]byte{encodeMembership(nil, &base), n.kv.Meta()} {
		ms, err := decodeMembership(src)
		if err != nil {
			return err
		}
		for _, m := range ms.members {
			n.members.setMember(m)
		}
	}

	if cfg.AdvertisePeerAddr != "" || cfg.AdvertiseClientAddr != "" {
		me, _ := n.members.member(cfg.ID)
		me.ID = cfg.ID
		if cfg.AdvertisePeerAddr != "" {
			me.PeerAddr = cfg.AdvertisePeerAddr
		}
		if cfg.AdvertiseClientAddr != "" {
			me.ClientAddr = cfg.AdvertiseClientAddr
		}
		n.members.setMember(me)
	}

	n.rn, err = raft.NewRawNode(raft.Config{
		ID:                         cfg.ID,
		ElectionTicks:              cfg.ElectionTicks,
		HeartbeatTicks:             cfg.HeartbeatTicks,
		Storage:                    n.store,
		Applied:                    n.kv.AppliedIndex(),
		MaxSizePerMsgBytes:         cfg.MaxSizePerMsgBytes,
		MaxInflightMsgs:            cfg.MaxInflightMsgs,
		MaxInflightBytes:           cfg.MaxInflightBytes,
		MaxUncommittedEntriesBytes: cfg.MaxUncommittedBytes,
		PreVote:                    !cfg.DisablePreVote,
		CheckQuorum:                !cfg.DisableCheckQuorum,
		LeaseReads:                 cfg.ReadMode == ReadModeLease,
		LeaseDriftTicks:            cfg.LeaseDriftTicks,
		Rand:                       rand.New(rand.NewPCG(cfg.Seed, cfg.ID)),
		Logger:                     n.log,
	})
	if err != nil {
		return err
	}
	n.members.conf = n.rn.Status().Conf
	n.hardState.latest = n.wal.HardState()
	n.hardState.handed = n.hardState.latest
	n.lastHanded.index = n.wal.LastIndex()
	n.lastHanded.term, _ = n.wal.Term(n.lastHanded.index)
	n.ap = newApplier(n)

	n.tr, err = transport.New(transport.Config{
		ClusterID:       cfg.ClusterID,
		NodeID:          cfg.ID,
		ListenAddr:      cfg.PeerAddr,
		TLS:             cfg.TLS,
		Wire:            cfg.Wire,
		Handler:         n.onPeerMessage,
		SnapshotHandler: n.onSnapshot,
		Logger:          n.log,
	})
	if err != nil {
		return err
	}
	for _, m := range n.members.members {
		n.addPeer(m)
	}
	return nil
}

// maybeBootstrap writes the initial membership into a brand-new log as
// committed conf-change entries 1..N in term 1 (every initial node writes
// the same entries), so that the log alone tells any later member the
// whole configuration history.
//
// The entries and the hard state go out in one WAL batch, the hard state
// last, so a crash can leave a prefix of the entries without the hard
// state (which is then still empty). Such a log was never acknowledged to anyone and must
// not survive as a partial membership: it is truncated and written again.
func (n *Node) maybeBootstrap() error {
	if !n.cfg.Bootstrap || n.kv.AppliedIndex() > 0 || n.wal.FirstIndex() != 1 {
		return nil
	}
	hs := n.wal.HardState()
	if n.wal.LastIndex() > 0 || !hs.IsEmpty() {
		if !hs.IsEmpty() || !n.onlyBootstrapEntries() {
			return nil // bootstrapped (or joined) before: stored state wins
		}
		n.log.Warn("redoing a bootstrap that a crash interrupted", "entries", n.wal.LastIndex())
		if err := n.wal.TruncateSuffix(1); err != nil {
			return fmt.Errorf("node: redo bootstrap: %w", err)
		}
	}
	// Sorted by ID so that every founder writes identical entries whatever
	// order its member list was given in.
	members := slices.SortedFunc(slices.Values(n.cfg.Members), func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	ents := make([]wire.Entry, 0, len(members))
	for i, m := range members {
		cc := wire.ConfChange{Type: wire.ConfAddVoter, NodeID: m.ID, Context: encodeMemberContext(m)}
		ents = append(ents, wire.Entry{Term: 1, Index: uint64(i + 1), Type: wire.EntryConfChange, Data: wire.AppendConfChange(nil, &cc)})
	}
	hs = wire.HardState{Term: 1, Commit: uint64(len(ents))}
	if err := n.wal.Append(ents, &hs); err != nil {
		return fmt.Errorf("node: bootstrap: %w", err)
	}
	n.log.Info("bootstrapped new cluster", "members", len(ents))
	return nil
}

// onlyBootstrapEntries reports whether the log holds nothing but term-1
// conf-change entries, as an interrupted bootstrap leaves. A node that
// joined an existing cluster gets its entries from a leader of term 2 or
// more (term 1 ends with the bootstrap itself), and its hard state records
// that term, so it is never mistaken for one.
func (n *Node) onlyBootstrapEntries() bool {
	last := n.wal.LastIndex()
	if last > uint64(len(n.cfg.Members)) {
		return false
	}
	if last == 0 {
		return true
	}
	ents, err := n.wal.Entries(1, last+1, 1<<30)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Term != 1 || e.Type != wire.EntryConfChange {
			return false
		}
	}
	return true
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
func (n *Node) IsLeader() bool { return n.isLeader.Load() }

// Leader is the known leader's ID, 0 if unknown.
func (n *Node) Leader() uint64 { return n.leaderID.Load() }

// Done is closed once the node has stopped (by Stop or a fatal error).
func (n *Node) Done() <-chan struct{} { return n.loopDone }

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

// Stop stops accepting work, ends every goroutine, and closes the WAL and
// the state machine. Pending requests fail (writes with an unknown outcome).
// Safe to call more than once.
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
	n.failQueued(ErrStopped)
	n.ap.failAll(ErrStopped)
	errs = append(errs, n.closeStores())
	return errors.Join(errs...)
}

// closeStores closes the WAL and the state machine if open.
func (n *Node) closeStores() error {
	var errs []error
	if n.wal != nil {
		errs = append(errs, n.wal.Close())
		n.wal = nil
	}
	if n.kv != nil {
		errs = append(errs, n.kv.Close())
		n.kv = nil
	}
	return errors.Join(errs...)
}

// onPeerMessage is the transport's handler: queue for the loop, or drop.
func (n *Node) onPeerMessage(m *wire.Message) {
	select {
	case n.inbox <- *m:
	default:
		n.metrics.inboxDropped.Add(1)
	}
}

// submitEvent runs fn on the loop goroutine; false if the node stopped.
func (n *Node) submitEvent(ctx context.Context, fn func()) bool {
	select {
	case n.eventc <- fn:
		return true
	case <-n.stopc:
		return false
	case <-ctx.Done():
		return false
	}
}

// listen opens a TCP listener; the caller wraps it in TLS if configured.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("node: listen %s: %w", addr, err)
	}
	return ln, nil
}

// failQueued answers work still queued for the loop after it exited: writes
// that never reached the core did not apply, but the caller cannot tell
// them from ones that did, so they get StatusUnknown like the rest.
func (n *Node) failQueued(err error) {
	for {
		select {
		case p := <-n.propc:
			n.metrics.proposalFailed(failStopped, 1)
			p.finish(proposalResult{status: wire.StatusUnknown, err: err})
		case r := <-n.readc:
			r.finish(readResult{status: wire.StatusError, err: err})
		default:
			for seq, reads := range n.pendingReads {
				delete(n.pendingReads, seq)
				for _, r := range reads {
					r.finish(readResult{status: wire.StatusError, err: err})
				}
			}
			return
		}
	}
}

// addPeer registers m's peer address with the transport (never our own).
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

// InboxDropped is the number of peer messages dropped because the loop's
// inbox was full.
func (n *Node) InboxDropped() uint64 { return n.metrics.inboxDropped.Load() }

// StateMachineWriteStalls is how many times Pebble delayed the state
// machine's writes (diagnostics for benchmarks).
func (n *Node) StateMachineWriteStalls() int64 { return n.kv.WriteStalls() }

// WALStats reports the WAL's group-commit counters (batches, entries,
// fsyncs and their latency), e.g. for entries-per-fsync in benchmarks.
func (n *Node) WALStats() wal.Stats { return n.wal.Stats() }
