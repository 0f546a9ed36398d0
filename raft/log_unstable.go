package raft

import (
	"fmt"

	"github.com/raftpipe/raftpipe/wire"
)

// unstable holds the log entries (and possibly a snapshot) that the runtime
// has not yet acknowledged as durable. Because the runtime persists
// asynchronously, part of it may already be handed out in a Ready and be on
// its way to disk: the in-progress markers say which part, so that the same
// entries are never handed out twice unless they were overwritten.
//
// Invariant: entries[i].Index == offset+i; offset <= offsetInProgress <=
// offset+len(entries); if snapshot != nil then offset == snapshot.Index+1.
type unstable struct {
	// snapshot is a snapshot received from the leader and not yet durable.
	snapshot *wire.SnapshotMeta
	// snapshotInProgress says snapshot was already handed out in a Ready.
	snapshotInProgress bool
	// entries are the unacknowledged entries starting at offset.
	entries []wire.Entry
	// offset is the index of entries[0] (the first index not known durable).
	offset uint64
	// offsetInProgress is the first index not yet handed out in a Ready;
	// entries below it are being persisted by the runtime.
	offsetInProgress uint64
}

// maybeFirstIndex is the first index if a snapshot is pending.
func (u *unstable) maybeFirstIndex() (uint64, bool) {
	if u.snapshot != nil {
		return u.snapshot.Index + 1, true
	}
	return 0, false
}

// maybeLastIndex is the last index held here, if any.
func (u *unstable) maybeLastIndex() (uint64, bool) {
	if l := len(u.entries); l != 0 {
		return u.offset + uint64(l) - 1, true
	}
	if u.snapshot != nil {
		return u.snapshot.Index, true
	}
	return 0, false
}

// maybeTerm returns the term of index i if this structure knows it.
func (u *unstable) maybeTerm(i uint64) (uint64, bool) {
	if i < u.offset {
		if u.snapshot != nil && u.snapshot.Index == i {
			return u.snapshot.Term, true
		}
		return 0, false
	}
	last, ok := u.maybeLastIndex()
	if !ok || i > last {
		return 0, false
	}
	return u.entries[i-u.offset].Term, true
}

// nextEntries returns the entries not yet handed out.
func (u *unstable) nextEntries() []wire.Entry {
	start := int(u.offsetInProgress - u.offset)
	if start == len(u.entries) {
		return nil
	}
	return u.entries[start:len(u.entries):len(u.entries)]
}

// nextSnapshot returns the snapshot if it was not yet handed out.
func (u *unstable) nextSnapshot() *wire.SnapshotMeta {
	if u.snapshot == nil || u.snapshotInProgress {
		return nil
	}
	return u.snapshot
}

// acceptInProgress marks everything present as handed out.
func (u *unstable) acceptInProgress() {
	u.offsetInProgress = u.offset + uint64(len(u.entries))
	if u.snapshot != nil {
		u.snapshotInProgress = true
	}
}

// stableTo drops the entries up to i, which the runtime acked as durable
// with term t. An ack whose (i, t) no longer matches (the entries were
// overwritten meanwhile) is ignored: the overwriting entries will be acked
// on their own.
func (u *unstable) stableTo(i, t uint64) {
	gt, ok := u.maybeTerm(i)
	if !ok || gt != t || i < u.offset {
		return
	}
	if i >= u.offsetInProgress {
		panic(fmt.Sprintf("raft: invariant violated: ack of index %d that was never handed out (in progress below %d)", i, u.offsetInProgress))
	}
	n := int(i + 1 - u.offset)
	u.entries = u.entries[n:]
	u.offset = i + 1
	u.shrink()
}

// unstableChunkEntries is the smallest entry array the unstable log
// allocates when it grows: one allocation serves many small batches
// instead of one per Ready.
const unstableChunkEntries = 1024

// shrink drops a large backing array once most of it is unused (after a
// long backlog became durable), so it does not pin memory. Arrays up to a
// few chunks are kept: their spare capacity serves the next appends.
func (u *unstable) shrink() {
	if c := cap(u.entries); c > 4*unstableChunkEntries && len(u.entries)*4 < c {
		ents := make([]wire.Entry, len(u.entries), max(len(u.entries), unstableChunkEntries))
		copy(ents, u.entries)
		u.entries = ents
	}
}

// stableSnapTo clears the pending snapshot once it is durable.
func (u *unstable) stableSnapTo(i uint64) {
	if u.snapshot != nil && u.snapshot.Index == i {
		u.snapshot = nil
		u.snapshotInProgress = false
	}
}

// restore replaces everything with snapshot s.
func (u *unstable) restore(s wire.SnapshotMeta) {
	u.offset = s.Index + 1
	u.offsetInProgress = u.offset
	u.entries = nil
	s.Conf = cloneConfState(s.Conf)
	u.snapshot = &s
	u.snapshotInProgress = false
}

// truncateAndAppend appends ents, first discarding any held entries at or
// after ents[0].Index.
func (u *unstable) truncateAndAppend(ents []wire.Entry) {
	from := ents[0].Index
	switch {
	case from == u.offset+uint64(len(u.entries)):
		// The common case: straight append. Appending may reuse our array
		// beyond len; slices handed out earlier end at their own len, so
		// they never see these writes.
		u.reserve(len(ents))
		u.entries = append(u.entries, ents...)
	case from <= u.offset:
		// Replace everything. Copy: ents may alias a message buffer whose
		// spare capacity others use.
		u.entries = append([]wire.Entry(nil), ents...)
		u.offset = from
		u.offsetInProgress = u.offset
	default:
		// Keep a prefix. Copy into a fresh array: entries after from were
		// possibly handed out and must not be overwritten in place.
		keep := u.entries[:from-u.offset]
		fresh := make([]wire.Entry, 0, len(keep)+len(ents))
		fresh = append(fresh, keep...)
		u.entries = append(fresh, ents...)
		u.offsetInProgress = min(u.offsetInProgress, from)
	}
}

// reserve makes room for n more entries without a reallocation by append,
// growing in chunks (see unstableChunkEntries). The spare capacity past
// len was never handed out, so writing there is safe.
func (u *unstable) reserve(n int) {
	if need := len(u.entries) + n; need > cap(u.entries) {
		grown := make([]wire.Entry, len(u.entries), max(need, 2*len(u.entries), unstableChunkEntries))
		copy(grown, u.entries)
		u.entries = grown
	}
}

// slice returns entries [lo, hi) held here. REQUIRES: offset <= lo <= hi <=
// offset+len(entries).
func (u *unstable) slice(lo, hi uint64) []wire.Entry {
	if lo > hi || lo < u.offset || hi > u.offset+uint64(len(u.entries)) {
		panic(fmt.Sprintf("raft: invariant violated: unstable slice [%d,%d) out of [%d,%d)", lo, hi, u.offset, u.offset+uint64(len(u.entries))))
	}
	return u.entries[lo-u.offset : hi-u.offset : hi-u.offset]
}
