package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/raft/sm"
	"github.com/raftpipe/raftpipe/wal"
	"github.com/raftpipe/raftpipe/wire"
)

// Defaults for Config fields left zero (zero has no meaning in any of
// them; negative values are refused). Each bounds something that would
// otherwise grow or wait without limit.
const (
	// DefaultTickInterval is one logical clock tick of the core. 50 ms with
	// 10 election ticks gives a 0.5-1 s election timeout: long enough that a
	// 2-core machine running three nodes and a load generator does not
	// start spurious elections during GC, short enough to fail over quickly.
	DefaultTickInterval = 50 * time.Millisecond
	// DefaultElectionTicks is the base election timeout in ticks.
	DefaultElectionTicks = 10
	// DefaultHeartbeatTicks is the heartbeat interval in ticks.
	DefaultHeartbeatTicks = 1
	// DefaultMaxPendingProposals bounds proposals accepted but not yet
	// applied; beyond it writes are answered StatusBusy (backpressure).
	DefaultMaxPendingProposals = 64 << 10
	// DefaultMaxPendingReads bounds linearizable reads waiting for a read
	// index or for apply to catch up.
	DefaultMaxPendingReads = 64 << 10
	// DefaultMaxInboxMsgs bounds peer messages queued for the node loop; a
	// message beyond it is dropped (Raft tolerates loss).
	DefaultMaxInboxMsgs = 16 << 10
	// DefaultSnapshotEntries is how many applied entries pass between state
	// machine flushes that let the Raft log be compacted.
	DefaultSnapshotEntries = 100_000
	// DefaultRetainEntries is how many entries stay in the log behind a
	// compaction point so that slightly-behind followers catch up from the
	// log instead of a snapshot.
	DefaultRetainEntries = 20_000
	// DefaultMaxSizePerMsgBytes caps one AppendEntries batch.
	DefaultMaxSizePerMsgBytes = 1 << 20
	// DefaultMaxInflightMsgs is the pipelining window per follower.
	DefaultMaxInflightMsgs = 256
	// DefaultMaxInflightBytes caps bytes in flight per follower.
	DefaultMaxInflightBytes = 32 << 20
	// DefaultMaxUncommittedBytes caps the leader's uncommitted tail; the core
	// drops proposals beyond it and the node answers StatusBusy.
	DefaultMaxUncommittedBytes = 64 << 20
	// DefaultMaxClientConns caps concurrently open client connections.
	DefaultMaxClientConns = 1024
	// DefaultMemTableBytes is the Pebble memtable size the node uses unless
	// KV.MemTableBytes is set. Measured with raftbench -mode direct (64
	// clients, 15 s, 3 nodes on 2 cores): 4 MiB memtables gave p99 14.8 ms,
	// 16 MiB 10.6 ms, 64 MiB 4.9 ms at the same throughput: each memtable
	// flush writes and syncs an sstable on the disk the WAL fsyncs on, so
	// fewer, larger flushes disturb fewer commits.
	DefaultMemTableBytes = 64 << 20
	// DefaultLeaseDriftTicks is the clock-drift bound of lease reads
	// (ReadModeLease): the lease is ElectionTicks - 3 ticks (350 ms with
	// the defaults). One tick covers each of the two nodes' tick phase (a
	// node's count trails its monotonic clock by up to one tick), one is
	// margin for oscillator drift (~1e-4, far below a tick per election
	// timeout) and timer slop. docs/deploy.md says what it assumes.
	DefaultLeaseDriftTicks = 3
	// DefaultDrainTimeout bounds Drain as raftnode uses it (-drain-timeout).
	DefaultDrainTimeout = 10 * time.Second
	// DefaultClientInflight bounds requests in flight per client connection;
	// the connection's reader stops reading beyond it (TCP backpressure).
	DefaultClientInflight = 4096
	// MaxGroups bounds Config.Groups. It is the WAL's default group limit
	// (wal.DefaultMaxGroups): every segment's preamble restates every group
	// (about 112 bytes each), a roll costs O(groups) under the log's lock,
	// and every replica costs two goroutines and its queues, so a host is
	// sized for about a thousand groups; 4096 leaves room without letting a
	// typo ask for a million replicas.
	MaxGroups = 4096
	// DefaultQuiesceAfterTicks is Config.QuiesceAfterTicks for a host with
	// more than one group: an idle group stops heartbeating after 2 s with
	// the default tick, long after any burst of writes has settled and
	// short enough that an idle host goes quiet quickly.
	DefaultQuiesceAfterTicks = 40
)

