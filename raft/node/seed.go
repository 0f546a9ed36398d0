package node

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"io"

	"github.com/cockroachdb/errors/oserror"

	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/wal"
	"github.com/raftpipe/raftpipe/wire"
)

// ErrDataDirNotEmpty means SeedFromSnapshot was pointed at a data
// directory that already holds something: seeding would mix a backup with
// a node's own log and state, so it is refused before anything is written.
var ErrDataDirNotEmpty = errors.New("node: data directory is not empty")

// SeedInfo is what SeedFromSnapshot installed.
type SeedInfo struct {
	// SnapshotIndex and SnapshotTerm identify the last entry applied to the
	// backup's state (the archive header's index and term).
	SnapshotIndex, SnapshotTerm uint64
	// Index is the log's base after seeding: SnapshotIndex+1, the new
	// cluster's founding entry (see SeedFromSnapshot). The node's log
	// continues after it.
	Index uint64
}

// SeedFromSnapshot makes cfg.DataDir, which must be empty or missing, the
// data directory of the first node of a new cluster whose state is the
// kv snapshot archive read from r (kv.WriteSnapshot's output, e.g. GET
// /admin/snapshot). The node then starts (without Bootstrap) as a one-node
// cluster of cfg.ID alone, whatever membership the backup's cluster had;
// the others are added as usual. cfg.Members must list cfg.ID (its
// addresses) and nothing else.
//
// What the seeded directory holds, for a backup at index I and term T:
//
//   - the state machine: the backup's data, plus one founding entry at
//     (I+1, T), a no-op that brings it to the log's base. The base, not
//     the backup's index, is where the new cluster's membership is
//     recorded (in the log, below), so that the backup's own cluster is
//     nowhere in the new one: the state machine holds no membership, the
//     address book is rebuilt from the log at start-up, and snapshots sent
//     to followers are framed with the membership the runtime derives
//     from it.
//   - the log: empty, its base at (I+1, T) with the membership {voters:
//     cfg.ID} as base bytes (what the core's InitialState returns: the
//     node is the only voter, so it can elect itself with its own vote),
//     and a hard state of term T, commit I+1. The term must be at least
//     T: a first election at a lower term would let a leader append
//     entries whose term is below the base's, which the log and the state
//     machine refuse.
//
// Order, so that no interrupted seeding can start as a node: the log is
// written first, the state machine last, and the state machine is at the
// log's base only once the founding entry is flushed. A crash in between
// leaves a state machine behind the log's base with no pending install,
// which Start refuses ("the data directory is damaged"); the directory is
// then not empty either, so seeding again requires deleting it first.
// On an error SeedFromSnapshot removes what it wrote.
func SeedFromSnapshot(cfg Config, r io.Reader) (SeedInfo, error) {
	cfg, err := cfg.withDefaults()
	if err == nil && cfg.Groups > 1 {
		err = fmt.Errorf("%w: seeding a node with %d groups from a backup (backups are of single-group clusters)", ErrMultiGroup, cfg.Groups)
	}
	if err != nil {
		return SeedInfo{}, err
	}
	self, err := seedMember(cfg)
	if err != nil {
		return SeedInfo{}, err
	}
	if cfg.OpenStateMachine != nil {
		// The archive is kv's and so is the store written below; another
		// state machine would need its own way to identify a backup.
		return SeedInfo{}, errors.New("node: seed: only the raft/kv state machine can be seeded from a backup (Config.OpenStateMachine is set)")
	}
	fs := cfg.FS
	if err := checkEmptyDir(cfg); err != nil {
		return SeedInfo{}, err
	}
	// The archive header, read first (kv.ReadSnapshotInfo reads nothing
	// past it) and replayed to Restore, which checks it against the data.
	var hdr bytes.Buffer
	info, err := kv.ReadSnapshotInfo(io.TeeReader(r, &hdr))
	if err != nil {
		return SeedInfo{}, fmt.Errorf("node: seed: %w", err)
	}
	if info.Index == 0 {
		return SeedInfo{}, fmt.Errorf("node: seed: %w: the snapshot is of an empty state (index 0)", kv.ErrBadSnapshot)
	}
	seed := SeedInfo{SnapshotIndex: info.Index, SnapshotTerm: info.Term, Index: info.Index + 1}
	ms := membership{conf: wire.ConfState{Voters: []uint64{cfg.ID}}, members: []Member{self}}
	base := encodeMembership(nil, &ms)

	if err := vfsutil.MkdirAllDurable(fs, cfg.DataDir); err != nil {
		return SeedInfo{}, fmt.Errorf("node: seed: data dir: %w", err)
	}
	walDir, kvDir := fs.PathJoin(cfg.DataDir, "wal"), fs.PathJoin(cfg.DataDir, "kv")
	undo := func(err error) (SeedInfo, error) {
		rerr := errors.Join(fs.RemoveAll(walDir), fs.RemoveAll(kvDir))
		if rerr == nil {
			rerr = vfsutil.SyncDir(fs, cfg.DataDir)
		}
		if rerr != nil {
			err = fmt.Errorf("%w (and removing the partial seed failed: %v; delete %s before trying again)", err, rerr, cfg.DataDir)
		}
		return SeedInfo{}, err
	}

	walOpts := cfg.WAL
	walOpts.Logger = cfg.Logger
	l, err := wal.Open(walDir, walOpts)
	if err != nil {
		return undo(fmt.Errorf("node: seed: %w", err))
	}
	err = l.Reset(seed.Index, info.Term, base)
	if err == nil {
		err = l.Append(nil, &wire.HardState{Term: info.Term, Commit: seed.Index})
	}
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return undo(fmt.Errorf("node: seed: log: %w", err))
	}

	kvOpts := cfg.KV
	kvOpts.Logger = cfg.Logger
	s, err := kv.Open(kvDir, kvOpts)
	if err != nil {
		return undo(fmt.Errorf("node: seed: %w", err))
	}
	err = seedStore(s, io.MultiReader(&hdr, r), info, seed.Index)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return undo(fmt.Errorf("node: seed: %w", err))
	}
	cfg.Logger.Info("seeded a new cluster from a snapshot", "node", cfg.ID, "data_dir", cfg.DataDir,
		"snapshot_index", info.Index, "snapshot_term", info.Term, "base", seed.Index)
	return seed, nil
}

