package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"

	"github.com/raftpipe/raftpipe/raft"
	"github.com/raftpipe/raftpipe/wal"
	"github.com/raftpipe/raftpipe/wire"
)

// confPointFile names the small file that records the membership at the
// log's compaction point (FirstIndex()-1). The core's Storage.InitialState
// must return the membership as of that index; the WAL knows the index and
// term but not the membership, so the node keeps it here.
const confPointFile = "confpoint"

// confPoint is the log's base: everything at or below Index is in the state
// machine (a snapshot or a compaction), and Members is the membership there.
type confPoint struct {
	// Index and Term identify the base entry (0, 0 for a log from index 1).
	Index, Term uint64
	// Members is the membership as of Index.
	Members membership
}

// writeConfPoint replaces the conf-point file atomically: write a temp file,
// fsync it, rename it over the old one, fsync the directory.
//
// Layout: crc32c u32 (of the rest) | index u64 | term u64 | membership blob.
func writeConfPoint(dir string, cp *confPoint) error {
	body := binary.LittleEndian.AppendUint64(nil, cp.Index)
	body = binary.LittleEndian.AppendUint64(body, cp.Term)
	body = encodeMembership(body, &cp.Members)
	buf := binary.LittleEndian.AppendUint32(nil, crc32.Checksum(body, castagnoli))
	buf = append(buf, body...)
	tmp := filepath.Join(dir, confPointFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("node: write conf point: %w", err)
	}
	_, werr := f.Write(buf)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("node: write conf point: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, confPointFile)); err != nil {
		return fmt.Errorf("node: write conf point: %w", err)
	}
	return syncDir(dir)
}

// readConfPoint loads the conf-point file; a missing file is the zero point.
func readConfPoint(dir string) (confPoint, error) {
	var cp confPoint
	b, err := os.ReadFile(filepath.Join(dir, confPointFile))
	if errors.Is(err, os.ErrNotExist) {
		return cp, nil
	}
	if err != nil {
		return cp, fmt.Errorf("node: read conf point: %w", err)
	}
	if len(b) < 4+16 || crc32.Checksum(b[4:], castagnoli) != binary.LittleEndian.Uint32(b) {
		return cp, fmt.Errorf("node: conf point file %s is corrupt", filepath.Join(dir, confPointFile))
	}
	cp.Index = binary.LittleEndian.Uint64(b[4:])
	cp.Term = binary.LittleEndian.Uint64(b[12:])
	cp.Members, err = decodeMembership(b[20:])
	if err != nil {
		return cp, fmt.Errorf("node: conf point file: %w", err)
	}
	return cp, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// storage adapts the WAL to raft.Storage. The WAL synchronises itself; the
// conf point is written by the loop and read by the core (also on the loop)
// and by snapshot senders, hence the mutex.
type storage struct {
	// log is the durable Raft log.
	log *wal.Log
	// applied is the state machine's applied index at start-up; entries up
	// to it were committed, which lets InitialState repair a lagging
	// persisted commit index.
	applied uint64
	mu      struct {
		sync.Mutex
		// point is the membership at the log's base.
		point confPoint
	}
}

var _ raft.Storage = (*storage)(nil)

func (s *storage) setPoint(cp confPoint) {
	s.mu.Lock()
	s.mu.point = cp
	s.mu.Unlock()
}

func (s *storage) point() confPoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.point
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
	p := s.point()
	return hs, p.Members.clone().conf, nil
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
	p := s.point()
	if p.Index == 0 {
		return wire.SnapshotMeta{}, raft.ErrUnavailable
	}
	return wire.SnapshotMeta{Index: p.Index, Term: p.Term, Conf: p.Members.clone().conf}, nil
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

// alignLogBase makes the WAL's base agree with the conf point after a crash
// between writing the conf point and compacting or resetting the log.
func alignLogBase(l *wal.Log, cp confPoint) error {
	base := l.FirstIndex() - 1
	if cp.Index < base {
		return fmt.Errorf("node: log compacted to %d but the conf point is at %d: the membership at the log's base is unknown", base, cp.Index)
	}
	if cp.Index == base {
		return nil
	}
	if l.LastIndex() >= cp.Index {
		if t, err := l.Term(cp.Index); err == nil && t == cp.Term {
			return l.CompactPrefix(cp.Index, nil)
		}
	}
	return l.Reset(cp.Index, cp.Term, nil)
}
