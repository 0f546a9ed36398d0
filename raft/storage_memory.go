package raft

import (
	"fmt"
	"sort"
	"sync"

	"github.com/raftpipe/raftpipe/wire"
)

// MemoryStorage is an in-memory Storage for tests, simulations and
// benchmarks. It plays the part of the WAL: the test runtime appends the
// entries of each Ready to it (that is what "persisting" means in a
// simulation) and acks them to the core.
//
// It keeps the appended slices themselves as segments instead of copying
// them into one array: Ready.Entries are never modified by the core after
// they are handed out, so retaining them is safe, and it avoids copying
// every entry (and re-copying the whole log when an array grows or is
// compacted). A flat array that copied on append was tried first; the
// copies were a fifth of BenchmarkCoreReplicate's CPU time.
type MemoryStorage struct {
	// mu guards every field below: the runtime may write from one goroutine
	// while the core reads from another.
	mu sync.Mutex
	// hardState is the last HardState set.
	hardState wire.HardState
	// snap is the latest snapshot's metadata (zero Index if none).
	snap wire.SnapshotMeta
	// conf is the membership as of baseIndex (the snapshot's, or the
	// bootstrap membership).
	conf wire.ConfState
	// baseIndex and baseTerm identify the entry just before the first one
	// held: the snapshot or compaction point (0, 0 for a new log).
	baseIndex, baseTerm uint64
	// segs hold entries baseIndex+1 .. lastIndex in order. Each segment is
	// a caller's slice, capped at its length, never written.
	// Invariant: segments are non-empty and contiguous.
	segs [][]wire.Entry
	// last is the last index held (baseIndex if none).
	last uint64
}

// NewMemoryStorage returns the storage of a node. For a founding member of
// a new cluster, conf is the initial membership: the storage is bootstrapped
// with BootstrapEntries(conf), so that nodes joining later learn the
// founding membership from the log. For a node joining an existing
// cluster, pass an empty conf.
func NewMemoryStorage(conf wire.ConfState) *MemoryStorage {
	ms := &MemoryStorage{}
	if ents := BootstrapEntries(conf); len(ents) > 0 {
		ms.segs = [][]wire.Entry{ents}
		ms.last = uint64(len(ents))
		ms.hardState = wire.HardState{Term: bootstrapTerm, Commit: ms.last}
	}
	return ms
}

// NewMemoryStorageWithBase returns an empty storage whose membership as of
// index 0 is conf, without bootstrap entries. Nodes that join later cannot
// learn that membership from the log; scenario tests use it to build
// hand-written logs (paper figures).
func NewMemoryStorageWithBase(conf wire.ConfState) *MemoryStorage {
	return &MemoryStorage{conf: cloneConfState(conf)}
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

// locate returns the segment holding index i and i's position in it.
// REQUIRES: baseIndex < i <= last.
func (ms *MemoryStorage) locate(i uint64) (int, int) {
	k := sort.Search(len(ms.segs), func(k int) bool { return ms.segs[k][0].Index > i }) - 1
	return k, int(i - ms.segs[k][0].Index)
}

// Entries implements Storage.
func (ms *MemoryStorage) Entries(lo, hi, maxBytes uint64) ([]wire.Entry, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if lo <= ms.baseIndex {
		return nil, ErrCompacted
	}
	if hi > ms.last+1 {
		return nil, fmt.Errorf("entries [%d, %d) beyond last index %d: %w", lo, hi, ms.last, ErrUnavailable)
	}
	if lo >= hi {
		return nil, nil
	}
	k, pos := ms.locate(lo)
	seg := ms.segs[k]
	if end := seg[0].Index + uint64(len(seg)); hi <= end {
		ents := limitSize(seg[pos:pos+int(hi-lo)], maxBytes)
		return ents[:len(ents):len(ents)], nil
	}
	// Spans segments: gather into a fresh slice.
	var out []wire.Entry
	var size uint64
	for i := lo; i < hi; k, pos = k+1, 0 {
		seg = ms.segs[k]
		for ; pos < len(seg) && i < hi; pos++ {
			size += entrySize(&seg[pos])
			if len(out) > 0 && size > maxBytes {
				return out, nil
			}
			out = append(out, seg[pos])
			i++
		}
	}
	return out, nil
}

// termLocked returns the term of i. REQUIRES: mu held.
func (ms *MemoryStorage) termLocked(i uint64) (uint64, error) {
	switch {
	case i < ms.baseIndex:
		return 0, ErrCompacted
	case i == ms.baseIndex:
		return ms.baseTerm, nil
	case i > ms.last:
		return 0, ErrUnavailable
	}
	k, pos := ms.locate(i)
	return ms.segs[k][pos].Term, nil
}

// Term implements Storage.
func (ms *MemoryStorage) Term(i uint64) (uint64, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.termLocked(i)
}

// FirstIndex implements Storage.
func (ms *MemoryStorage) FirstIndex() uint64 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.baseIndex + 1
}

