package wal

import (
	"bytes"
	"fmt"
	"github.com/raftpipe/raftpipe/internal/vfsutil"

	"github.com/raftpipe/raftpipe/wire"
)

// AppendAsync queues a batch: entries (may be empty) and an optional hard
// state. If entries[0].Index <= LastIndex(), the conflicting suffix from
// entries[0].Index on is truncated as part of the same batch.
//
// REQUIRES: entries are contiguous, entries[0].Index is in
// [FirstIndex(), LastIndex()+1], and each len(Data) <= MaxEntryBytes.
//
// The in-memory view (LastIndex, Entries, Term, HardState) reflects the
// batch when AppendAsync returns, in call order. The log copies the entries'
// Data, so the caller may reuse its buffers at once. done(err) runs on the
// writer goroutine once the batch and everything queued before it is
// durable, or with the log's sticky error; it must not block, and it must
// not call the log's write methods (AppendAsync, Append, TruncateSuffix,
// CompactPrefix, Reset: they may wait for the writer it is running on);
// the read methods are fine. After Close, done(ErrClosed) runs on a
// goroutine of its own.
//
// AppendAsync blocks while MaxBatchBytes are already queued (backpressure).
func (l *Log) AppendAsync(entries []wire.Entry, hs *wire.HardState, done func(error)) {
	l.enqueue(entries, hs, waiter{fn: done})
}

// Append is AppendAsync followed by a wait for durability.
func (l *Log) Append(entries []wire.Entry, hs *wire.HardState) error {
	return l.appendStart(entries, hs).wait()
}

// appendStart is the first half of Append: it queues the batch and returns
// the pooled waiter to wait on. Benchmarks use it to assign indexes under
// their own lock and wait outside it, exactly as Append does.
func (l *Log) appendStart(entries []wire.Entry, hs *wire.HardState) *syncWaiter {
	sw := syncWaiterPool.Get().(*syncWaiter)
	l.enqueue(entries, hs, waiter{sw: sw})
	return sw
}

// wait blocks until the waiter fires and recycles it.
func (sw *syncWaiter) wait() error {
	err := <-sw.ch
	syncWaiterPool.Put(sw)
	return err
}

// fire completes one waiter.
func (w waiter) fire(err error) {
	if w.fn != nil {
		w.fn(err)
	}
	if w.sw != nil {
		w.sw.ch <- err
	}
}

// enqueue validates, encodes and queues one batch, updates the view, and
// registers w for its completion.
func (l *Log) enqueue(entries []wire.Entry, hs *wire.HardState, w waiter) {
	// Copy the data outside the lock: one allocation per call, not per entry.
	var arena []byte
	if n := dataBytes(entries); n > 0 {
		arena = make([]byte, 0, n)
		for i := range entries {
			arena = append(arena, entries[i].Data...)
		}
	}
	l.mu.Lock()
	if !l.waitForSpaceLocked() {
		l.rejectLocked(w)
		return
	}
	if len(entries) > 0 {
		if msg := l.checkAppendLocked(entries); msg != "" {
			l.mu.Unlock()
			panic("wal: AppendAsync REQUIRES violated: " + msg)
		}
	}
	l.mu.batchSeq++
	// The batch is encoded [truncate][entries...][hard state]: the hard
	// state goes last, so that any prefix of the batch a power loss keeps
	// holds the hard state only together with every entry before it. (It
	// went before the entries once: a prefix ending just after it recovered
	// Commit beyond LastIndex, and the Raft core refused to start.)
	if len(entries) > 0 && entries[0].Index <= l.lastLocked() {
		l.truncateLocked(entries[0].Index)
	}
	pos := 0
	for i := range entries {
		e := &entries[i]
		end := pos + len(e.Data)
		l.entryLocked(wire.Entry{Term: e.Term, Index: e.Index, Type: e.Type, Data: arena[pos:end:end]})
		pos = end
	}
	if hs != nil {
		l.hardStateLocked(*hs)
	}
	l.evictLocked()
	l.mu.waiters = append(l.mu.waiters, w)
	l.queuedWaiters.Store(int64(len(l.mu.waiters)))
	l.mu.work.Signal()
	l.mu.Unlock()
}

