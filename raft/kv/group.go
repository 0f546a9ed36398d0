package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/raftpipe/raftpipe/raft/sm"
	"github.com/raftpipe/raftpipe/wire"
)

// Group is one Raft group's view of an Engine: the state machine the
// runtime drives for that group, with the operations it uses on a Store,
// confined to the group's key span. Membership is not its business (the
// runtime and the WAL keep it), so Apply takes no meta and the snapshots
// carry none.
//
// Apply, FlushAsync, Flush, WriteSnapshot (taking its Pebble snapshot),
// Restore and Close may be called from any goroutine but are serialized
// per group; Get, AppendValue, Hash, AppliedIndex and AppliedTerm may run
// at any time. Different groups never wait for each other, except that
// they share Pebble's commit pipeline and its flushes.
//
// Lock order, everywhere: Group.streamMu, Group.applyMu, Engine.dbMu,
// Engine.mu, Engine.flush. Engine.Close takes dbMu exclusively, so taking
// them out of order (dbMu, then a group's applyMu) deadlocks at shutdown.
type Group struct {
	// e is the engine whose database holds the group.
	e *Engine
	// id is the group's ID, the prefix of all its keys.
	id uint64
	// keys are the group's span, prefixes and applied-record key.
	keys groupKeys

	// streamMu is held shared by WriteSnapshot while it streams from its
	// Pebble snapshot, and exclusively by Restore: an excise removes the
	// span's data from open Pebble snapshots too, so a restore must not
	// run under a stream of the same group.
	streamMu sync.RWMutex
	// applyMu serializes the group's writers and guards err.
	applyMu sync.Mutex
	// err is the first commit error. Once set, Apply refuses to go on: the
	// in-memory applied index and Pebble may no longer agree. A successful
	// Restore clears it.
	err error
	// closed is set by Close and by Engine.Close.
	closed atomic.Bool

	// applied and appliedTerm mirror the group's applied record, readable
	// without a lock. Invariant: equal the record in the database after
	// every Apply and Restore. A reader outside the writers' lock may see
	// the two from different calls; SnapshotInfo is a consistent pair.
	applied     atomic.Uint64
	appliedTerm atomic.Uint64
}

// A Group is a state machine the runtime can drive, one per Replica.
var _ sm.StateMachine = (*Group)(nil)

// ID is the group's ID.
func (g *Group) ID() uint64 { return g.id }

// AppliedIndex is the index of the last entry applied to the group, as
// read by Engine.Group and advanced by Apply and Restore.
func (g *Group) AppliedIndex() uint64 { return g.applied.Load() }

// AppliedTerm is the term of the entry at AppliedIndex (0 if none).
func (g *Group) AppliedTerm() uint64 { return g.appliedTerm.Load() }

// WriteStalls is the engine's count of Pebble write stalls: the groups
// share one database, so a stall delays all of them.
func (g *Group) WriteStalls() int64 { return g.e.WriteStalls() }

// Apply applies committed entries of this group in one Pebble batch,
// together with the group's new applied index and term; results[i]
// receives the outcome of entries[i]. The semantics are Store.Apply's
// (entries at or below AppliedIndex are skipped with StatusUnknown), with
// no membership blob.
//
// REQUIRES: len(results) >= len(entries); the entries not skipped are
// contiguous from AppliedIndex()+1 and their terms do not decrease from
// AppliedTerm() (Apply panics otherwise, before writing anything).
func (g *Group) Apply(entries []wire.Entry, results []Result) error {
	if len(results) < len(entries) {
		panic(fmt.Sprintf("kv: Apply given %d results for %d entries (REQUIRES: len(results) >= len(entries))", len(results), len(entries)))
	}
	g.applyMu.Lock()
	defer g.applyMu.Unlock()
	e := g.e
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	if e.closed || g.closed.Load() {
		return ErrClosed
	}
	if g.err != nil {
		return g.err
	}
	applied := g.applied.Load()
	start := skipApplied(entries, applied, results)
	todo := entries[start:]
	if len(todo) == 0 {
		return nil
	}
	term := checkApplyOrder(todo, applied, g.appliedTerm.Load())
	// A pooled batch and applier: a group keeps no buffers between calls.
	b := e.db.NewBatch()
	a := e.getApplier(g.keys.user)
	err := a.fill(b, e.db.DB, todo, results[start:])
	e.putApplier(a)
	last := &todo[len(todo)-1]
	if err == nil {
		op := b.SetDeferred(len(g.keys.applied), appliedRecordBytes)
		copy(op.Key, g.keys.applied)
		binary.BigEndian.PutUint64(op.Value[:8], last.Index)
		binary.BigEndian.PutUint64(op.Value[8:], last.Term)
		err = op.Finish()
	}
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	_ = b.Close()
	if err != nil {
		g.err = fmt.Errorf("kv: group %d: applying entries %d..%d: %w", g.id, todo[0].Index, last.Index, err)
		return g.err
	}
	// Counted before the applied index moves, so a FlushAsync that reads
	// the new index also sees the commit (see Engine.flushAsync).
	e.commits.Add(1)
	g.applied.Store(last.Index)
	g.appliedTerm.Store(term)
	return nil
}

