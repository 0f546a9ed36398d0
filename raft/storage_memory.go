package raft

import (
	"fmt"
	"sync"

	"github.com/raftpipe/raftpipe/wire"
)

// MemoryStorage is an in-memory Storage for tests, simulations and
// benchmarks. It plays the part of the WAL: the test runtime appends the
// entries of each Ready to it (that is what "persisting" means in a
// simulation) and acks them to the core.
type MemoryStorage struct {
	// mu guards every field below: the runtime may write from one goroutine
	// while the core reads from another.
	mu sync.Mutex
	// hardState is the last HardState set.
	hardState wire.HardState
	// snap is the latest snapshot's metadata (zero Index if none).
	snap wire.SnapshotMeta
	// conf is the membership as of ents[0].Index (the snapshot's, or the
	// bootstrap membership).
	conf wire.ConfState
	// ents[0] is a dummy entry holding the index and term of the snapshot
	// (or compaction point); real entries follow.
	// Invariant: len(ents) >= 1 and ents[i].Index == ents[0].Index+i.
	ents []wire.Entry
}

// NewMemoryStorage returns an empty storage whose bootstrap membership is
// conf (the initial voters and learners of a new cluster).
func NewMemoryStorage(conf wire.ConfState) *MemoryStorage {
	return &MemoryStorage{ents: make([]wire.Entry, 1), conf: cloneConfState(conf)}
}

// InitialState implements Storage.
func (ms *MemoryStorage) InitialState() (wire.HardState, wire.ConfState, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.hardState, cloneConfState(ms.conf), nil
}

// SetHardState records the HardState of a Ready.
func (ms *MemoryStorage) SetHardState(hs wire.HardState) {
	ms.mu.Lock()
	ms.hardState = hs
	ms.mu.Unlock()
}

// HardState returns the last HardState set.
func (ms *MemoryStorage) HardState() wire.HardState {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.hardState
}

// Entries implements Storage.
func (ms *MemoryStorage) Entries(lo, hi, maxBytes uint64) ([]wire.Entry, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	offset := ms.ents[0].Index
	if lo <= offset {
		return nil, ErrCompacted
	}
	if hi > ms.lastIndexLocked()+1 {
		return nil, fmt.Errorf("entries [%d, %d) beyond last index %d: %w", lo, hi, ms.lastIndexLocked(), ErrUnavailable)
	}
	if lo >= hi {
		return nil, nil
	}
	ents := ms.ents[lo-offset : hi-offset]
	ents = limitSize(ents, maxBytes)
	// Cap the slice so a caller's append cannot write into our array.
	return ents[:len(ents):len(ents)], nil
}

// Term implements Storage.
func (ms *MemoryStorage) Term(i uint64) (uint64, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	offset := ms.ents[0].Index
	if i < offset {
		return 0, ErrCompacted
	}
	if i-offset >= uint64(len(ms.ents)) {
		return 0, ErrUnavailable
	}
	return ms.ents[i-offset].Term, nil
}

// FirstIndex implements Storage.
func (ms *MemoryStorage) FirstIndex() uint64 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.ents[0].Index + 1
}

// LastIndex implements Storage.
func (ms *MemoryStorage) LastIndex() uint64 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.lastIndexLocked()
}

func (ms *MemoryStorage) lastIndexLocked() uint64 {
	return ms.ents[0].Index + uint64(len(ms.ents)) - 1
}

// Snapshot implements Storage.
func (ms *MemoryStorage) Snapshot() (wire.SnapshotMeta, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.snap.Index == 0 {
		return wire.SnapshotMeta{}, ErrUnavailable
	}
	s := ms.snap
	s.Conf = cloneConfState(s.Conf)
	return s, nil
}

