package wal

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/raftpipe/raftpipe/wire"
)

// Limits on groups.
const (
	// DefaultMaxGroups is Options.MaxGroups when it is zero: room for the
	// thousand or so groups a host is meant to carry, with headroom.
	DefaultMaxGroups = 4096
	// MaxGroupsLimit is the largest Options.MaxGroups accepted (larger
	// values are lowered to it). It bounds a segment preamble's fixed
	// part to MaxGroupsLimit × groupPreambleFixedBytes (about 7 MiB).
	MaxGroupsLimit = 1 << 16
	// maxTotalBaseBytes bounds the bases of all groups together, so that a
	// preamble, which restates every group's base, stays bounded however
	// many groups there are: with it, a preamble is at most
	// groups × groupPreambleFixedBytes + 16 MiB. One group alone may still
	// use maxBaseBytes.
	maxTotalBaseBytes = 16 << 20
	// groupPreambleFixedBytes is what one group other than 0 adds to every
	// segment's preamble beyond its base: a group-start, a compact and a
	// hard-state record (28 + 40 + 44 bytes). Group 0 needs no group-start
	// record: the segment header carries its first index.
	groupPreambleFixedBytes = recordHeaderBytes + groupStartPayloadBytes +
		recordHeaderBytes + markerFixedBytes + recordHeaderBytes + hardStatePayloadBytes
)

// ErrTooManyGroups means a write would create a group beyond
// Options.MaxGroups, or Open found more groups on disk than it allows.
var ErrTooManyGroups = errors.New("wal: too many groups")

// groupState is one Raft group's part of the log: its marker and base, its
// live entries (offset index and recent-entry cache) and its hard state.
// All fields are guarded by Log.mu.
type groupState struct {
	// id is the group ID carried by every record of the group.
	id uint64
	// markerIndex and markerTerm are the compaction/snapshot marker:
	// entries <= markerIndex are gone. Invariant: FirstIndex() == markerIndex+1.
	markerIndex, markerTerm uint64
	// base is the caller's opaque description of the state at the
	// marker (the membership at FirstIndex()-1), owned by the log; nil
	// when empty. The marker's records and every preamble carry it.
	base []byte
	// meta[metaHead:] locates entries markerIndex+1 .. LastIndex().
	meta     []entryMeta
	metaHead int
	// hs is the latest hard state appended.
	hs wire.HardState
	// cache[cacheHead:] holds the entries LastIndex()-n+1 .. LastIndex().
	cache      []cachedEntry
	cacheHead  int
	cacheBytes int64
}

// last is LastIndex of the group.
func (g *groupState) last() uint64 {
	return g.markerIndex + uint64(len(g.meta)-g.metaHead)
}

// metaPos is the position of entry i in meta. REQUIRES: i is live.
func (g *groupState) metaPos(i uint64) int {
	return g.metaHead + int(i-g.markerIndex-1)
}

// cacheFirst is the first index the cache holds (LastIndex()+1 if empty).
func (g *groupState) cacheFirst() uint64 {
	return g.last() + 1 - uint64(len(g.cache)-g.cacheHead)
}

// emptyGroup is what a group that never wrote anything reads as: no
// entries, first index 1, zero hard state, no base. It is never written to.
var emptyGroup = &groupState{}

