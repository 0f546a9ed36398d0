package raft

import "github.com/raftpipe/raftpipe/wire"

// Storage is the durable part of the log, read by the core. The runtime
// writes it (appending the entries of each Ready, installing snapshots,
// compacting) and the core only reads it. The WAL implements it for the node;
// MemoryStorage implements it for tests and benchmarks.
//
// The core reads Storage only from inside its own methods (which the
// runtime calls from one goroutine); an implementation that the runtime
// writes from another goroutine must synchronise internally.
//
// REQUIRES (contract with the core):
//   - entries become readable through Storage no later than the
//     AckPersisted call that covers them;
//   - entries the core has not been acked for may or may not be visible
//     (the core reads them from its in-memory unstable log instead);
//   - after a snapshot is installed, FirstIndex() = snapshot index + 1 and
//     Term(snapshot index) = snapshot term.
type Storage interface {
	// InitialState returns the persisted HardState and the membership as of
	// FirstIndex()-1 (the latest snapshot's ConfState, or the bootstrap
	// membership for a log that starts at index 1). The core replays the
	// configuration-change entries it finds after that in the log.
	InitialState() (wire.HardState, wire.ConfState, error)
	// Entries returns entries in [lo, hi), stopping once the total Data size
	// exceeds maxBytes but always returning at least one entry if any is in
	// range. ErrCompacted if lo < FirstIndex(); ErrUnavailable if
	// hi > LastIndex()+1.
	Entries(lo, hi, maxBytes uint64) ([]wire.Entry, error)
	// Term returns the term of entry i, valid for FirstIndex()-1 (the
	// snapshot or compaction marker) through LastIndex(). ErrCompacted below
	// that range, ErrUnavailable above it.
	Term(i uint64) (uint64, error)
	// FirstIndex is the first index available through Entries (compacted
	// entries and the snapshot are below it).
	FirstIndex() uint64
	// LastIndex is the last durable index (FirstIndex()-1 for an empty log).
	LastIndex() uint64
	// Snapshot returns the metadata of the latest snapshot the runtime can
	// stream to a follower; ErrUnavailable if none is ready yet (the core
	// retries on a later heartbeat).
	Snapshot() (wire.SnapshotMeta, error)
}
