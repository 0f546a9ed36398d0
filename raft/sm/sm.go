// Package sm is the seam between consensus and data: the StateMachine
// interface the node runtime (raft/node) drives, and the two small types
// its methods exchange. raft/kv's Store is the production implementation;
// the runtime's tests run a whole cluster on a second, in-memory one.
//
// It is a package of its own, and not part of raft/node, because an
// implementation must name these types in its method signatures: kv
// cannot import raft/node (the runtime imports kv to open it by default),
// so the interface and its types sit below both, importing only wire.
//
// # What belongs to the state machine and what does not
//
// The state machine holds the data and the index (and term) of the last
// entry applied to it, nothing else. Membership is the runtime's: it lives
// in the WAL (the base bytes of the log's base record, and the conf-change
// entries after it) and in the runtime's own snapshot frame. So a state
// machine never sees a membership blob, and a conf-change entry is to it
// an entry that only advances the applied index.
//
// # Durability contract
//
// The runtime treats the Raft log as the durable record and compacts it
// only up to an index the state machine reported durable (FlushAsync). A
// state machine may therefore keep applied state in memory and lose it in a
// crash, as long as what it comes back with after a crash is its state as
// of some applied index no lower than the last FlushAsync that completed,
// together with that index: the runtime replays the log from there.
package sm

import (
	"io"

	"github.com/raftpipe/raftpipe/wire"
)

// StateMachine is a replicated state machine the runtime applies committed
// entries to.
//
// Apply, FlushAsync, WriteSnapshot, Restore and Close are called from the
// runtime's apply goroutine and from snapshot goroutines; an implementation
// serializes them itself (kv does with one mutex). Lookup and AppliedIndex
// may be called at any time, concurrently with everything else.
type StateMachine interface {
	// Apply applies committed entries in order; results[i] receives the
	// outcome of entries[i]. Entries at or below AppliedIndex are skipped
	// (StatusUnknown), so that replaying the log from an older point is
	// harmless. EntryNormal entries hold the command bytes a client
	// proposed (empty Data: a leader's no-op); EntryNoop and
	// EntryConfChange only advance the applied index. An error is fatal
	// to the node (an I/O failure), never a property of an entry.
	//
	// REQUIRES: len(results) >= len(entries); the entries not skipped are
	// contiguous from AppliedIndex()+1.
	Apply(entries []wire.Entry, results []Result) error
	// Lookup reads key from the local state (the runtime has already made
	// the read linearizable where asked to). The value is the caller's.
	Lookup(key []byte) (value []byte, ok bool, err error)
	// AppliedIndex is the index of the last entry applied, 0 if none.
	AppliedIndex() uint64
	// FlushAsync starts making durable everything applied so far and
	// returns at once: index is the applied index the flush covers, and
	// done is closed once it is durable. The runtime compacts the log
	// only below a flushed index, so applying never waits for a flush.
	FlushAsync() (index uint64, done <-chan struct{}, err error)
	// WriteSnapshot streams a consistent snapshot to w and returns the
	// index and term of the last entry it covers. The bytes are the state
	// machine's own format; the runtime frames them for the wire.
	WriteSnapshot(w io.Writer) (SnapshotInfo, error)
	// Restore replaces the whole state with a snapshot read from r (what
	// WriteSnapshot wrote), atomically with respect to crashes, and
	// returns what it installed. After it, AppliedIndex is info.Index.
	Restore(r io.Reader) (SnapshotInfo, error)
	// Close makes the state durable and releases it.
	Close() error
}

// Result is the outcome of one applied entry, which the runtime hands back
// to the client that proposed it.
type Result struct {
	// Status is the wire status to answer with.
	Status wire.Status
	// Value is returned to the client (for kv: the current value on a
	// failed compare-and-swap). Nil in the common case, so that applying
	// a batch of writes allocates nothing per entry.
	Value []byte
}

// SnapshotInfo identifies the state a snapshot holds: the index and term
// of the last entry applied to it. The term lets the runtime name the
// snapshot to the core without looking it up in a log that may have been
// compacted past it.
type SnapshotInfo struct {
	Index, Term uint64
}