// dataBytes sums the entries' data lengths.
func dataBytes(entries []wire.Entry) int {
	n := 0
	for i := range entries {
		n += len(entries[i].Data)
	}
	return n
}

// waitForSpaceLocked blocks while a full batch is already queued. It
// returns false if the log is closing or failed, in which case nothing may
// be queued.
func (l *Log) waitForSpaceLocked() bool {
	for l.mu.err == nil && !l.mu.closing && int64(len(l.mu.buf)) >= l.opts.MaxBatchBytes {
		l.mu.space.Wait()
	}
	return l.mu.err == nil && !l.mu.closing
}

// rejectLocked completes w with the sticky error or ErrClosed and unlocks.
// With a sticky error the writer fires it (so done still runs on the writer
// goroutine, after everything queued before it); after Close the writer is
// gone, so a goroutine does.
func (l *Log) rejectLocked(w waiter) {
	if l.mu.closing {
		l.mu.Unlock()
		go w.fire(ErrClosed)
		return
	}
	l.mu.waiters = append(l.mu.waiters, w)
	l.queuedWaiters.Store(int64(len(l.mu.waiters)))
	l.mu.work.Signal()
	l.mu.Unlock()
}

// checkAppendLocked returns why entries may not be appended, or "".
func (l *Log) checkAppendLocked(entries []wire.Entry) string {
	first, last := l.mu.markerIndex+1, l.lastLocked()
	if i := entries[0].Index; i < first || i > last+1 {
		return fmt.Sprintf("entries[0].Index %d outside [FirstIndex %d, LastIndex+1 %d]", i, first, last+1)
	}
	for i := range entries {
		if i > 0 && entries[i].Index != entries[i-1].Index+1 {
			return fmt.Sprintf("entries not contiguous at %d -> %d", entries[i-1].Index, entries[i].Index)
		}
		if len(entries[i].Data) > MaxEntryBytes {
			return fmt.Sprintf("entry %d has %d data bytes > MaxEntryBytes", entries[i].Index, len(entries[i].Data))
		}
	}
	return ""
}

// reserveLocked makes room for a record of n bytes in the current segment,
// rolling to a new segment if it does not fit, and returns the buffer
// position the record will be encoded at.
func (l *Log) reserveLocked(n int) int {
	if l.mu.curOff+int64(n) > l.mu.curSize {
		l.rollLocked(n)
	}
	return len(l.mu.buf)
}

// preambleBytes is the size of the records every segment starts with when
// the base is baseLen bytes: the current marker (with the base) and hard
// state, so that older segments can be removed without losing either.
func preambleBytes(baseLen int) int {
	return markerRecordBytes(baseLen) + recordHeaderBytes + hardStatePayloadBytes
}

// rollLocked queues the creation of the next segment, sized to hold at
// least a record of n bytes, with its header and preamble.
//
// The preamble restates l.mu.hs, the hard state of the last hard-state
// record encoded. Every entry encoded before that record (its own batch's
// included, since the hard state comes last in a batch) is in an earlier
// segment, and the writer syncs the earlier segment fully before it creates
// this one; so a durable preamble never carries a commit beyond entries
// that are durable before it.
func (l *Log) rollLocked(n int) {
	seq := l.mu.curSeq + 1
	size := l.opts.SegmentBytes
	if need := int64(segmentHeaderBytes + preambleBytes(len(l.mu.base)) + n); need > size {
		size = need
	}
	start := len(l.mu.buf)
	l.mu.buf = appendSegmentHeader(l.mu.buf, segmentHeader{seq: seq, firstIndex: l.lastLocked() + 1})
	l.mu.buf = appendMarkerRecord(l.mu.buf, recCompact, l.mu.markerIndex, l.mu.markerTerm, l.mu.base)
	hs := l.mu.hs
	l.mu.buf = appendU64Record(l.mu.buf, recHardState, hs.Term, hs.Vote, hs.Commit)
	l.mu.chunks = append(l.mu.chunks, chunk{seq: seq, off: 0, start: start, end: len(l.mu.buf), create: true, allocBytes: size})
	l.mu.curSeq, l.mu.curOff, l.mu.curSize = seq, int64(len(l.mu.buf)-start), size
	l.mu.segs = append(l.mu.segs, seq)
}

