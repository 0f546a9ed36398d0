package node

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/raft"
	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/raft/sm"
	"github.com/raftpipe/raftpipe/raft/transport"
	"github.com/raftpipe/raftpipe/wire"
)

// replica is this host's member of one Raft group: the core (RawNode), its
// log view and storage adapter, the applier and the state machine, the
// waiters, and the loop goroutine that owns them. Everything it shares
// with other groups (the transport, the WAL's writer and fsync, the client
// server, metrics) belongs to the host (Node) and is reached through host.
// A host has Config.Groups replicas, one per group, all alike.
//
// Goroutines: the loop (owns the RawNode and every field marked "owned by
// the loop"), the apply goroutine (owns applying to the state machine), and
// one goroutine per snapshot in flight; all counted in the host's wg.
type replica struct {
	// host is the process this replica runs in.
	host *Node
	// group is the Raft group ID; every message this replica sends
	// carries it, and the host routes received messages by it.
	group uint64
	// cfg is the host's validated configuration, the same for every group
	// (every group has the same members and settings).
	cfg Config
	// log is the host's logger.
	log *slog.Logger
	// fs is Config.FS: every file the replica writes goes through it.
	fs vfs.FS
	// wal is this group's view of the host's WAL: the only way the
	// replica reaches its log (logView lists what it may call).
	wal logView
	// sm is the replicated state machine.
	sm sm.StateMachine
	// store adapts wal to the core's Storage.
	store *storage
	// tr is the host's transport, shared by every replica.
	tr *transport.Transport
	// rn is the core. Owned by the loop goroutine.
	rn *raft.RawNode
	// stopc is the host's: closed by Stop; every goroutine watches it.
	stopc chan struct{}
	// wg is the host's: it tracks the loop, the apply goroutine and
	// snapshot goroutines, so Stop waits for them.
	wg *sync.WaitGroup
	// metrics is the host's counter set, shared by every group: counts
	// add up over the groups, and the few with loop-owned state (leader
	// changes, elections, RTT, the propose-to-apply sampler) follow group
	// 0 only. Per-group labels would cost a series per group.
	metrics *counters

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
	// loopDone is closed when the loop goroutine exits.
	loopDone chan struct{}
	// tickc carries the host ticker's ticks (ticker.go); it skips the
	// replica while quiesced is set.
	tickc chan struct{}
	// quiesced mirrors the core's Quiesced() for the host ticker; written
	// by the loop at the end of each turn.
	quiesced atomic.Bool
	// quiescedLoop is the loop's own copy of quiesced, and ticksSeen the
	// host tick count the core has accounted for (ticker.go). Owned by the
	// loop.
	quiescedLoop bool
	ticksSeen    uint64
	// balanceTicks counts ticks since the last leader-balance check
	// (balance.go). Owned by the loop.
	balanceTicks int

	// ap is the apply side: waiters, reads, and the apply goroutine.
	ap *applier

	// members is the address book and membership, owned by the loop.
	members membership
	// memberHist is the membership as of recent applied indexes, for
	// framing snapshots (snapframe.go).
	memberHist memberHistory
	// leaderClientAddr is the leader's client address, for not-leader
	// answers; written by the loop.
	leaderClientAddr atomic.Pointer[string]
	// leaderID is the known leader, written by the loop.
	leaderID atomic.Uint64
	// isLeader is set while this replica leads, written by the loop.
	isLeader atomic.Bool

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
	// stages times sampled writes stage by stage (stages.go); only group
	// 0's is initialised and sampled.
	stages stageTracker
	// removedPeers holds nodes whose removal this node applied; their
	// messages get a removal notice instead of reaching the core. Owned by
	// the loop.
	removedPeers map[uint64]struct{}
	// clock counts core ticks by elapsed monotonic time in lease mode
	// (clock.go); owned by the loop.
	clock tickClock
}