// seedStore restores the archive into the empty store s, checks it is
// the one the header named, applies the founding no-op at index, and
// flushes.
func seedStore(s *kv.Store, archive io.Reader, want kv.SnapshotInfo, index uint64) error {
	got, err := s.Restore(archive)
	if err != nil {
		return err
	}
	if got.Index != want.Index || got.Term != want.Term {
		panic(fmt.Sprintf("node: restored (%d, %d) from an archive whose header said (%d, %d) (invariant: Restore checks its header)",
			got.Index, got.Term, want.Index, want.Term))
	}
	founding := []wire.Entry{{Index: index, Term: want.Term, Type: wire.EntryNoop}}
	if err := s.Apply(founding, make([]kv.Result, 1)); err != nil {
		return err
	}
	return s.Flush()
}

// seedMember returns this node's entry in cfg.Members, the only one
// allowed: the seeded cluster has one member, and listing more would
// suggest they are part of it.
func seedMember(cfg Config) (Member, error) {
	var self Member
	for _, m := range cfg.Members {
		if m.ID != cfg.ID {
			return Member{}, fmt.Errorf("node: seed: Members lists node %d: a seeded cluster starts with this node (%d) alone; add the others once it runs", m.ID, cfg.ID)
		}
		self = m
	}
	if self.ID == 0 {
		return Member{}, fmt.Errorf("node: seed: Members must list this node (%d) with its addresses", cfg.ID)
	}
	if cfg.AdvertisePeerAddr != "" {
		self.PeerAddr = cfg.AdvertisePeerAddr
	}
	if cfg.AdvertiseClientAddr != "" {
		self.ClientAddr = cfg.AdvertiseClientAddr
	}
	return self, nil
}

// checkEmptyDir refuses a data directory that exists and holds anything.
func checkEmptyDir(cfg Config) error {
	names, err := cfg.FS.List(cfg.DataDir)
	if oserror.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: seed: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("%w: %s holds %q: seeding only goes into an empty or missing directory", ErrDataDirNotEmpty, cfg.DataDir, names)
	}
	return nil
}