// View is everything a runtime's replica may do with its group's log.
// *Log (group 0) and *Group (any group) both satisfy it, so a replica
// never learns whether it shares the WAL with other groups. Host-wide
// operations (SetSyncDelay, Stats, Close) are on *Log only.
type View interface {
	// AppendAsync queues entries and hs for the group commit; done runs
	// once they are durable (or the WAL failed). The view is updated at
	// once, and *hs is copied before it returns (the loop reuses it).
	AppendAsync(entries []wire.Entry, hs *wire.HardState, done func(error))
	// Append is AppendAsync waiting for durability (bootstrap only).
	Append(entries []wire.Entry, hs *wire.HardState) error
	// Entries returns entries [lo, hi) up to about maxBytes (at least one).
	Entries(lo, hi, maxBytes uint64) ([]wire.Entry, error)
	// Term is the term of entry i; FirstIndex()-1 gives the base's.
	Term(i uint64) (uint64, error)
	FirstIndex() uint64
	LastIndex() uint64
	// HardState is the last hard state written.
	HardState() wire.HardState
	// Base is the opaque bytes stored with the log's base: the encoded
	// membership there.
	Base() []byte
	// CompactPrefix drops entries up to upTo, storing base with the new
	// base in one durable record.
	CompactPrefix(upTo uint64, base []byte) error
	// Reset empties the log onto a snapshot at (snapIndex, snapTerm), its
	// membership as base, in one durable record.
	Reset(snapIndex, snapTerm uint64, base []byte) error
	// TruncateSuffix drops entries from from on (redoing a bootstrap).
	TruncateSuffix(from uint64) error
}

// Both log types are Views.
var (
	_ View = (*Log)(nil)
	_ View = (*Group)(nil)
)

// Group is the view of one Raft group in a shared Log: the same methods,
// with the same meaning, as the Log's own, which act on group 0. All
// groups share the log's writer: one write and one fsync per round carry
// the batches of every group queued during it, and each call's completion
// fires after the fsync that made it durable. Entries, hard state,
// marker, base, truncations and resets are the group's own; one group
// never sees another's.
//
// A Group is a cheap handle (Log.Group); it is safe for concurrent use.
// Its method set is exactly the one the runtime uses on a Log, so that a
// replica can reach either through one interface.
type Group struct {
	// l is the shared log.
	l *Log
	// id is the group's ID.
	id uint64
	// st caches the group's state once it exists. Guarded by l.mu.
	st *groupState
}

// Group returns the view of group id. No call is needed to create a group:
// a group that has never written anything reads as empty (FirstIndex 1,
// LastIndex 0, zero hard state, nil base) and occupies nothing, in memory
// or on disk. It comes into being with its first write that records
// something (an append with entries or a hard state, or a Reset), is
// durable once that write is, and is restated in every later segment's
// preamble from then on. A write that would create more than
// Options.MaxGroups groups fails with ErrTooManyGroups. Groups are never
// deleted. Group(0) is the group the Log's own methods act on.
//
// Each call returns a new handle; keep it rather than calling Group per
// operation.
func (l *Log) Group(id uint64) *Group {
	return &Group{l: l, id: id}
}

// stateLocked returns the group's state, or emptyGroup if the group has
// never written anything. REQUIRES: l.mu held.
func (g *Group) stateLocked() *groupState {
	if g.st != nil {
		return g.st
	}
	if st := g.l.mu.groups[g.id]; st != nil {
		g.st = st
		return st
	}
	return emptyGroup
}

// createLocked returns the group's state, creating it if needed, or
// ErrTooManyGroups. REQUIRES: l.mu held.
func (g *Group) createLocked() (*groupState, error) {
	if st := g.stateLocked(); st != emptyGroup {
		return st, nil
	}
	st, err := g.l.newGroupLocked(g.id)
	if err != nil {
		return nil, err
	}
	g.st = st
	return st, nil
}

// newGroupLocked adds an empty group id. REQUIRES: l.mu held; id is new.
func (l *Log) newGroupLocked(id uint64) (*groupState, error) {
	if len(l.mu.groups) >= l.opts.MaxGroups {
		return nil, fmt.Errorf("wal: group %d would be group number %d (Options.MaxGroups %d): %w",
			id, len(l.mu.groups)+1, l.opts.MaxGroups, ErrTooManyGroups)
	}
	st := &groupState{id: id}
	l.addGroupLocked(st)
	return st, nil
}