// newReplica takes group's state machine smach (closing it on an error)
// with the log view l, finishes an
// interrupted snapshot install, bootstraps if asked, rebuilds the
// membership from the log, and builds the core. It does not start the
// goroutines (start does) and does not touch the transport, which the
// host creates once its replicas exist. On an error the state machine is
// closed again.
func newReplica(h *Node, group uint64, l logView, smach sm.StateMachine) (_ *replica, err error) {
	cfg := h.cfg
	G := cfg.Groups
	rep := &replica{
		host:         h,
		group:        group,
		cfg:          cfg,
		log:          h.log,
		fs:           h.fs,
		wal:          l,
		stopc:        h.stopc,
		wg:           &h.wg,
		metrics:      &h.metrics,
		inbox:        make(chan wire.Message, perGroup(cfg.MaxInboxMsgs, G, minGroupInboxMsgs)),
		propc:        make(chan *proposal, perGroup(cfg.MaxPendingProposals, G, minGroupProposals)),
		readc:        make(chan *readReq, perGroup(cfg.MaxPendingReads, G, minGroupReads)),
		eventc:       make(chan func(), 64),
		tickc:        make(chan struct{}, 1),
		sm:           smach,
		persisted:    make(chan struct{}, 1),
		loopDone:     make(chan struct{}),
		pendingReads: map[uint64][]*readReq{},
		removedPeers: map[uint64]struct{}{},
	}
	// With many groups only group 0 samples write stages: Node.StageStats
	// reports group 0's, and a tracker's histograms cost about 100 KiB.
	if group == 0 {
		rep.stages.init(cfg.StageSampleEvery)
	}
	defer func() {
		if err != nil {
			rep.sm.Close()
			rep.sm = nil
		}
	}()
	if err := rep.finishInstall(); err != nil {
		return nil, err
	}
	if err := rep.maybeBootstrap(); err != nil {
		return nil, err
	}
	applied := rep.sm.AppliedIndex()
	rep.store = &storage{log: l, applied: applied}
	if err := rep.recoverMembers(); err != nil {
		return nil, err
	}

	rep.rn, err = raft.NewRawNode(raft.Config{
		ID:                         cfg.ID,
		ElectionTicks:              cfg.ElectionTicks,
		HeartbeatTicks:             cfg.HeartbeatTicks,
		Storage:                    rep.store,
		Applied:                    applied,
		MaxSizePerMsgBytes:         cfg.MaxSizePerMsgBytes,
		MaxInflightMsgs:            cfg.MaxInflightMsgs,
		MaxInflightBytes:           cfg.MaxInflightBytes,
		MaxUncommittedEntriesBytes: cfg.MaxUncommittedBytes,
		PreVote:                    !cfg.DisablePreVote,
		CheckQuorum:                !cfg.DisableCheckQuorum,
		LeaseReads:                 cfg.ReadMode == ReadModeLease,
		LeaseDriftTicks:            cfg.LeaseDriftTicks,
		QuiesceAfterTicks:          cfg.QuiesceAfterTicks,
		// The group is in the stream so that the groups of one host do not
		// time out in lockstep; for group 0 it is the single group's seed.
		Rand:   rand.New(rand.NewPCG(cfg.Seed, cfg.ID+group)),
		Logger: rep.log,
	})
	if err != nil {
		return nil, err
	}
	rep.members.conf = rep.rn.Status().Conf
	// The membership as of the applied index, which a snapshot taken now
	// would carry: the core's configuration there, and every address.
	at := rep.members.clone()
	at.conf = rep.rn.ConfStateAt(applied)
	rep.memberHist.reset(applied, encodeMembership(nil, &at))
	rep.hardState.latest = l.HardState()
	rep.hardState.handed = rep.hardState.latest
	rep.lastHanded.index = l.LastIndex()
	rep.lastHanded.term, _ = l.Term(rep.lastHanded.index)
	rep.ap = newApplier(rep)
	return rep, nil
}