// Lookup is Get, for sm.StateMachine.
func (g *Group) Lookup(key []byte) ([]byte, bool, error) { return g.Get(key) }

// Get returns a copy of key's value in this group (local state; see
// Store.Get).
func (g *Group) Get(key []byte) (value []byte, ok bool, err error) {
	v, ok, err := g.AppendValue(nil, key)
	if ok && v == nil {
		v = []byte{}
	}
	return v, ok, err
}

// AppendValue appends key's value in this group to dst and reports whether
// key exists, so a reader can reuse one buffer across reads.
func (g *Group) AppendValue(dst, key []byte) ([]byte, bool, error) {
	kp := keyPool.Get().(*[]byte)
	k := append(append((*kp)[:0], g.keys.user...), key...)
	defer func() { *kp = k; keyPool.Put(kp) }()

	e := g.e
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	if e.closed || g.closed.Load() {
		return dst, false, ErrClosed
	}
	v, closer, err := e.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return dst, false, nil
	}
	if err != nil {
		return dst, false, fmt.Errorf("kv: group %d: get: %w", g.id, err)
	}
	dst = append(dst, v...)
	return dst, true, closer.Close()
}

// FlushAsync starts making everything applied so far durable and returns
// at once: flushed is this group's applied index when the flush started
// (what it covers), and done is closed once that is durable. The flush is
// the engine's, so it makes every group durable; groups that ask with
// nothing written since the last flush started share that flush instead
// of starting one each.
func (g *Group) FlushAsync() (flushed uint64, done <-chan struct{}, err error) {
	e := g.e
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	if e.closed || g.closed.Load() {
		return 0, nil, ErrClosed
	}
	// Read before the flush starts: every batch up to this index was
	// counted in e.commits before the index was published.
	flushed = g.applied.Load()
	done, err = e.flushAsync()
	if err != nil {
		return 0, nil, err
	}
	return flushed, done, nil
}

// Flush makes everything applied to this group so far durable (and, the
// flush being the engine's, every other group's too).
func (g *Group) Flush() error {
	_, done, err := g.FlushAsync()
	if err != nil {
		return err
	}
	<-done
	return nil
}

// Hash is the 64-bit FNV-1a hash of the group's user keys and values, as
// Store.Hash computes it: a group and a Store holding the same data hash
// alike.
func (g *Group) Hash() (uint64, error) {
	e := g.e
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	if e.closed || g.closed.Load() {
		return 0, ErrClosed
	}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: g.keys.user, UpperBound: g.keys.userEnd})
	if err != nil {
		return 0, fmt.Errorf("kv: group %d: hash: %w", g.id, err)
	}
	h := fnv.New64a()
	var lenBuf [binary.MaxVarintLen64]byte
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()[groupPrefixBytes:]
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return 0, fmt.Errorf("kv: group %d: hash: %w", g.id, err)
		}
		_, _ = h.Write(binary.AppendUvarint(lenBuf[:0], uint64(len(k))))
		_, _ = h.Write(k)
		_, _ = h.Write(binary.AppendUvarint(lenBuf[:0], uint64(len(v))))
		_, _ = h.Write(v)
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("kv: group %d: hash: %w", g.id, err)
	}
	return h.Sum64(), nil
}

// Close makes the group's applied state durable (as sm.StateMachine
// asks) and releases the view, so Engine.Group may open the group again;
// the group's data stays. The flush is the engine's and is shared: when
// many groups close one after the other with nothing written between,
// the first one's flush serves them all. Close waits for the view's
// WriteSnapshot streams to end (a new view's Restore must not excise the
// span under them). A second Close, or a Close after Engine.Close,
// returns ErrClosed.
func (g *Group) Close() error {
	g.streamMu.Lock()
	defer g.streamMu.Unlock()
	g.applyMu.Lock()
	defer g.applyMu.Unlock()
	e := g.e
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	if g.closed.Swap(true) || e.closed {
		return ErrClosed
	}
	e.mu.Lock()
	if e.mu.groups[g.id] == g {
		delete(e.mu.groups, g.id)
	}
	e.mu.Unlock()
	if g.err != nil {
		// Pebble may not hold what the index says; nothing to make durable.
		return nil
	}
	done, err := e.flushAsync()
	if err != nil {
		return err
	}
	<-done
	return nil
}
