package raft

import (
	"errors"
	"fmt"

	"github.com/raftpipe/raftpipe/wire"
)

// entryOverheadBytes approximates an entry's framing on the wire (term,
// index, type, length); it makes size limits meaningful for empty entries.
const entryOverheadBytes = 24

// entrySize is the size an entry is charged for in byte limits.
func entrySize(e *wire.Entry) uint64 { return uint64(len(e.Data)) + entryOverheadBytes }

// entriesSize sums entrySize.
func entriesSize(ents []wire.Entry) uint64 {
	var s uint64
	for i := range ents {
		s += entrySize(&ents[i])
	}
	return s
}

// limitSize returns the longest prefix of ents within maxBytes, but at least
// one entry.
func limitSize(ents []wire.Entry, maxBytes uint64) []wire.Entry {
	if len(ents) == 0 {
		return ents
	}
	size := entrySize(&ents[0])
	for i := 1; i < len(ents); i++ {
		size += entrySize(&ents[i])
		if size > maxBytes {
			return ents[:i]
		}
	}
	return ents
}

// raftLog is the whole log as the core sees it: the durable part in Storage
// and the unacknowledged suffix in unstable, plus the commit and apply
// cursors.
//
// Invariant: applied <= committed; committed <= lastIndex().
type raftLog struct {
	// storage is the durable log written by the runtime.
	storage Storage
	// unstable is the suffix not yet acked as durable.
	unstable unstable
	// committed is the highest index known committed.
	committed uint64
	// applied is the highest index handed out to the runtime for applying
	// (in Ready.CommittedEntries or as a snapshot).
	applied uint64
	// maxApplyBytes bounds the CommittedEntries of one Ready.
	maxApplyBytes uint64
}

// newLog builds the log over storage, as after a restart.
func newLog(storage Storage, maxApplyBytes uint64) *raftLog {
	first := storage.FirstIndex()
	last := storage.LastIndex()
	l := &raftLog{storage: storage, maxApplyBytes: maxApplyBytes}
	l.unstable.offset = last + 1
	l.unstable.offsetInProgress = last + 1
	// Everything up to the snapshot is committed and applied.
	l.committed = first - 1
	l.applied = first - 1
	return l
}

// String summarises the log's cursors for logs and panics.
func (l *raftLog) String() string {
	return fmt.Sprintf("committed=%d applied=%d unstable.offset=%d inProgress=%d len(unstable)=%d",
		l.committed, l.applied, l.unstable.offset, l.unstable.offsetInProgress, len(l.unstable.entries))
}

// firstIndex is the first index whose entry is available.
func (l *raftLog) firstIndex() uint64 {
	if i, ok := l.unstable.maybeFirstIndex(); ok {
		return i
	}
	return l.storage.FirstIndex()
}

// lastIndex is the last index in the log (durable or not).
func (l *raftLog) lastIndex() uint64 {
	if i, ok := l.unstable.maybeLastIndex(); ok {
		return i
	}
	return l.storage.LastIndex()
}

// durableIndex is the last index acked as durable by the runtime (0 while an
// installed snapshot is not yet durable).
func (l *raftLog) durableIndex() uint64 {
	if l.unstable.snapshot != nil {
		return 0
	}
	return l.unstable.offset - 1
}

// term returns the term of entry i (valid from firstIndex()-1).
func (l *raftLog) term(i uint64) (uint64, error) {
	if t, ok := l.unstable.maybeTerm(i); ok {
		return t, nil
	}
	if i+1 < l.firstIndex() {
		return 0, ErrCompacted
	}
	if i > l.lastIndex() {
		return 0, ErrUnavailable
	}
	t, err := l.storage.Term(i)
	if err == nil || errors.Is(err, ErrCompacted) || errors.Is(err, ErrUnavailable) {
		return t, err
	}
	panic(fmt.Sprintf("raft: storage failed reading term %d: %v", i, err))
}

// termOrZero returns the term of i, or 0 if it is not available.
func (l *raftLog) termOrZero(i uint64) uint64 {
	t, err := l.term(i)
	if err != nil {
		return 0
	}
	return t
}

