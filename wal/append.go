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
	l.enqueue(&l.g0, entries, hs, waiter{fn: done})
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
	l.enqueue(&l.g0, entries, hs, waiter{sw: sw})
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

// enqueue validates, encodes and queues one batch of group gh, updates the
// view, and registers w for its completion. A batch that records
// something creates the group if it does not exist yet.
func (l *Log) enqueue(gh *Group, entries []wire.Entry, hs *wire.HardState, w waiter) {
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
	g := gh.stateLocked()
	if len(entries) > 0 {
		if msg := checkAppend(g, entries); msg != "" {
			l.mu.Unlock()
			panic(fmt.Sprintf("wal: AppendAsync (group %d) REQUIRES violated: %s", gh.id, msg))
		}
	}
	if g == emptyGroup && (len(entries) > 0 || hs != nil) {
		var err error
		if g, err = gh.createLocked(); err != nil {
			l.mu.Unlock()
			go w.fire(err)
			return
		}
	}
	l.mu.batchSeq++
	// The batch is encoded [truncate][entries...][hard state]: the hard
	// state goes last, so that any prefix of the batch a power loss keeps
	// holds the hard state only together with every entry before it. (It
	// went before the entries once: a prefix ending just after it recovered
	// Commit beyond LastIndex, and the Raft core refused to start.)
	if len(entries) > 0 && entries[0].Index <= g.last() {
		l.truncateLocked(g, entries[0].Index)
	}
	pos := 0
	for i := range entries {
		e := &entries[i]
		end := pos + len(e.Data)
		l.entryLocked(g, wire.Entry{Term: e.Term, Index: e.Index, Type: e.Type, Data: arena[pos:end:end]})
		pos = end
	}
	if hs != nil {
		l.hardStateLocked(g, *hs)
	}
	l.evictLocked(g)
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

// checkAppend returns why entries may not be appended to g, or "".
// REQUIRES: l.mu held.
func checkAppend(g *groupState, entries []wire.Entry) string {
	first, last := g.markerIndex+1, g.last()
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

// preambleBytes is the size of group 0's part of a segment preamble when
// its base is baseLen bytes: its marker (with the base) and hard state.
func preambleBytes(baseLen int) int {
	return markerRecordBytes(baseLen) + recordHeaderBytes + hardStatePayloadBytes
}

// preambleBytesLocked is the size of the preamble a segment begun now
// would start with: every group's marker, base and hard state, and for
// groups other than 0 a group-start record. It is at most
// len(groups) × groupPreambleFixedBytes + maxTotalBaseBytes.
func (l *Log) preambleBytesLocked() int {
	n := 0
	for _, g := range l.mu.groupList {
		n += preambleBytes(len(g.base))
		if g.id != 0 {
			n += recordHeaderBytes + groupStartPayloadBytes
		}
	}
	return n
}

// rollLocked queues the creation of the next segment, sized to hold at
// least a record of n bytes, with its header and preamble.
//
// The preamble restates, for every group, its marker and base and g.hs,
// the hard state of the group's last hard-state record encoded; for
// groups other than 0 it first states the group's LastIndex()+1 (the
// header states group 0's). Every entry encoded before such a hard-state
// record (its own batch's included, since the hard state comes last in a
// batch) is in an earlier segment, and the writer syncs the earlier
// segment fully before it creates this one; so a durable preamble never
// carries a commit beyond entries that are durable before it.
func (l *Log) rollLocked(n int) {
	seq := l.mu.curSeq + 1
	size := l.opts.SegmentBytes
	pre := int64(segmentHeaderBytes + l.preambleBytesLocked())
	if need := pre + int64(n); need > size {
		size = need
	}
	// A preamble that takes more than half a segment (many groups, large
	// bases, small segments) would leave room for few records, and every
	// few records would restate it again: give the records at least as
	// much room as the preamble. Such a segment cannot use the prepared
	// (SegmentBytes) file and is fallocated.
	if pre > l.opts.SegmentBytes/2 {
		size = max(size, 2*pre+int64(n))
	}
	start := len(l.mu.buf)
	l.mu.buf = appendSegmentHeader(l.mu.buf, segmentHeader{seq: seq, firstIndex: l.mu.g0.last() + 1})
	for _, g := range l.mu.groupList {
		if g.id != 0 {
			l.mu.buf = appendGroupU64Record(l.mu.buf, recGroupStart, g.id, g.last()+1)
		}
		l.mu.buf = appendGroupMarkerRecord(l.mu.buf, recCompact, g.id, g.markerIndex, g.markerTerm, g.base)
		hs := g.hs
		l.mu.buf = appendGroupU64Record(l.mu.buf, recHardState, g.id, hs.Term, hs.Vote, hs.Commit)
	}
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

// entryLocked encodes one entry of group g and adds it to the view.
// REQUIRES: e.Index == g.last()+1; e.Data is owned by the log.
func (l *Log) entryLocked(g *groupState, e wire.Entry) {
	size := entryRecordBytes(len(e.Data))
	pos := l.reserveLocked(size)
	off := l.mu.curOff
	l.mu.buf = appendGroupEntryRecord(l.mu.buf, g.id, e.Index, e.Term, uint8(e.Type), e.Data)
	l.commitLocked(pos, true)
	g.meta = append(g.meta, entryMeta{term: e.Term, seq: uint32(l.mu.curSeq), off: uint32(off), size: uint32(size)})
	// Every new entry enters the cache, even with caching disabled: it
	// leaves only after the writer has written it (evictLocked).
	g.cache = append(g.cache, cachedEntry{e: e, batch: l.mu.batchSeq})
	n := int64(len(e.Data)) + cacheEntryOverheadBytes
	g.cacheBytes += n
	l.mu.cacheBytes += n
}

// hardStateLocked encodes a hard-state record of group g and updates the view.
func (l *Log) hardStateLocked(g *groupState, hs wire.HardState) {
	pos := l.reserveLocked(recordHeaderBytes + hardStatePayloadBytes)
	l.mu.buf = appendGroupU64Record(l.mu.buf, recHardState, g.id, hs.Term, hs.Vote, hs.Commit)
	l.commitLocked(pos, false)
	g.hs = hs
}

// truncateLocked encodes a truncation record of group g and drops its
// entries >= from from the view. REQUIRES: g.markerIndex < from <= g.last().
func (l *Log) truncateLocked(g *groupState, from uint64) {
	pos := l.reserveLocked(recordHeaderBytes + truncatePayloadBytes)
	l.mu.buf = appendGroupU64Record(l.mu.buf, recTruncate, g.id, from)
	l.commitLocked(pos, false)
	cf := g.cacheFirst() // before meta shrinks: it depends on LastIndex
	g.meta = g.meta[:g.metaPos(from)]
	cut := g.cacheHead
	if from > cf {
		cut += int(from - cf)
	}
	l.dropCacheTailLocked(g, cut)
}

// dropCacheTailLocked drops g.cache[cut:].
func (l *Log) dropCacheTailLocked(g *groupState, cut int) {
	for _, c := range g.cache[cut:] {
		n := int64(len(c.e.Data)) + cacheEntryOverheadBytes
		g.cacheBytes -= n
		l.mu.cacheBytes -= n
	}
	clear(g.cache[cut:])
	g.cache = g.cache[:cut]
	if cut == g.cacheHead {
		g.cache = g.cache[:0]
		g.cacheHead = 0
	}
}

// markerLocked encodes a compaction (reset=false) or reset record of group
// g and updates the view. For a compaction REQUIRES g.markerIndex < index
// <= g.last(). REQUIRES: base is owned by the log (nil if empty),
// len(base) <= maxBaseBytes, and the total of all bases stays within
// maxTotalBaseBytes.
func (l *Log) markerLocked(g *groupState, index, term uint64, base []byte, reset bool) {
	t := recCompact
	if reset {
		t = recReset
	}
	pos := l.reserveLocked(markerRecordBytes(len(base)))
	l.mu.buf = appendGroupMarkerRecord(l.mu.buf, t, g.id, index, term, base)
	l.commitLocked(pos, false)
	drop := len(g.meta) - g.metaHead // reset: everything
	cacheDrop := len(g.cache) - g.cacheHead
	if !reset {
		drop = int(index - g.markerIndex)
		if cf := g.cacheFirst(); index < cf {
			cacheDrop = 0
		} else {
			cacheDrop = int(index - cf + 1)
		}
	}
	g.metaHead += drop
	for i := g.cacheHead; i < g.cacheHead+cacheDrop; i++ {
		n := int64(len(g.cache[i].e.Data)) + cacheEntryOverheadBytes
		g.cacheBytes -= n
		l.mu.cacheBytes -= n
		g.cache[i] = cachedEntry{}
	}
	g.cacheHead += cacheDrop
	g.markerIndex, g.markerTerm = index, term
	l.mu.baseBytes += int64(len(base)) - int64(len(g.base))
	g.base = base
	compactSlices(g)
}

// compactSlices moves g's live meta and cache entries to the front of
// their slices once more than half of each is dead, so memory stays
// proportional to the live log.
func compactSlices(g *groupState) {
	if g.metaHead > 0 && g.metaHead >= len(g.meta)/2 {
		n := copy(g.meta, g.meta[g.metaHead:])
		g.meta = g.meta[:n]
		g.metaHead = 0
	}
	if g.cacheHead > 0 && g.cacheHead >= len(g.cache)/2 {
		n := copy(g.cache, g.cache[g.cacheHead:])
		clear(g.cache[n:])
		g.cache = g.cache[:n]
		g.cacheHead = 0
	}
}

// evictLocked drops the oldest cached entries of group g while the cache
// (shared by all groups) is over budget, but only entries the writer has
// already written, so that every live entry is always either cached or
// readable from disk. Appenders evict from their own group only, so an
// append costs the same however many groups there are; the writer evicts
// across groups after each round (evictAllLocked).
func (l *Log) evictLocked(g *groupState) {
	budget := max(l.opts.CacheBytes, 0)
	if l.mu.cacheBytes <= budget {
		return
	}
	h := g.cacheHead
	for l.mu.cacheBytes > budget && h < len(g.cache) && g.cache[h].batch <= l.mu.writtenBatch {
		n := int64(len(g.cache[h].e.Data)) + cacheEntryOverheadBytes
		g.cacheBytes -= n
		l.mu.cacheBytes -= n
		g.cache[h] = cachedEntry{}
		h++
	}
	if h != g.cacheHead {
		g.cacheHead = h
		compactSlices(g)
	}
}

// evictAllLocked is evictLocked over every group, starting one group
// further on each time, so that the cache budget holds across groups
// (not a global LRU: a group's oldest written entries go first, groups
// in turn). It visits every group only while the cache is over budget.
func (l *Log) evictAllLocked() {
	n := len(l.mu.groupList)
	budget := max(l.opts.CacheBytes, 0)
	for k := 0; k < n && l.mu.cacheBytes > budget; k++ {
		l.evictLocked(l.mu.groupList[(l.mu.evictCursor+k)%n])
	}
	if n > 1 {
		l.mu.evictCursor = (l.mu.evictCursor + 1) % n
	}
}

// syncOp queues a batch built by build (with mu held, after the checks in
// build pass) and waits for it to be durable. build returns the group it
// wrote to, an error to refuse without queuing anything, or skip=true when
// there is nothing to do.
func (l *Log) syncOp(build func() (g *groupState, skip bool, err error)) error {
	sw := syncWaiterPool.Get().(*syncWaiter)
	defer syncWaiterPool.Put(sw)
	l.mu.Lock()
	if !l.waitForSpaceLocked() {
		l.rejectLocked(waiter{sw: sw})
		return <-sw.ch
	}
	g, skip, err := build()
	if err != nil || skip {
		l.mu.Unlock()
		return err
	}
	l.mu.batchSeq++
	l.evictLocked(g)
	l.mu.waiters = append(l.mu.waiters, waiter{sw: sw})
	l.queuedWaiters.Store(int64(len(l.mu.waiters)))
	l.mu.work.Signal()
	l.mu.Unlock()
	return <-sw.ch
}

// TruncateSuffix drops every entry >= from, durably before it returns.
// from > LastIndex() is a no-op; from < FirstIndex() is ErrCompacted.
func (l *Log) TruncateSuffix(from uint64) error {
	return l.truncateSuffix(&l.g0, from)
}

// truncateSuffix is TruncateSuffix for group gh.
func (l *Log) truncateSuffix(gh *Group, from uint64) error {
	return l.syncOp(func() (*groupState, bool, error) {
		g := gh.stateLocked()
		if from < g.markerIndex+1 {
			return nil, false, fmt.Errorf("wal: truncate from %d (first index %d): %w", from, g.markerIndex+1, ErrCompacted)
		}
		if from > g.last() {
			return nil, true, nil
		}
		l.truncateLocked(g, from)
		return g, false, nil
	})
}

// CompactPrefix records, durably, that a snapshot covers entries <= upTo:
// FirstIndex() becomes upTo+1, Term(upTo) stays answerable, and Base()
// becomes base (the caller's opaque description of the state at upTo, e.g.
// the membership there; the log copies it). Segments that no group needs
// any more are then removed. upTo <= FirstIndex()-1 is a no-op that
// ignores base; upTo > LastIndex() is ErrUnavailable (use Reset); a base
// longer than 1 MiB, or one that would take all groups' bases together
// past 16 MiB, is ErrBaseTooLarge.
func (l *Log) CompactPrefix(upTo uint64, base []byte) error {
	return l.compactPrefix(&l.g0, upTo, base)
}

// compactPrefix is CompactPrefix for group gh.
func (l *Log) compactPrefix(gh *Group, upTo uint64, base []byte) error {
	own, err := ownBase(base)
	if err != nil {
		return err
	}
	var removeBelow uint64
	err = l.syncOp(func() (*groupState, bool, error) {
		g := gh.stateLocked()
		if upTo <= g.markerIndex {
			return nil, true, nil
		}
		if upTo > g.last() {
			return nil, false, fmt.Errorf("wal: compact to %d (last index %d): %w", upTo, g.last(), ErrUnavailable)
		}
		if err := l.checkTotalBaseLocked(g, own); err != nil {
			return nil, false, err
		}
		term := g.meta[g.metaPos(upTo)].term
		l.markerLocked(g, upTo, term, own, false)
		removeBelow = l.removableBelowLocked()
		return g, false, nil
	})
	if err != nil || removeBelow == 0 {
		return err
	}
	return l.removeSegmentsBelow(removeBelow)
}

// Reset drops every entry and makes the log continue at snapIndex+1 with
// marker term snapTerm and Base() base (a follower installed a snapshot
// beyond its log; the log copies base), durably before it returns.
// Segments that no group needs any more are then removed. A base longer
// than 1 MiB, or one that would take all groups' bases together past
// 16 MiB, is ErrBaseTooLarge.
func (l *Log) Reset(snapIndex, snapTerm uint64, base []byte) error {
	return l.reset(&l.g0, snapIndex, snapTerm, base)
}

// reset is Reset for group gh.
func (l *Log) reset(gh *Group, snapIndex, snapTerm uint64, base []byte) error {
	own, err := ownBase(base)
	if err != nil {
		return err
	}
	var removeBelow uint64
	err = l.syncOp(func() (*groupState, bool, error) {
		if err := l.checkTotalBaseLocked(gh.stateLocked(), own); err != nil {
			return nil, false, err
		}
		g, err := gh.createLocked()
		if err != nil {
			return nil, false, err
		}
		l.markerLocked(g, snapIndex, snapTerm, own, true)
		removeBelow = l.removableBelowLocked()
		return g, false, nil
	})
	if err != nil {
		return err
	}
	return l.removeSegmentsBelow(removeBelow)
}

// checkTotalBaseLocked refuses a new base for g that would take the bases
// of all groups together past maxTotalBaseBytes.
func (l *Log) checkTotalBaseLocked(g *groupState, base []byte) error {
	if total := l.mu.baseBytes - int64(len(g.base)) + int64(len(base)); total > maxTotalBaseBytes {
		return fmt.Errorf("wal: group %d base of %d bytes would make all groups' bases %d bytes (at most %d): %w",
			g.id, len(base), total, maxTotalBaseBytes, ErrBaseTooLarge)
	}
	return nil
}

// removableBelowLocked is the oldest segment some group still needs: the
// segment of the first live entry of every group that has live entries,
// and at most the current segment (whose preamble restates every group's
// marker, base and hard state). Every segment below it holds only records
// that are dead for every group, or restated by a later preamble.
func (l *Log) removableBelowLocked() uint64 {
	below := l.mu.curSeq
	for _, g := range l.mu.groupList {
		if g.last() > g.markerIndex {
			below = min(below, uint64(g.meta[g.metaHead].seq))
		}
	}
	return below
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
