package node

import (
	"errors"
	"fmt"

	"github.com/raftpipe/raftpipe/raft"
	"github.com/raftpipe/raftpipe/wal"
	"github.com/raftpipe/raftpipe/wire"
)

// logView is what a replica may do with its log: wal.View. The host keeps
// the *wal.Log itself for host-wide operations.
type logView = wal.View

// storage adapts the replica's log view to raft.Storage.
//
// The core needs the membership at the log's base (FirstIndex()-1): the
// configuration that the entries after it build on. It is stored in the
// WAL itself, as the opaque base bytes of the compaction or reset record
// that moved the base (an encoded membership, addresses included), so it
// becomes durable in the same write as the base it describes. There is no
// side file and hence no crash window between the two.
type storage struct {
	// log is the replica's view of the durable Raft log. It synchronises
	// itself.
	log logView
	// applied is the state machine's applied index at start-up; entries up
	// to it were committed, which lets InitialState repair a lagging
	// persisted commit index.
	applied uint64
}

var _ raft.Storage = (*storage)(nil)

// baseMembership decodes the membership stored with the log's base; a log
// that was never compacted or reset has none (the membership is then
// entirely in its conf-change entries).
func baseMembership(l logView) (membership, error) {
	ms, err := decodeMembership(l.Base())
	if err != nil {
		return membership{}, fmt.Errorf("node: membership at the log's base (index %d): %w", l.FirstIndex()-1, err)
	}
	return ms, nil
}

// InitialState returns the WAL's hard state and the membership at the base.
// The persisted commit index is written lazily, with a later batch than the
// entries it covers, so after a crash the state machine may have applied
// past it; those entries were committed, so the commit index is raised to
// the applied index (never past the log's end).
func (s *storage) InitialState() (wire.HardState, wire.ConfState, error) {
	hs := s.log.HardState()
	if s.applied > hs.Commit && s.applied <= s.log.LastIndex() {
		hs.Commit = s.applied
	}
	ms, err := baseMembership(s.log)
	if err != nil {
		return hs, wire.ConfState{}, err
	}
	return hs, ms.conf, nil
}

// Entries implements raft.Storage.
func (s *storage) Entries(lo, hi, maxBytes uint64) ([]wire.Entry, error) {
	ents, err := s.log.Entries(lo, hi, maxBytes)
	return ents, mapWALErr(err)
}

// Term implements raft.Storage.
func (s *storage) Term(i uint64) (uint64, error) {
	t, err := s.log.Term(i)
	return t, mapWALErr(err)
}

// FirstIndex implements raft.Storage.
func (s *storage) FirstIndex() uint64 { return s.log.FirstIndex() }

// LastIndex implements raft.Storage.
func (s *storage) LastIndex() uint64 { return s.log.LastIndex() }

// Snapshot describes the log's base. The data a follower receives is a fresh
// checkpoint of the state machine at or after this index (snapshot.go), so
// any base the core names can be served.
func (s *storage) Snapshot() (wire.SnapshotMeta, error) {
	base := s.log.FirstIndex() - 1
	if base == 0 {
		return wire.SnapshotMeta{}, raft.ErrUnavailable
	}
	term, err := s.log.Term(base)
	if err != nil {
		return wire.SnapshotMeta{}, mapWALErr(err)
	}
	ms, err := baseMembership(s.log)
	if err != nil {
		return wire.SnapshotMeta{}, err
	}
	return wire.SnapshotMeta{Index: base, Term: term, Conf: ms.conf}, nil
}

// mapWALErr translates the WAL's sentinels into the core's.
func mapWALErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, wal.ErrCompacted):
		return fmt.Errorf("%w: %w", raft.ErrCompacted, err)
	case errors.Is(err, wal.ErrUnavailable):
		return fmt.Errorf("%w: %w", raft.ErrUnavailable, err)
	}
	return err
}