// lastTerm is the term of the last entry.
func (l *raftLog) lastTerm() uint64 {
	t, err := l.term(l.lastIndex())
	if err != nil {
		panic(fmt.Sprintf("raft: invariant violated: term of last index %d unavailable: %v", l.lastIndex(), err))
	}
	return t
}

// matchTerm reports whether entry i has term t.
func (l *raftLog) matchTerm(i, t uint64) bool {
	lt, err := l.term(i)
	return err == nil && lt == t
}

// isUpToDate reports whether a log ending at (lasti, term) is at least as
// up to date as ours (Raft §5.4.1).
func (l *raftLog) isUpToDate(lasti, term uint64) bool {
	lt := l.lastTerm()
	return term > lt || (term == lt && lasti >= l.lastIndex())
}

// findConflict returns the index of the first entry of ents that is absent
// from or conflicts with our log, or 0 if all are present.
func (l *raftLog) findConflict(ents []wire.Entry) uint64 {
	last := l.lastIndex()
	for i := range ents {
		if ents[i].Index > last {
			return ents[i].Index // new: no term look-up needed
		}
		if !l.matchTerm(ents[i].Index, ents[i].Term) {
			return ents[i].Index
		}
	}
	return 0
}

// findAppend checks a follower's MsgApp: if our entry at prev has
// prevTerm, it returns the index of the last entry the message covers and
// the suffix of ents that is new or conflicting (to append, truncating our
// log at its first index).
func (l *raftLog) findAppend(prev, prevTerm uint64, ents []wire.Entry) (lastNew uint64, toAppend []wire.Entry, ok bool) {
	if !l.matchTerm(prev, prevTerm) {
		return 0, nil, false
	}
	lastNew = prev + uint64(len(ents))
	if ci := l.findConflict(ents); ci != 0 {
		if ci <= l.committed {
			panic(fmt.Sprintf("raft: invariant violated: entry %d conflicts with committed entry (committed %d)", ci, l.committed))
		}
		toAppend = ents[ci-ents[0].Index:]
	}
	return lastNew, toAppend, true
}