// ErrStopped is returned by calls on a node that has stopped.
var ErrStopped = errors.New("node: stopped")

// ErrBusy means the node shed load: too many pending proposals or reads.
var ErrBusy = errors.New("node: busy")

// ErrUnknownOutcome means a proposal was handed to Raft but the node cannot
// tell whether it committed (for example the context expired first).
var ErrUnknownOutcome = errors.New("node: outcome unknown")

// Config configures one node.
type Config struct {
	// ID is this node's Raft ID; non-zero and unique in the cluster.
	ID uint64
	// ClusterID is checked in every peer and client handshake.
	ClusterID uint64
	// DataDir holds the WAL (DataDir/wal) and the state machine (DataDir/kv,
	// or wherever OpenStateMachine puts it).
	DataDir string
	// LeaderSyncDelay is an extra wait before each WAL fsync while this
	// node leads (WAL.SyncDelay applies otherwise), so that more entries
	// share one fsync. In a cluster of three the leader's own fsync is off
	// the commit path whenever both followers ack first (any two of three
	// are a quorum), so a short delay there costs little latency and saves
	// fsyncs: a leader otherwise syncs about three times as often as each
	// follower, in smaller batches. It applies only while at least
	// leaderSyncDelayMinPending writes are pending: with few in flight the
	// leader's fsync is on the commit path. 0 disables it. Not used with
	// more than one group: the WAL and its delay are the host's, and a
	// host leads some groups and follows others.
	LeaderSyncDelay time.Duration
	// FS is the one file system every durable write of the node goes
	// through: the WAL, the state machine (Pebble, its CURRENT switch and
	// restores) and snapshot files. Nil means the operating system's
	// (vfs.Default). Crash tests pass a crashable in-memory one
	// (internal/crashfs). WAL.FS and KV.FS, if nil, are set to it.
	FS vfs.FS
	// PeerAddr is the listen address for Raft peers ("127.0.0.1:0" picks a port).
	PeerAddr string
	// ClientAddr is the listen address for clients; empty disables the client
	// server (embedded use through Node.Do).
	ClientAddr string
	// AdvertisePeerAddr and AdvertiseClientAddr are the addresses others use
	// to reach this node; they override this node's entry in the address
	// book (used for not-leader hints). Empty keeps the Members entry.
	AdvertisePeerAddr, AdvertiseClientAddr string
	// Members is the initial cluster, including this node, for Bootstrap;
	// for a joining node it lists the existing members so they can be
	// reached. Ignored for addresses once the node has a stored membership.
	Members []Member
	// Bootstrap makes a brand-new node start as part of Members (all initial
	// nodes must be given the same Members). A node with stored state ignores
	// it. Without Bootstrap a new node waits to be added by the leader.
	Bootstrap bool
	// ResolvePeerAddr, if set, maps a member's advertised peer address to
	// the address this node dials (tests route links through fault-injecting
	// proxies with it; deployments can use it for NAT). Nil dials the
	// advertised address.
	ResolvePeerAddr func(id uint64, advertised string) string
	// TLS, when set, secures the peer and client ports (mutual TLS).
	TLS *tls.Config
	// Wire sets frame limits and the preferred compression for peer links.
	Wire wire.Options
	// TickInterval is the wall-clock length of one core tick.
	TickInterval time.Duration
	// ElectionTicks and HeartbeatTicks set the core's timeouts in ticks.
	ElectionTicks, HeartbeatTicks int
	// PreVote and CheckQuorum enable the core's disruption protections; both
	// default to on (DisablePreVote/DisableCheckQuorum turn them off).
	DisablePreVote, DisableCheckQuorum bool
	// ReadMode chooses how the leader confirms linearizable reads:
	// ReadModeIndex (the default) by a heartbeat round per batch,
	// ReadModeLease locally while it holds a lease (raft/doc.go, "Lease
	// reads"; needs CheckQuorum and a bounded clock drift, LeaseDriftTicks).
	// Every voter should run the same mode: a leader counts towards its
	// lease only followers that run lease mode, so a mixed cluster is safe
	// but its leader falls back to heartbeat rounds.
	ReadMode ReadMode
	// LeaseDriftTicks is the clock-drift bound of lease mode in ticks;
	// 0 means DefaultLeaseDriftTicks. Must stay below ElectionTicks.
	LeaseDriftTicks int
	// MaxPendingProposals bounds accepted-but-unapplied proposals.
	MaxPendingProposals int
	// MaxPendingReads bounds linearizable reads accepted and not yet
	// answered, counted per read wherever it waits; beyond it, Busy.
	MaxPendingReads int
	// MaxInboxMsgs bounds inbound peer messages queued for the loop.
	MaxInboxMsgs int
	// SnapshotEntries is the number of applied entries between compactions.
	SnapshotEntries uint64
	// RetainEntries is how many entries stay behind a compaction point.
	RetainEntries uint64
	// MaxSizePerMsgBytes, MaxInflightMsgs and MaxInflightBytes tune the
	// replication pipeline per follower.
	MaxSizePerMsgBytes, MaxInflightBytes uint64
	MaxInflightMsgs                      int
	// MaxUncommittedBytes bounds the leader's uncommitted log tail.
	MaxUncommittedBytes uint64
	// MaxClientConns caps open client connections.
	MaxClientConns int
	// WAL tunes the write-ahead log (segment size, sync delay, cache).
	WAL wal.Options
	// KV tunes the state machine store. The node always turns Pebble's own
	// WAL off unless KeepPebbleWAL is set: the Raft log is the durable
	// record, and the node compacts it only past what Flush made durable.
	KV kv.Options
	// KeepPebbleWAL leaves Pebble's WAL on (double logging; for debugging).
	KeepPebbleWAL bool
	// OpenStateMachine, if set, opens the state machine instead of raft/kv
	// (which is then not opened, and KV is ignored): tests run a cluster
	// on a small in-memory one to prove the seam. It gets Config.FS and
	// DataDir and picks its own place inside DataDir; every durable write
	// it makes must go through fs. The wire protocol is unchanged, so it
	// is handed kv commands (kv.DecodeCommand) and asked for reads by key.
	OpenStateMachine func(fs vfs.FS, dataDir string) (sm.StateMachine, error)
	// Groups is the number of Raft groups this cluster shards its keys
	// over (the static shard map: key k belongs to group
	// wire.GroupOf(k, Groups)); every group has the same members
	// (Members). 0 and 1 mean one group, exactly as before groups
	// existed. At most MaxGroups. It is durable: it is recorded in the
	// data directory when that is created, and a node started with a
	// different value refuses to start (ErrGroupsMismatch) without
	// touching its data. Every member must be given the same value.
	Groups int
	// QuiesceAfterTicks lets an idle group stop heartbeating after this
	// many idle ticks (raft.Config.QuiesceAfterTicks; raft/doc.go,
	// "Quiescence"). 0 means the default: DefaultQuiesceAfterTicks with
	// more than one group, off with one (so a single-group node behaves
	// as before). Negative turns it off. Every member must use the same.
	QuiesceAfterTicks int
	// DisableLeaderBalance turns off leader spreading with more than one
	// group: by default a leader of group g that is not g's preferred
	// member (the (g mod N)-th member in ID order) hands leadership to it
	// once it is caught up (balance.go). With one group it never runs.
	DisableLeaderBalance bool
	// StageSampleEvery times one accepted write in StageSampleEvery stage
	// by stage (StageStats); 0 means DefaultStageSampleEvery, negative
	// turns sampling off.
	StageSampleEvery int
	// Seed seeds the core's election jitter; 0 derives one from ID.
	Seed uint64
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// ReadMode is how linearizable reads are confirmed (Config.ReadMode).
type ReadMode uint8

const (
	// ReadModeIndex confirms each batch of reads with a heartbeat round
	// (ReadIndex, Raft thesis §6.4): no clock assumption.
	ReadModeIndex ReadMode = iota
	// ReadModeLease answers reads at the leader without a round while it
	// holds a lease of ElectionTicks - LeaseDriftTicks ticks.
	ReadModeLease
)

// String is the mode's flag spelling.
func (m ReadMode) String() string {
	switch m {
	case ReadModeIndex:
		return "index"
	case ReadModeLease:
		return "lease"
	}
	return fmt.Sprintf("ReadMode(%d)", uint8(m))
}

// ParseReadMode parses a flag value: "index" or "lease".
func ParseReadMode(s string) (ReadMode, error) {
	switch s {
	case "index", "readindex":
		return ReadModeIndex, nil
	case "lease":
		return ReadModeLease, nil
	}
	return 0, fmt.Errorf("read mode %q: want index or lease", s)
}

// withDefaults validates cfg and fills zero fields.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.ID == 0 {
		return cfg, errors.New("node: Config.ID must be non-zero")
	}
	if cfg.DataDir == "" {
		return cfg, errors.New("node: Config.DataDir is required")
	}
	if cfg.PeerAddr == "" {
		return cfg, errors.New("node: Config.PeerAddr is required")
	}
	seen := map[uint64]bool{}
	for _, m := range cfg.Members {
		if m.ID == 0 || m.PeerAddr == "" {
			return cfg, fmt.Errorf("node: member %+v needs an ID and a peer address", m)
		}
		if seen[m.ID] {
			return cfg, fmt.Errorf("node: member %d listed twice", m.ID)
		}
		seen[m.ID] = true
	}
	if cfg.Bootstrap && !seen[cfg.ID] {
		return cfg, fmt.Errorf("node: bootstrap members must include this node (%d)", cfg.ID)
	}
	// Zero means "the default" only in fields where zero cannot mean
	// anything (no node runs with a zero tick or a zero-length queue); a
	// negative value is refused rather than quietly replaced.
	// RetainEntries is the exception to "zero has no meaning": 0 would
	// compact right up to the flushed index, but a zero Config must give a
	// working node, so 0 means the default and raftnode refuses 0 itself.
	for _, f := range []struct {
		name string
		p    *int
		v    int
	}{
		{"ElectionTicks", &cfg.ElectionTicks, DefaultElectionTicks},
		{"HeartbeatTicks", &cfg.HeartbeatTicks, DefaultHeartbeatTicks},
		{"MaxPendingProposals", &cfg.MaxPendingProposals, DefaultMaxPendingProposals},
		{"MaxPendingReads", &cfg.MaxPendingReads, DefaultMaxPendingReads},
		{"MaxInboxMsgs", &cfg.MaxInboxMsgs, DefaultMaxInboxMsgs},
		{"MaxInflightMsgs", &cfg.MaxInflightMsgs, DefaultMaxInflightMsgs},
		{"MaxClientConns", &cfg.MaxClientConns, DefaultMaxClientConns},
	} {
		if *f.p < 0 {
			return cfg, fmt.Errorf("node: Config.%s %d is negative (0 means the default, %d)", f.name, *f.p, f.v)
		}
		if *f.p == 0 {
			*f.p = f.v
		}
	}
	def64 := func(p *uint64, v uint64) {
		if *p == 0 {
			*p = v
		}
	}
	switch cfg.ReadMode {
	case ReadModeIndex:
	case ReadModeLease:
		if cfg.DisableCheckQuorum {
			return cfg, errors.New("node: read mode lease needs CheckQuorum (DisableCheckQuorum is set): a lease rests on followers ignoring vote requests while they hear from a leader")
		}
		if cfg.LeaseDriftTicks < 0 {
			return cfg, fmt.Errorf("node: Config.LeaseDriftTicks %d is negative (0 means the default, %d)", cfg.LeaseDriftTicks, DefaultLeaseDriftTicks)
		}
		if cfg.LeaseDriftTicks == 0 {
			cfg.LeaseDriftTicks = DefaultLeaseDriftTicks
		}
		if cfg.LeaseDriftTicks >= cfg.ElectionTicks {
			return cfg, fmt.Errorf("node: Config.LeaseDriftTicks %d must be below ElectionTicks %d (the lease lasts ElectionTicks - LeaseDriftTicks ticks)", cfg.LeaseDriftTicks, cfg.ElectionTicks)
		}
	default:
		return cfg, fmt.Errorf("node: Config.ReadMode %v unknown", cfg.ReadMode)
	}
	if cfg.Groups < 0 || cfg.Groups > MaxGroups {
		return cfg, fmt.Errorf("node: Config.Groups %d out of range [0, %d]", cfg.Groups, MaxGroups)
	}
	if cfg.Groups == 0 {
		cfg.Groups = 1
	}
	switch {
	case cfg.QuiesceAfterTicks < 0:
		cfg.QuiesceAfterTicks = 0
	case cfg.QuiesceAfterTicks == 0 && cfg.Groups > 1:
		cfg.QuiesceAfterTicks = DefaultQuiesceAfterTicks
	}
	if cfg.TickInterval < 0 {
		return cfg, fmt.Errorf("node: Config.TickInterval %v is negative (0 means the default, %v)", cfg.TickInterval, DefaultTickInterval)
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = DefaultTickInterval
	}
	def64(&cfg.SnapshotEntries, DefaultSnapshotEntries)
	def64(&cfg.RetainEntries, DefaultRetainEntries)
	def64(&cfg.MaxSizePerMsgBytes, DefaultMaxSizePerMsgBytes)
	def64(&cfg.MaxInflightBytes, DefaultMaxInflightBytes)
	def64(&cfg.MaxUncommittedBytes, DefaultMaxUncommittedBytes)
	// Only an all-zero Wire takes the defaults wholesale; a Wire with some
	// fields set keeps them (replacing the whole struct because
	// MaxFrameBytes was 0 used to drop a chosen compression silently), and
	// a zero CompressThresholdBytes then means "compress everything".
	if cfg.Wire == (wire.Options{}) {
		cfg.Wire = wire.DefaultOptions()
	} else if cfg.Wire.MaxFrameBytes == 0 {
		cfg.Wire.MaxFrameBytes = wire.DefaultMaxFrameBytes
	}
	if err := cfg.Wire.Validate(); err != nil {
		return cfg, fmt.Errorf("node: Config.Wire: %w", err)
	}
	cfg.KV.DisableWAL = !cfg.KeepPebbleWAL
	if cfg.KV.MemTableBytes == 0 {
		cfg.KV.MemTableBytes = DefaultMemTableBytes
	}
	if cfg.StageSampleEvery == 0 {
		cfg.StageSampleEvery = DefaultStageSampleEvery
	}
	if cfg.Seed == 0 {
		cfg.Seed = cfg.ID*0x9e3779b97f4a7c15 + 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FS == nil {
		cfg.FS = vfs.Default
	}
	if cfg.WAL.FS == nil {
		cfg.WAL.FS = cfg.FS
	}
	if cfg.KV.FS == nil {
		cfg.KV.FS = cfg.FS
	}
	return cfg, nil
}
