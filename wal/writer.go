package wal

import (
	"fmt"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"io"
	"runtime"
	"time"
)

// run is the writer goroutine: the single owner of the active segment.
// Each round it takes everything queued (possibly many callers' batches),
// writes it with as few writes as segment boundaries allow, issues one
// fdatasync, and then fires all the round's waiters together. Appenders
// queue the next round meanwhile: that is the group commit.
func (l *Log) run() {
	defer close(l.writerDone)
	for {
		l.mu.Lock()
		for len(l.mu.waiters) == 0 && len(l.mu.chunks) == 0 && !l.mu.closing {
			l.mu.work.Wait()
		}
		if len(l.mu.waiters) == 0 && len(l.mu.chunks) == 0 {
			l.mu.Unlock()
			return // closing and drained
		}
		if d := time.Duration(l.syncDelayNs.Load()); d > 0 && l.mu.err == nil && !l.mu.closing {
			l.mu.Unlock()
			time.Sleep(d) // lets more appends join this round; not a wait for a condition
			l.mu.Lock()
		}
		buf, chunks, waiters := l.mu.buf, l.mu.chunks, l.mu.waiters
		l.mu.buf, l.mu.chunks, l.mu.waiters = l.w.spareBuf[:0], l.w.spareChunks[:0], l.w.spareWaiters[:0]
		l.queuedWaiters.Store(0)
		batch := l.mu.batchSeq
		err := l.mu.err
		l.mu.space.Broadcast()
		l.mu.Unlock()

		if err == nil && len(chunks) > 0 {
			if werr := l.writeChunks(buf, chunks); werr != nil {
				l.log.Error("wal: write failed; the log is now read-only", "err", werr)
				l.mu.Lock()
				if l.mu.err == nil {
					l.mu.err = werr
				}
				err = l.mu.err
				l.mu.space.Broadcast()
				l.mu.Unlock()
				// A failed log writes nothing more, zeros included; halting
				// before the waiters fire makes that hold once they see the error.
				l.prep.halt()
			} else {
				l.mu.Lock()
				l.mu.writtenBatch = batch
				l.evictAllLocked()
				l.counters.calls.Add(uint64(len(waiters)))
				l.mu.Unlock()
			}
		}
		for _, w := range waiters {
			w.fire(err)
		}
		l.gather(len(waiters))
		clear(waiters)
		l.w.spareWaiters = waiters[:0]
		l.w.spareChunks = chunks[:0]
		if int64(cap(buf)) <= spareBufMaxBytesFactor*l.opts.MaxBatchBytes {
			l.w.spareBuf = buf[:0]
		} else {
			l.w.spareBuf = nil
		}
	}
}

// writeChunks writes one round's chunks and makes them durable.
func (l *Log) writeChunks(buf []byte, chunks []chunk) error {
	entries, bytes := 0, 0
	for i := range chunks {
		c := &chunks[i]
		if c.create {
			if err := l.createSegment(c.seq, c.allocBytes); err != nil {
				return err
			}
		}
		if c.seq != l.w.activeSeq || l.w.active == nil {
			panic(fmt.Sprintf("wal: invariant violated: chunk for segment %d but active segment is %d", c.seq, l.w.activeSeq))
		}
		p := buf[c.start:c.end]
		n, err := l.w.active.WriteAt(p, c.off)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return fmt.Errorf("wal: write %s at %d: %w", segmentName(l.dir, c.seq), c.off, err)
		}
		l.prep.wrote(n)
		l.w.dirty = true
		entries += c.entries
		bytes += len(p)
	}
	if err := l.syncActive(); err != nil {
		return err
	}
	l.counters.batches.Add(1)
	l.counters.entries.Add(uint64(entries))
	l.counters.bytes.Add(uint64(bytes))
	return nil
}

// syncActive fdatasyncs the active segment if anything was written to it.
func (l *Log) syncActive() error {
	if !l.w.dirty {
		return nil
	}
	t0 := time.Now()
	// SyncData is fdatasync on Linux (vfs.Default): a zero-filled segment
	// has its full size from the start, so writing records into it changes
	// no metadata that fdatasync would have to flush.
	if err := l.w.active.SyncData(); err != nil {
		return fmt.Errorf("wal: sync %s: %w", segmentName(l.dir, l.w.activeSeq), err)
	}
	l.counters.observeSync(time.Since(t0))
	l.w.dirty = false
	return nil
}

// createSegment seals the active segment (synced, closed) and makes
// segment seq, of size bytes, the active one: the prepared zero-filled file
// renamed into place if one is ready, else a new fallocated file. Either way
// the directory is synced before anything is written to it. The previous
// segment is fully durable before the new one exists, so recovery only ever
// finds a torn tail in the last.
func (l *Log) createSegment(seq uint64, size int64) error {
	if l.w.active != nil {
		if err := l.syncActive(); err != nil {
			return err
		}
		if err := l.w.active.Close(); err != nil {
			return fmt.Errorf("wal: close %s: %w", segmentName(l.dir, l.w.activeSeq), err)
		}
		l.w.active = nil
	}
	name := segmentName(l.dir, seq)
	l.prep.rolled() // before take wakes the preparer: it paces against the new segment
	f, err := l.prep.take(name, size)
	if err != nil {
		return err
	}
	zeroFilled := f != nil
	if !zeroFilled {
		if f, err = createNew(l.fs, name); err != nil {
			return fmt.Errorf("wal: create segment: %w", err)
		}
		if err := f.Preallocate(0, size); err != nil {
			f.Close()
			return fmt.Errorf("wal: preallocate %s: %w", name, err)
		}
	}
	if err := vfsutil.SyncDir(l.fs, l.dir); err != nil {
		f.Close()
		return fmt.Errorf("wal: sync dir after creating %s: %w", name, err)
	}
	if zeroFilled {
		l.counters.segmentsZeroFilled.Add(1)
	} else {
		l.counters.segmentsFallocated.Add(1)
	}
	l.w.active, l.w.activeSeq = f, seq
	return nil
}

// maxGatherYields bounds how many times the writer yields after a round to
// let just-woken callers append again (see gather).
const maxGatherYields = 16

// gather runs after a round's waiters were fired. The callers just woken
// are runnable behind the writer; if they append again right away, it is
// better that they join the next round than the one after it: without
// this, a closed loop of N appenders settles at N/2 entries per fsync.
// So the writer yields while the queue keeps growing and holds fewer
// waiters than were just fired. With a single caller that does not append
// again at once it costs one yield.
func (l *Log) gather(fired int) {
	if fired == 0 {
		return
	}
	prev := l.queuedWaiters.Load()
	for i := 0; i < maxGatherYields && prev < int64(fired); i++ {
		runtime.Gosched()
		n := l.queuedWaiters.Load()
		if n == prev {
			return
		}
		prev = n
	}
}