// commitLocked accounts for the record just encoded at buffer position pos:
// it extends the last chunk or starts a new one, and advances curOff.
func (l *Log) commitLocked(pos int, isEntry bool) {
	n := len(l.mu.buf) - pos
	c := len(l.mu.chunks) - 1
	if c >= 0 && l.mu.chunks[c].seq == l.mu.curSeq && l.mu.chunks[c].end == pos &&
		l.mu.chunks[c].off+int64(l.mu.chunks[c].end-l.mu.chunks[c].start) == l.mu.curOff {
		l.mu.chunks[c].end += n
	} else {
		l.mu.chunks = append(l.mu.chunks, chunk{seq: l.mu.curSeq, off: l.mu.curOff, start: pos, end: pos + n})
		c++
	}
	if isEntry {
		l.mu.chunks[c].entries++
	}
	l.mu.curOff += int64(n)
}

// entryLocked encodes one entry and adds it to the view.
// REQUIRES: e.Index == LastIndex()+1; e.Data is owned by the log.
func (l *Log) entryLocked(e wire.Entry) {
	size := entryRecordBytes(len(e.Data))
	pos := l.reserveLocked(size)
	off := l.mu.curOff
	l.mu.buf = appendEntryRecord(l.mu.buf, e.Index, e.Term, uint8(e.Type), e.Data)
	l.commitLocked(pos, true)
	l.mu.meta = append(l.mu.meta, entryMeta{term: e.Term, seq: uint32(l.mu.curSeq), off: uint32(off), size: uint32(size)})
	// Every new entry enters the cache, even with caching disabled: it
	// leaves only after the writer has written it (evictLocked).
	l.mu.cache = append(l.mu.cache, cachedEntry{e: e, batch: l.mu.batchSeq})
	l.mu.cacheBytes += int64(len(e.Data)) + cacheEntryOverheadBytes
}

// hardStateLocked encodes a hard-state record and updates the view.
func (l *Log) hardStateLocked(hs wire.HardState) {
	pos := l.reserveLocked(recordHeaderBytes + hardStatePayloadBytes)
	l.mu.buf = appendU64Record(l.mu.buf, recHardState, hs.Term, hs.Vote, hs.Commit)
	l.commitLocked(pos, false)
	l.mu.hs = hs
}

// truncateLocked encodes a truncation record and drops entries >= from
// from the view. REQUIRES: FirstIndex() <= from <= LastIndex().
func (l *Log) truncateLocked(from uint64) {
	pos := l.reserveLocked(recordHeaderBytes + truncatePayloadBytes)
	l.mu.buf = appendU64Record(l.mu.buf, recTruncate, from)
	l.commitLocked(pos, false)
	cf := l.cacheFirstLocked() // before meta shrinks: it depends on LastIndex
	l.mu.meta = l.mu.meta[:l.metaPos(from)]
	if from <= cf {
		clear(l.mu.cache[l.mu.cacheHead:])
		l.mu.cache = l.mu.cache[:0]
		l.mu.cacheHead = 0
		l.mu.cacheBytes = 0
	} else {
		cut := l.mu.cacheHead + int(from-cf)
		for _, c := range l.mu.cache[cut:] {
			l.mu.cacheBytes -= int64(len(c.e.Data)) + cacheEntryOverheadBytes
		}
		clear(l.mu.cache[cut:])
		l.mu.cache = l.mu.cache[:cut]
	}
}