// LastIndex implements Storage.
func (ms *MemoryStorage) LastIndex() uint64 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.last
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
// follower side of Ready.Snapshot). Older snapshots are refused.
func (ms *MemoryStorage) ApplySnapshot(s wire.SnapshotMeta) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if s.Index <= ms.snap.Index {
		return fmt.Errorf("snapshot %d not newer than %d: %w", s.Index, ms.snap.Index, ErrCompacted)
	}
	ms.snap = s
	ms.snap.Conf = cloneConfState(s.Conf)
	ms.conf = cloneConfState(s.Conf)
	ms.baseIndex, ms.baseTerm, ms.last = s.Index, s.Term, s.Index
	ms.segs = nil
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
	t, err := ms.termLocked(i)
	if err != nil {
		panic(fmt.Sprintf("raft: MemoryStorage: invariant violated: snapshot index %d outside log (%d, %d]: %v", i, ms.baseIndex, ms.last, err))
	}
	ms.snap = wire.SnapshotMeta{Index: i, Term: t, Conf: cloneConfState(conf)}
	return ms.snap, nil
}

// Compact discards entries up to and including compactIndex, which must be
// the latest snapshot's index (CreateSnapshot) so that lagging followers
// can still catch up and the membership at the new base is known.
func (ms *MemoryStorage) Compact(compactIndex uint64) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if compactIndex <= ms.baseIndex {
		return ErrCompacted
	}
	if compactIndex > ms.last {
		panic(fmt.Sprintf("raft: MemoryStorage: invariant violated: compact %d beyond last index %d", compactIndex, ms.last))
	}
	if compactIndex != ms.snap.Index {
		return fmt.Errorf("compact at %d must equal the snapshot index %d: %w", compactIndex, ms.snap.Index, ErrUnavailable)
	}
	t, _ := ms.termLocked(compactIndex)
	ms.truncatePrefix(compactIndex)
	ms.baseIndex, ms.baseTerm = compactIndex, t
	ms.conf = cloneConfState(ms.snap.Conf)
	return nil
}

// truncatePrefix drops entries <= i from the segments (no copying).
func (ms *MemoryStorage) truncatePrefix(i uint64) {
	n := 0
	for n < len(ms.segs) {
		seg := ms.segs[n]
		if seg[len(seg)-1].Index > i {
			break
		}
		n++
	}
	segs := ms.segs[n:]
	if len(segs) > 0 && segs[0][0].Index <= i {
		segs[0] = segs[0][i+1-segs[0][0].Index:]
	}
	if n > 0 {
		// Copy the (small) segment list so the dropped prefix is freed.
		segs = append([][]wire.Entry(nil), segs...)
	}
	ms.segs = segs
}

// Append persists entries, overwriting any suffix they conflict with. The
// slice is retained (not copied): the caller must not modify it afterwards,
// which holds for Ready.Entries.
func (ms *MemoryStorage) Append(entries []wire.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if first := ms.baseIndex + 1; first > entries[0].Index {
		if entries[len(entries)-1].Index < first {
			return nil // all compacted already
		}
		entries = entries[first-entries[0].Index:]
	}
	from := entries[0].Index
	if from > ms.last+1 {
		panic(fmt.Sprintf("raft: MemoryStorage: invariant violated: gap: appending %d after last index %d", from, ms.last))
	}
	if from <= ms.last {
		// Overwrite: drop the suffix from `from` on.
		k, pos := ms.locate(from)
		ms.segs = ms.segs[:k+1]
		if pos == 0 {
			ms.segs = ms.segs[:k]
		} else {
			ms.segs[k] = ms.segs[k][:pos:pos]
		}
	}
	ms.segs = append(ms.segs, entries[:len(entries):len(entries)])
	ms.last = entries[len(entries)-1].Index
	return nil
}

// cloneConfState returns a deep copy so callers cannot alias our slices.
func cloneConfState(cs wire.ConfState) wire.ConfState {
	return wire.ConfState{
		Voters:   append([]uint64(nil), cs.Voters...),
		Learners: append([]uint64(nil), cs.Learners...),
	}
}

// CreateSnapshotAndCompact snapshots at i (with the membership as of the
// storage's base) and compacts there; a convenience for tests.
func (ms *MemoryStorage) CreateSnapshotAndCompact(i uint64) error {
	ms.mu.Lock()
	conf := cloneConfState(ms.conf)
	ms.mu.Unlock()
	if _, err := ms.CreateSnapshot(i, conf); err != nil {
		return err
	}
	return ms.Compact(i)
}