// openStateMachine opens Config.OpenStateMachine's state machine, or by
// default raft/kv in DataDir/kv.
func openStateMachine(cfg Config, log *slog.Logger) (sm.StateMachine, error) {
	if cfg.OpenStateMachine != nil {
		return cfg.OpenStateMachine(cfg.FS, cfg.DataDir)
	}
	kvOpts := cfg.KV
	if kvOpts.Logger == nil {
		kvOpts.Logger = log
	}
	return kv.Open(cfg.FS.PathJoin(cfg.DataDir, "kv"), kvOpts)
}

// recoverMembers builds the address book at start-up: the configured
// members, then the membership stored with the log's base, then every
// member added by a conf-change entry after the base (newer knowledge
// wins). The state machine holds no membership, so the log is the record:
// its base bytes cover everything up to the base, and the entries after
// it everything since. Entries past the applied index count too: the core
// takes a configuration into effect when it is appended, so their members
// must be reachable already (learnAddresses does the same at run time).
func (rep *replica) recoverMembers() error {
	cfg := rep.cfg
	for _, m := range cfg.Members {
		rep.members.setMember(m)
	}
	base, err := baseMembership(rep.wal)
	if err != nil {
		return err
	}
	for _, m := range base.members {
		rep.members.setMember(m)
	}
	for lo, last := rep.wal.FirstIndex(), rep.wal.LastIndex(); lo <= last; {
		ents, err := rep.wal.Entries(lo, last+1, recoverScanBytes)
		if err != nil {
			return fmt.Errorf("node: reading the log for its membership: %w", err)
		}
		if len(ents) == 0 {
			return fmt.Errorf("node: reading the log for its membership: no entries at %d..%d", lo, last)
		}
		for i := range ents {
			if m, ok := addedMember(&ents[i]); ok {
				rep.members.setMember(m)
			}
		}
		lo = ents[len(ents)-1].Index + 1
	}
	if cfg.AdvertisePeerAddr != "" || cfg.AdvertiseClientAddr != "" {
		me, _ := rep.members.member(cfg.ID)
		me.ID = cfg.ID
		if cfg.AdvertisePeerAddr != "" {
			me.PeerAddr = cfg.AdvertisePeerAddr
		}
		if cfg.AdvertiseClientAddr != "" {
			me.ClientAddr = cfg.AdvertiseClientAddr
		}
		rep.members.setMember(me)
	}
	return nil
}

// recoverScanBytes bounds one read of the start-up membership scan: the
// log between the base and its end is read in pieces of about this size,
// so a long log never sits in memory at once.
const recoverScanBytes = 4 << 20

// addedMember returns the member a conf-change entry adds (with its
// addresses), if e is one that carries them.
func addedMember(e *wire.Entry) (Member, bool) {
	if e.Type != wire.EntryConfChange {
		return Member{}, false
	}
	var cc wire.ConfChange
	if wire.DecodeConfChange(e.Data, &cc) != nil || cc.Type == wire.ConfRemove || len(cc.Context) == 0 {
		return Member{}, false
	}
	m, err := decodeMemberContext(cc.Context)
	if err != nil || m.ID != cc.NodeID {
		return Member{}, false
	}
	return m, true
}

// start starts the loop and the apply goroutine.
func (rep *replica) start() {
	rep.wg.Add(2)
	go rep.ap.run()
	go rep.run()
}

// failFatal stops the host on an error this replica cannot recover from
// (a WAL or state-machine failure).
func (rep *replica) failFatal(err error) { rep.host.failFatal(err) }