// firstIndexOfTerm returns the first index of term t at or below i, where
// term(i) == t. Terms never decrease along a log, so a binary search over
// [max(committed, firstIndex-1), i] finds it in O(log n) term look-ups.
func (l *raftLog) firstIndexOfTerm(i, t uint64) uint64 {
	lo := max(l.firstIndex()-1, l.applied)
	hi := i // invariant: term(hi) == t
	for lo < hi {
		mid := lo + (hi-lo)/2
		if l.termOrZero(mid) >= t {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return hi
}

// lastIndexAtMostTerm returns the largest index j <= i whose term is <= t
// (or firstIndex()-1 if every available entry has a larger term). Used by
// the leader to turn a follower's (hint, hintTerm) into a probe position.
func (l *raftLog) lastIndexAtMostTerm(i, t uint64) uint64 {
	lo := l.firstIndex() - 1
	hi := min(i, l.lastIndex())
	if lo >= hi {
		return lo
	}
	if l.termOrZero(lo) > t {
		return lo
	}
	// invariant: term(lo) <= t; answer in [lo, hi].
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if l.termOrZero(mid) <= t {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// append adds ents (truncating any suffix from ents[0].Index) and returns
// the new last index.
func (l *raftLog) append(ents []wire.Entry) uint64 {
	if len(ents) == 0 {
		return l.lastIndex()
	}
	if after := ents[0].Index - 1; after < l.committed {
		panic(fmt.Sprintf("raft: invariant violated: append after %d would truncate committed %d", after, l.committed))
	}
	l.unstable.truncateAndAppend(ents)
	return l.lastIndex()
}

// commitTo raises the commit index.
func (l *raftLog) commitTo(c uint64) {
	if c <= l.committed {
		return
	}
	if c > l.lastIndex() {
		panic(fmt.Sprintf("raft: invariant violated: commit %d beyond last index %d (log lost or truncated?)", c, l.lastIndex()))
	}
	l.committed = c
}

// maybeCommit commits up to maxIndex if that entry is of term t (a leader
// only commits by counting replicas of its own term's entries, Raft §5.4.2).
func (l *raftLog) maybeCommit(maxIndex, t uint64) bool {
	if maxIndex > l.committed && l.termOrZero(maxIndex) == t {
		l.commitTo(maxIndex)
		return true
	}
	return false
}

// applyLimit is the highest index that may be handed out for applying:
// committed and durable locally.
func (l *raftLog) applyLimit() uint64 {
	return min(l.committed, l.durableIndex())
}

// hasNextCommittedEnts reports whether entries can be handed out to apply.
func (l *raftLog) hasNextCommittedEnts() bool {
	return l.unstable.snapshot == nil && l.applied < l.applyLimit()
}

// nextCommittedEnts returns committed, durable entries after applied, up to
// maxApplyBytes.
func (l *raftLog) nextCommittedEnts() []wire.Entry {
	if !l.hasNextCommittedEnts() {
		return nil
	}
	ents, err := l.slice(l.applied+1, l.applyLimit()+1, l.maxApplyBytes)
	if err != nil {
		panic(fmt.Sprintf("raft: invariant violated: committed entries [%d,%d] unavailable: %v", l.applied+1, l.applyLimit(), err))
	}
	return ents
}

// appliedTo records that entries up to i were handed out for applying.
func (l *raftLog) appliedTo(i uint64) {
	if i == 0 {
		return
	}
	if i > l.committed || i < l.applied {
		panic(fmt.Sprintf("raft: invariant violated: applied %d outside [%d, %d]", i, l.applied, l.committed))
	}
	l.applied = i
}

// slice returns entries [lo, hi) up to maxBytes (at least one).
func (l *raftLog) slice(lo, hi, maxBytes uint64) ([]wire.Entry, error) {
	if lo >= hi {
		return nil, nil
	}
	if lo < l.firstIndex() {
		return nil, ErrCompacted
	}
	if hi > l.lastIndex()+1 {
		panic(fmt.Sprintf("raft: invariant violated: slice [%d,%d) beyond last index %d", lo, hi, l.lastIndex()))
	}
	off := l.unstable.offset
	if lo >= off {
		return limitSize(l.unstable.slice(lo, hi), maxBytes), nil
	}
	cut := min(hi, off)
	ents, err := l.storage.Entries(lo, cut, maxBytes)
	if err != nil {
		if errors.Is(err, ErrCompacted) {
			return nil, err
		}
		panic(fmt.Sprintf("raft: storage failed reading entries [%d,%d): %v", lo, cut, err))
	}
	if uint64(len(ents)) < cut-lo || hi <= off {
		return ents, nil // hit the byte limit (or nothing unstable wanted)
	}
	size := entriesSize(ents)
	if size >= maxBytes {
		return ents, nil
	}
	un := l.unstable.slice(off, hi)
	// Take as many unstable entries as fit.
	n := 0
	for n < len(un) {
		size += entrySize(&un[n])
		if size > maxBytes {
			break
		}
		n++
	}
	if n == 0 {
		return ents, nil
	}
	out := make([]wire.Entry, 0, len(ents)+n)
	out = append(out, ents...)
	return append(out, un[:n]...), nil
}

// restore replaces the log with snapshot s (a follower installing it).
func (l *raftLog) restore(s wire.SnapshotMeta) {
	l.committed = s.Index
	l.unstable.restore(s)
}

// stableTo records the runtime's durability ack for (i, t).
func (l *raftLog) stableTo(i, t uint64) {
	if s := l.unstable.snapshot; s != nil && s.Index <= i {
		if !l.unstable.snapshotInProgress {
			panic(fmt.Sprintf("raft: invariant violated: ack %d covers snapshot %d never handed out", i, s.Index))
		}
		if i == s.Index && t != s.Term {
			return
		}
		if i > s.Index && !l.matchTerm(i, t) {
			return
		}
		l.unstable.stableSnapTo(s.Index)
	}
	l.unstable.stableTo(i, t)
}