// markerLocked encodes a compaction (reset=false) or reset record and
// updates the view. For a compaction REQUIRES markerIndex < index <= LastIndex().
// REQUIRES: base is owned by the log (nil if empty), len(base) <= maxBaseBytes.
func (l *Log) markerLocked(index, term uint64, base []byte, reset bool) {
	t := recCompact
	if reset {
		t = recReset
	}
	pos := l.reserveLocked(markerRecordBytes(len(base)))
	l.mu.buf = appendMarkerRecord(l.mu.buf, t, index, term, base)
	l.commitLocked(pos, false)
	drop := len(l.mu.meta) - l.mu.metaHead // reset: everything
	cacheDrop := len(l.mu.cache) - l.mu.cacheHead
	if !reset {
		drop = int(index - l.mu.markerIndex)
		if cf := l.cacheFirstLocked(); index < cf {
			cacheDrop = 0
		} else {
			cacheDrop = int(index - cf + 1)
		}
	}
	l.mu.metaHead += drop
	for i := l.mu.cacheHead; i < l.mu.cacheHead+cacheDrop; i++ {
		l.mu.cacheBytes -= int64(len(l.mu.cache[i].e.Data)) + cacheEntryOverheadBytes
		l.mu.cache[i] = cachedEntry{}
	}
	l.mu.cacheHead += cacheDrop
	l.mu.markerIndex, l.mu.markerTerm = index, term
	l.mu.base = base
	l.compactSlicesLocked()
}

// compactSlicesLocked moves live meta and cache entries to the front of
// their slices once more than half of each is dead, so memory stays
// proportional to the live log.
func (l *Log) compactSlicesLocked() {
	if l.mu.metaHead > 0 && l.mu.metaHead >= len(l.mu.meta)/2 {
		n := copy(l.mu.meta, l.mu.meta[l.mu.metaHead:])
		l.mu.meta = l.mu.meta[:n]
		l.mu.metaHead = 0
	}
	if l.mu.cacheHead > 0 && l.mu.cacheHead >= len(l.mu.cache)/2 {
		n := copy(l.mu.cache, l.mu.cache[l.mu.cacheHead:])
		clear(l.mu.cache[n:])
		l.mu.cache = l.mu.cache[:n]
		l.mu.cacheHead = 0
	}
}

// evictLocked drops the oldest cached entries while the cache is over
// budget, but only entries the writer has already written, so that every
// live entry is always either cached or readable from disk.
func (l *Log) evictLocked() {
	budget := l.opts.CacheBytes
	if budget < 0 {
		budget = 0
	}
	h := l.mu.cacheHead
	for l.mu.cacheBytes > budget && h < len(l.mu.cache) && l.mu.cache[h].batch <= l.mu.writtenBatch {
		l.mu.cacheBytes -= int64(len(l.mu.cache[h].e.Data)) + cacheEntryOverheadBytes
		l.mu.cache[h] = cachedEntry{}
		h++
	}
	if h != l.mu.cacheHead {
		l.mu.cacheHead = h
		l.compactSlicesLocked()
	}
}

// syncOp queues a batch built by build (with mu held, after the checks in
// build pass) and waits for it to be durable. build returns an error to
// refuse without queuing anything, or skip=true when there is nothing to do.
func (l *Log) syncOp(build func() (skip bool, err error)) error {
	sw := syncWaiterPool.Get().(*syncWaiter)
	defer syncWaiterPool.Put(sw)
	l.mu.Lock()
	if !l.waitForSpaceLocked() {
		l.rejectLocked(waiter{sw: sw})
		return <-sw.ch
	}
	skip, err := build()
	if err != nil || skip {
		l.mu.Unlock()
		return err
	}
	l.mu.batchSeq++
	l.evictLocked()
	l.mu.waiters = append(l.mu.waiters, waiter{sw: sw})
	l.queuedWaiters.Store(int64(len(l.mu.waiters)))
	l.mu.work.Signal()
	l.mu.Unlock()
	return <-sw.ch
}

// TruncateSuffix drops every entry >= from, durably before it returns.
// from > LastIndex() is a no-op; from < FirstIndex() is ErrCompacted.
func (l *Log) TruncateSuffix(from uint64) error {
	return l.syncOp(func() (bool, error) {
		if from < l.mu.markerIndex+1 {
			return false, fmt.Errorf("wal: truncate from %d (first index %d): %w", from, l.mu.markerIndex+1, ErrCompacted)
		}
		if from > l.lastLocked() {
			return true, nil
		}
		l.truncateLocked(from)
		return false, nil
	})
}