// maybeBootstrap writes the initial membership into a brand-new log as
// committed conf-change entries 1..N in term 1 (every initial node writes
// the same entries), so that the log alone tells any later member the
// whole configuration history.
//
// The entries and the hard state go out in one WAL batch, the hard state
// last, so a crash can leave a prefix of the entries without the hard
// state (which is then still empty). Such a log was never acknowledged to anyone and must
// not survive as a partial membership: it is truncated and written again.
func (rep *replica) maybeBootstrap() error {
	if !rep.cfg.Bootstrap || rep.sm.AppliedIndex() > 0 || rep.wal.FirstIndex() != 1 {
		return nil
	}
	hs := rep.wal.HardState()
	if rep.wal.LastIndex() > 0 || !hs.IsEmpty() {
		if !hs.IsEmpty() || !rep.onlyBootstrapEntries() {
			return nil // bootstrapped (or joined) before: stored state wins
		}
		rep.log.Warn("redoing a bootstrap that a crash interrupted", "entries", rep.wal.LastIndex())
		if err := rep.wal.TruncateSuffix(1); err != nil {
			return fmt.Errorf("node: redo bootstrap: %w", err)
		}
	}
	// Sorted by ID so that every founder writes identical entries whatever
	// order its member list was given in.
	members := slices.SortedFunc(slices.Values(rep.cfg.Members), func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	ents := make([]wire.Entry, 0, len(members))
	for i, m := range members {
		cc := wire.ConfChange{Type: wire.ConfAddVoter, NodeID: m.ID, Context: encodeMemberContext(m)}
		ents = append(ents, wire.Entry{Term: 1, Index: uint64(i + 1), Type: wire.EntryConfChange, Data: wire.AppendConfChange(nil, &cc)})
	}
	hs = wire.HardState{Term: 1, Commit: uint64(len(ents))}
	// Queued, not waited for: the host waits for every group's bootstrap
	// batch at once (Node.open), so that a thousand new groups share a few
	// fsyncs instead of paying one each. The view reflects the entries at
	// once, which is all the rest of start-up reads; nothing is sent
	// before the host's wait returns.
	h := rep.host
	h.boot.Add(1)
	rep.wal.AppendAsync(ents, &hs, func(err error) {
		if err != nil {
			err = fmt.Errorf("group %d: %w", rep.group, err)
			h.bootErr.CompareAndSwap(nil, &err)
		}
		h.boot.Done()
	})
	if rep.group == 0 {
		rep.log.Info("bootstrapped new cluster", "members", len(ents), "groups", rep.cfg.Groups)
	}
	return nil
}

// onlyBootstrapEntries reports whether the log holds nothing but term-1
// conf-change entries, as an interrupted bootstrap leaves. A node that
// joined an existing cluster gets its entries from a leader of term 2 or
// more (term 1 ends with the bootstrap itself), and its hard state records
// that term, so it is never mistaken for one.
func (rep *replica) onlyBootstrapEntries() bool {
	last := rep.wal.LastIndex()
	if last > uint64(len(rep.cfg.Members)) {
		return false
	}
	if last == 0 {
		return true
	}
	ents, err := rep.wal.Entries(1, last+1, 1<<30)
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

// submitEvent runs fn on the loop goroutine; false if the node stopped.
func (rep *replica) submitEvent(ctx context.Context, fn func()) bool {
	select {
	case rep.eventc <- fn:
		return true
	case <-rep.stopc:
		return false
	case <-ctx.Done():
		return false
	}
}

// failQueued answers work still queued for the loop after it exited: writes
// that never reached the core did not apply, but the caller cannot tell
// them from ones that did, so they get StatusUnknown like the rest.
func (rep *replica) failQueued(err error) {
	for {
		select {
		case p := <-rep.propc:
			rep.metrics.proposalFailed(failStopped, 1)
			p.finish(proposalResult{status: wire.StatusUnknown, err: err})
		case r := <-rep.readc:
			r.finish(readResult{status: wire.StatusError, err: err})
		default:
			for seq, reads := range rep.pendingReads {
				delete(rep.pendingReads, seq)
				for _, r := range reads {
					r.finish(readResult{status: wire.StatusError, err: err})
				}
			}
			return
		}
	}
}