// addGroupLocked registers st. REQUIRES: l.mu held (or l not yet shared).
func (l *Log) addGroupLocked(st *groupState) {
	l.mu.groups[st.id] = st
	l.mu.groupList = append(l.mu.groupList, st)
	l.mu.baseBytes += int64(len(st.base))
	l.counters.groups.Store(int64(len(l.mu.groupList)))
}

// Groups returns the IDs of every group that exists (has written
// something, or was recovered), group 0 first, then in creation order.
func (l *Log) Groups() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]uint64, len(l.mu.groupList))
	for i, st := range l.mu.groupList {
		ids[i] = st.id
	}
	return ids
}

// FirstIndex is Log.FirstIndex for the group.
func (g *Group) FirstIndex() uint64 {
	g.l.mu.Lock()
	defer g.l.mu.Unlock()
	return g.stateLocked().markerIndex + 1
}

// LastIndex is Log.LastIndex for the group.
func (g *Group) LastIndex() uint64 {
	g.l.mu.Lock()
	defer g.l.mu.Unlock()
	return g.stateLocked().last()
}

// Base is Log.Base for the group.
func (g *Group) Base() []byte {
	g.l.mu.Lock()
	defer g.l.mu.Unlock()
	return bytes.Clone(g.stateLocked().base)
}

// HardState is Log.HardState for the group.
func (g *Group) HardState() wire.HardState {
	g.l.mu.Lock()
	defer g.l.mu.Unlock()
	return g.stateLocked().hs
}

// Term is Log.Term for the group.
func (g *Group) Term(i uint64) (uint64, error) {
	g.l.mu.Lock()
	defer g.l.mu.Unlock()
	return termLocked(g.stateLocked(), i)
}

// Entries is Log.Entries for the group.
func (g *Group) Entries(lo, hi, maxBytes uint64) ([]wire.Entry, error) {
	g.l.mu.Lock()
	return g.l.entriesLocked(g.stateLocked(), lo, hi, maxBytes)
}

// AppendAsync is Log.AppendAsync for the group. If the batch would create
// the group beyond Options.MaxGroups, nothing is queued and
// done(ErrTooManyGroups) runs on a goroutine of its own.
func (g *Group) AppendAsync(entries []wire.Entry, hs *wire.HardState, done func(error)) {
	g.l.enqueue(g, entries, hs, waiter{fn: done})
}

// Append is Log.Append for the group.
func (g *Group) Append(entries []wire.Entry, hs *wire.HardState) error {
	sw := syncWaiterPool.Get().(*syncWaiter)
	g.l.enqueue(g, entries, hs, waiter{sw: sw})
	return sw.wait()
}

// TruncateSuffix is Log.TruncateSuffix for the group.
func (g *Group) TruncateSuffix(from uint64) error {
	return g.l.truncateSuffix(g, from)
}

// CompactPrefix is Log.CompactPrefix for the group. Segments are removed
// only once no group needs them (see "Groups" in the package doc).
func (g *Group) CompactPrefix(upTo uint64, base []byte) error {
	return g.l.compactPrefix(g, upTo, base)
}

// Reset is Log.Reset for the group. It creates the group if needed (and
// fails with ErrTooManyGroups beyond Options.MaxGroups).
func (g *Group) Reset(snapIndex, snapTerm uint64, base []byte) error {
	return g.l.reset(g, snapIndex, snapTerm, base)
}

// termLocked is Term for group st. REQUIRES: l.mu held.
func termLocked(st *groupState, i uint64) (uint64, error) {
	switch {
	case i < st.markerIndex:
		return 0, fmt.Errorf("wal: term of %d (first index %d): %w", i, st.markerIndex+1, ErrCompacted)
	case i == st.markerIndex:
		return st.markerTerm, nil
	case i > st.last():
		return 0, fmt.Errorf("wal: term of %d (last index %d): %w", i, st.last(), ErrUnavailable)
	}
	return st.meta[st.metaPos(i)].term, nil
}