// CompactPrefix records, durably, that a snapshot covers entries <= upTo:
// FirstIndex() becomes upTo+1, Term(upTo) stays answerable, and Base()
// becomes base (the caller's opaque description of the state at upTo, e.g.
// the membership there; the log copies it). Segments holding only entries
// <= upTo are then removed. upTo <= FirstIndex()-1 is a no-op that ignores
// base; upTo > LastIndex() is ErrUnavailable (use Reset); a base longer
// than 1 MiB is ErrBaseTooLarge.
func (l *Log) CompactPrefix(upTo uint64, base []byte) error {
	own, err := ownBase(base)
	if err != nil {
		return err
	}
	var removeBelow uint64
	err = l.syncOp(func() (bool, error) {
		if upTo <= l.mu.markerIndex {
			return true, nil
		}
		if upTo > l.lastLocked() {
			return false, fmt.Errorf("wal: compact to %d (last index %d): %w", upTo, l.lastLocked(), ErrUnavailable)
		}
		term := l.mu.meta[l.metaPos(upTo)].term
		l.markerLocked(upTo, term, own, false)
		removeBelow = l.mu.curSeq
		if l.lastLocked() > upTo {
			removeBelow = min(removeBelow, uint64(l.mu.meta[l.mu.metaHead].seq))
		}
		return false, nil
	})
	if err != nil || removeBelow == 0 {
		return err
	}
	return l.removeSegmentsBelow(removeBelow)
}

// Reset drops every entry and makes the log continue at snapIndex+1 with
// marker term snapTerm and Base() base (a follower installed a snapshot
// beyond its log; the log copies base), durably before it returns. Older
// segments are then removed. A base longer than 1 MiB is ErrBaseTooLarge.
func (l *Log) Reset(snapIndex, snapTerm uint64, base []byte) error {
	own, err := ownBase(base)
	if err != nil {
		return err
	}
	var removeBelow uint64
	err = l.syncOp(func() (bool, error) {
		l.markerLocked(snapIndex, snapTerm, own, true)
		removeBelow = l.mu.curSeq
		return false, nil
	})
	if err != nil {
		return err
	}
	return l.removeSegmentsBelow(removeBelow)
}

// ownBase checks a caller's base against maxBaseBytes and returns the
// log's own copy of it (nil if empty).
func ownBase(base []byte) ([]byte, error) {
	if len(base) > maxBaseBytes {
		return nil, fmt.Errorf("wal: base of %d bytes (at most %d): %w", len(base), maxBaseBytes, ErrBaseTooLarge)
	}
	if len(base) == 0 {
		return nil, nil
	}
	return bytes.Clone(base), nil
}

// removeSegmentsBelow removes every segment with seq < below, oldest first
// (so a crash leaves a contiguous suffix), then syncs the directory.
// REQUIRES: the record that made them dead is durable.
func (l *Log) removeSegmentsBelow(below uint64) error {
	l.removeMu.Lock()
	defer l.removeMu.Unlock()
	l.mu.Lock()
	var victims []uint64
	for _, s := range l.mu.segs {
		if s < below {
			victims = append(victims, s)
		}
	}
	l.mu.Unlock()
	if len(victims) == 0 {
		return nil
	}
	removed := 0
	var err error
	for _, s := range victims {
		l.rd.Lock()
		if f, ok := l.rd.files[s]; ok {
			f.Close()
			delete(l.rd.files, s)
		}
		l.rd.Unlock()
		if err = l.fs.Remove(segmentName(l.dir, s)); err != nil {
			err = fmt.Errorf("wal: remove segment: %w", err)
			break
		}
		removed++
	}
	l.mu.Lock()
	l.mu.segs = l.mu.segs[removed:]
	l.mu.Unlock()
	if removed > 0 {
		if serr := vfsutil.SyncDir(l.fs, l.dir); serr != nil && err == nil {
			err = fmt.Errorf("wal: sync dir after removing segments: %w", serr)
		}
	}
	return err
}
