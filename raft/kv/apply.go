package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"

	"github.com/cockroachdb/pebble/v2"
	"github.com/raftpipe/raftpipe/wire"
)

// Apply applies committed entries in one Pebble batch, together with the
// new applied index and term (the last entry's). results[i] receives the
// outcome of entries[i].
//
// Entries at or below AppliedIndex are skipped (results: StatusUnknown), so
// replaying the Raft log from an older point is harmless. EntryNormal
// entries hold commands made by EncodeCommand (empty Data is a no-op, as a
// leader's empty entry); EntryNoop and EntryConfChange only advance the
// applied index. If every entry is skipped, nothing is written.
//
// REQUIRES: len(results) >= len(entries); the entries not skipped are
// contiguous and start at AppliedIndex()+1, and their terms do not decrease
// from AppliedTerm() on (anything else would mean a lost, repeated or
// foreign committed entry, and Apply panics before writing anything).
func (s *Store) Apply(entries []wire.Entry, results []Result) error {
	if len(results) < len(entries) {
		panic(fmt.Sprintf("kv: Apply given %d results for %d entries (REQUIRES: len(results) >= len(entries))", len(results), len(entries)))
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.err != nil {
		return s.err
	}
	applied := s.applied.Load()
	start := skipApplied(entries, applied, results)
	todo := entries[start:]
	if len(todo) == 0 {
		return nil
	}
	term := checkApplyOrder(todo, applied, s.appliedTerm.Load())
	b := s.batch
	err := s.fillBatch(b, todo, results[start:])
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	b.Reset()
	last := todo[len(todo)-1].Index
	if err != nil {
		s.err = fmt.Errorf("kv: applying entries %d..%d: %w", todo[0].Index, last, err)
		return s.err
	}
	s.applied.Store(last)
	s.appliedTerm.Store(term)
	return nil
}

// fillBatch writes todo's effects and the applied index into b.
func (s *Store) fillBatch(b *pebble.Batch, todo []wire.Entry, results []Result) error {
	if err := s.ap.fill(b, s.db.DB, todo, results); err != nil {
		return err
	}
	lastEntry := &todo[len(todo)-1]
	binary.BigEndian.PutUint64(s.idxBuf[:8], lastEntry.Index)
	binary.BigEndian.PutUint64(s.idxBuf[8:], lastEntry.Term)
	return b.Set(appliedKey, s.idxBuf[:], nil)
}

// skipApplied answers StatusUnknown for the leading entries at or below
// applied (a replay from an older point) and returns how many there were.
func skipApplied(entries []wire.Entry, applied uint64, results []Result) int {
	start := 0
	for start < len(entries) && entries[start].Index <= applied {
		results[start] = Result{Status: wire.StatusUnknown}
		start++
	}
	return start
}

// checkApplyOrder panics unless todo is contiguous from applied+1 with
// terms that do not decrease from term, and returns the last entry's term.
func checkApplyOrder(todo []wire.Entry, applied, term uint64) uint64 {
	for i := range todo {
		if want := applied + 1 + uint64(i); todo[i].Index != want {
			panic(fmt.Sprintf("kv: entry index %d where %d was expected (invariant: committed entries are applied contiguously)", todo[i].Index, want))
		}
		if todo[i].Term < term {
			panic(fmt.Sprintf("kv: entry %d has term %d after term %d (invariant: terms in the log do not decrease)", todo[i].Index, todo[i].Term, term))
		}
		term = todo[i].Term
	}
	return term
}

// batchApplier turns committed entries into the writes of one Pebble
// batch. It holds the scratch state of one Apply call and the key prefix of
// the keyspace it writes to, so the single-group Store and the engine's
// groups share one implementation of the command semantics.
type batchApplier struct {
	// prefix goes in front of every user key: userKeyPrefix for a Store,
	// the group's user-key prefix for a Group.
	prefix []byte
	// written is a Bloom-style bit set of the keys written by the Apply
	// call in progress; see readUser.
	written writtenFilter
	// keyBuf is scratch space for prefixed user keys read during Apply.
	keyBuf []byte
	// req is the decoded command of the entry being applied, reused.
	req wire.ClientRequest
}

// fill writes the effects of todo into b and their outcomes into results;
// CAS and get read db underneath the batch.
func (a *batchApplier) fill(b *pebble.Batch, db pebble.Reader, todo []wire.Entry, results []Result) error {
	a.written.reset()
	for i := range todo {
		r, err := a.applyEntry(b, db, todo, results, i)
		if err != nil {
			return err
		}
		results[i] = r
	}
	return nil
}

// applyEntry adds the effect of todo[i] to b and returns its result.
// results[:i] hold the outcomes of the batch's earlier entries. An error is
// an I/O error from Pebble, never a property of the entry.
func (a *batchApplier) applyEntry(b *pebble.Batch, db pebble.Reader, todo []wire.Entry, results []Result, i int) (Result, error) {
	e := &todo[i]
	switch e.Type {
	case wire.EntryNormal:
	case wire.EntryNoop, wire.EntryConfChange:
		return Result{}, nil
	default:
		panic(fmt.Sprintf("kv: entry %d has unknown type %d (invariant: the core only commits known entry types)", e.Index, e.Type))
	}
	if len(e.Data) == 0 {
		return Result{}, nil
	}
	req := &a.req
	if err := DecodeCommand(e.Data, req); err != nil {
		return Result{Status: wire.StatusBadRequest}, nil
	}
	switch req.Op {
	case wire.OpPut:
		a.written.add(req.Key)
		return Result{}, a.setUser(b, req.Key, req.Value)
	case wire.OpDelete:
		// No read: deleting a missing key is StatusOK, which keeps deletes
		// as cheap as puts.
		a.written.add(req.Key)
		return Result{}, a.deleteUser(b, req.Key)
	case wire.OpNoop:
		return Result{}, nil
	case wire.OpGet:
		var res Result
		found, err := a.readUser(db, todo[:i], results[:i], req.Key, func(v []byte) {
			res.Value = append([]byte{}, v...)
		})
		if !found {
			res.Status = wire.StatusNotFound
		}
		return res, err
	case wire.OpCAS:
		var res Result
		var swap bool
		absent := req.Flags&wire.FlagExpectAbsent != 0
		found, err := a.readUser(db, todo[:i], results[:i], req.Key, func(v []byte) {
			if !absent && bytes.Equal(v, req.Expect) {
				swap = true
				return
			}
			res.Value = append([]byte{}, v...)
		})
		if err != nil {
			return Result{}, err
		}
		if !found && absent {
			swap = true
		}
		if !swap {
			res.Status = wire.StatusCASFailed
			return res, nil
		}
		a.written.add(req.Key)
		return Result{}, a.setUser(b, req.Key, req.Value)
	default:
		panic(fmt.Sprintf("kv: decoded op %d (invariant: DecodeCommand accepts known ops only)", req.Op))
	}
}

// readUser finds key's current value as the batch being built sees it: the
// last write to key among the batch's earlier entries, else the database.
// If the key exists it calls fn with the value (valid only during fn).
//
// Rejected: an indexed Pebble batch, which answers the same question but
// allocates two iterators per read and makes every insert slower. Instead
// the written filter says, for almost every key, that the batch has not
// touched it, and a plain database read answers; only a hit (the key was
// written earlier in this batch, or a false positive) scans the batch's
// earlier entries backwards, which are at hand already decoded-able.
func (a *batchApplier) readUser(db pebble.Reader, earlier []wire.Entry, results []Result, key []byte, fn func(v []byte)) (found bool, err error) {
	if a.written.mayContain(key) {
		if v, found, ok := lastWrite(earlier, results, key); ok {
			if found {
				fn(v)
			}
			return found, nil
		}
	}
	a.keyBuf = append(append(a.keyBuf[:0], a.prefix...), key...)
	v, closer, err := db.Get(a.keyBuf)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	fn(v)
	return true, closer.Close()
}

// lastWrite scans earlier (with their results) backwards for the last entry
// that wrote key: a put, a delete or a CAS that succeeded. ok is false if
// none did; otherwise found says whether key exists after that write and v
// is its value (aliasing the entry's Data).
func lastWrite(earlier []wire.Entry, results []Result, key []byte) (v []byte, found, ok bool) {
	var r wire.ClientRequest
	for j := len(earlier) - 1; j >= 0; j-- {
		e := &earlier[j]
		if e.Type != wire.EntryNormal || len(e.Data) == 0 || DecodeCommand(e.Data, &r) != nil {
			continue
		}
		if !bytes.Equal(r.Key, key) {
			continue
		}
		switch {
		case r.Op == wire.OpPut:
			return r.Value, true, true
		case r.Op == wire.OpDelete:
			return nil, false, true
		case r.Op == wire.OpCAS && results[j].Status == wire.StatusOK:
			return r.Value, true, true
		}
	}
	return nil, false, false
}

// writtenFilterBits is the size of the per-Apply written-key filter. With
// a batch of n writes a read that the batch did not touch scans needlessly
// with probability about n/writtenFilterBits (1.6% at n = 64).
const writtenFilterBits = 4096

// writtenFilter is a one-hash Bloom filter over the keys written by the
// Apply call in progress.
type writtenFilter struct {
	// seed keys the hash; any fixed seed works, the filter never leaves
	// the process.
	seed maphash.Seed
	// seeded says seed was set (the zero Seed is not usable).
	seeded bool
	// bits has one bit per hash bucket.
	bits [writtenFilterBits / 64]uint64
}

func (f *writtenFilter) reset() {
	if !f.seeded {
		f.seed, f.seeded = maphash.MakeSeed(), true
	}
	f.bits = [writtenFilterBits / 64]uint64{}
}

func (f *writtenFilter) bucket(key []byte) uint64 {
	return maphash.Bytes(f.seed, key) % writtenFilterBits
}

func (f *writtenFilter) add(key []byte) {
	h := f.bucket(key)
	f.bits[h/64] |= 1 << (h % 64)
}

func (f *writtenFilter) mayContain(key []byte) bool {
	h := f.bucket(key)
	return f.bits[h/64]&(1<<(h%64)) != 0
}

// setUser adds a set of the prefixed key to b, writing the prefix and key
// straight into the batch's buffer (no intermediate copy).
func (a *batchApplier) setUser(b *pebble.Batch, key, value []byte) error {
	op := b.SetDeferred(len(a.prefix)+len(key), len(value))
	n := copy(op.Key, a.prefix)
	copy(op.Key[n:], key)
	copy(op.Value, value)
	return op.Finish()
}

// deleteUser adds a delete of the prefixed key to b.
func (a *batchApplier) deleteUser(b *pebble.Batch, key []byte) error {
	op := b.DeleteDeferred(len(a.prefix) + len(key))
	n := copy(op.Key, a.prefix)
	copy(op.Key[n:], key)
	return op.Finish()
}