// ApplySnapshot installs a received snapshot, discarding the whole log (the
// follower side of Ready.Snapshot). Older snapshots are ignored.
func (ms *MemoryStorage) ApplySnapshot(s wire.SnapshotMeta) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if s.Index <= ms.snap.Index {
		return fmt.Errorf("snapshot %d not newer than %d: %w", s.Index, ms.snap.Index, ErrCompacted)
	}
	ms.snap = s
	ms.snap.Conf = cloneConfState(s.Conf)
	ms.conf = cloneConfState(s.Conf)
	ms.ents = []wire.Entry{{Index: s.Index, Term: s.Term}}
	return nil
}

// CreateSnapshot records that the state machine took a snapshot at index i
// with membership conf. It does not compact; call Compact for that.
func (ms *MemoryStorage) CreateSnapshot(i uint64, conf wire.ConfState) (wire.SnapshotMeta, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if i <= ms.snap.Index {
		return wire.SnapshotMeta{}, fmt.Errorf("snapshot at %d not newer than %d: %w", i, ms.snap.Index, ErrCompacted)
	}
	offset := ms.ents[0].Index
	if i > ms.lastIndexLocked() {
		panic(fmt.Sprintf("raft: MemoryStorage: invariant violated: snapshot index %d beyond last index %d", i, ms.lastIndexLocked()))
	}
	ms.snap = wire.SnapshotMeta{Index: i, Term: ms.ents[i-offset].Term, Conf: cloneConfState(conf)}
	return ms.snap, nil
}

// Compact discards entries up to and including compactIndex, which must be
// covered by a snapshot (CreateSnapshot) so that lagging followers can still
// catch up; the membership at compactIndex is taken from that snapshot.
func (ms *MemoryStorage) Compact(compactIndex uint64) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	offset := ms.ents[0].Index
	if compactIndex <= offset {
		return ErrCompacted
	}
	if compactIndex > ms.lastIndexLocked() {
		panic(fmt.Sprintf("raft: MemoryStorage: invariant violated: compact %d beyond last index %d", compactIndex, ms.lastIndexLocked()))
	}
	if compactIndex != ms.snap.Index {
		// Keeping conf exact requires compacting exactly at a snapshot.
		return fmt.Errorf("compact at %d must equal the snapshot index %d: %w", compactIndex, ms.snap.Index, ErrUnavailable)
	}
	i := compactIndex - offset
	ents := make([]wire.Entry, 1, uint64(len(ms.ents))-i)
	ents[0] = wire.Entry{Index: ms.ents[i].Index, Term: ms.ents[i].Term}
	ents = append(ents, ms.ents[i+1:]...)
	ms.ents = ents
	ms.conf = cloneConfState(ms.snap.Conf)
	return nil
}

// Append persists entries, overwriting any suffix they conflict with.
// Entries must be contiguous with (or overlap) the existing log.
func (ms *MemoryStorage) Append(entries []wire.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	first := ms.ents[0].Index + 1
	last := entries[0].Index + uint64(len(entries)) - 1
	if last < first {
		return nil // all compacted already
	}
	if first > entries[0].Index {
		entries = entries[first-entries[0].Index:]
	}
	offset := entries[0].Index - ms.ents[0].Index
	switch {
	case uint64(len(ms.ents)) > offset:
		// Truncate the conflicting suffix; copy so earlier readers keep
		// the old array intact.
		kept := make([]wire.Entry, offset, offset+uint64(len(entries)))
		copy(kept, ms.ents[:offset])
		ms.ents = append(kept, entries...)
	case uint64(len(ms.ents)) == offset:
		ms.ents = append(ms.ents, entries...)
	default:
		panic(fmt.Sprintf("raft: MemoryStorage: invariant violated: gap: appending %d after last index %d", entries[0].Index, ms.lastIndexLocked()))
	}
	return nil
}

// cloneConfState returns a deep copy so callers cannot alias our slices.
func cloneConfState(cs wire.ConfState) wire.ConfState {
	return wire.ConfState{
		Voters:   append([]uint64(nil), cs.Voters...),
		Learners: append([]uint64(nil), cs.Learners...),
	}
}
