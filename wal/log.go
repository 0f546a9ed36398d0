package wal

import (
	"bytes"
	"fmt"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftpipe/raftpipe/wire"
)

// Defaults and limits for Options.
const (
	// DefaultSegmentBytes is the default size of a segment file.
	DefaultSegmentBytes = 64 << 20
	// DefaultCacheBytes is the default budget of the recent-entry cache.
	DefaultCacheBytes = 64 << 20
	// DefaultMaxBatchBytes is the default cap on one write+sync batch.
	DefaultMaxBatchBytes = 16 << 20
	// minSegmentBytes keeps tiny test segments able to hold the header,
	// the preamble and at least one small record.
	minSegmentBytes = 4 << 10
	// cacheEntryOverheadBytes is what one cached entry costs beyond its Data
	// (the wire.Entry struct and bookkeeping); it keeps a cache of empty
	// entries bounded too.
	cacheEntryOverheadBytes = 64
	// spareBufMaxBytesFactor: the writer keeps a drained batch buffer for
	// reuse only if its capacity is at most this many MaxBatchBytes, so one
	// oversized call does not pin memory forever.
	spareBufMaxBytesFactor = 2
)

// Options configure a Log. The zero value is usable.
type Options struct {
	// SegmentBytes is the size of each segment file (default 64 MiB; at
	// most 1 GiB). A batch that does not fit in the rest of the active
	// segment starts a new one. The next segment is zero-filled in the
	// background, so the log writes each segment's bytes twice.
	SegmentBytes int64
	// SyncDelay is an extra wait before each write+sync so that more
	// appends join the batch (default 0: group commit alone batches
	// whatever queued during the previous sync).
	SyncDelay time.Duration
	// CacheBytes is the budget of the in-memory cache of recent entries,
	// which Entries serves without disk reads (default 64 MiB; negative
	// disables it, except for entries not yet written).
	CacheBytes int64
	// MaxBatchBytes caps the bytes queued for one write+sync (default
	// 16 MiB). Appenders block while this much is already queued: it is the
	// log's backpressure. A single call larger than it is accepted alone.
	MaxBatchBytes int64
	// FS is the file system every disk operation goes through; nil means
	// vfs.Default (the operating system's). Tests pass wrapped or in-memory
	// ones (internal/crashfs, vfs/errorfs).
	FS vfs.FS
	// Logger receives recovery and error reports; nil means slog.Default().
	Logger *slog.Logger
	// MaxGroups bounds the number of Raft groups the log holds (default
	// DefaultMaxGroups, at most MaxGroupsLimit). Every group is restated
	// in every segment's preamble, so this bounds the preamble too; a
	// write that would create one more fails with ErrTooManyGroups, and
	// Open fails with it if the directory holds more.
	MaxGroups int
}

// withDefaults fills in zero fields.
func (o Options) withDefaults() Options {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.SegmentBytes < minSegmentBytes {
		o.SegmentBytes = minSegmentBytes
	}
	if o.SegmentBytes > maxSegmentFileBytes {
		o.SegmentBytes = maxSegmentFileBytes
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxGroups <= 0 {
		o.MaxGroups = DefaultMaxGroups
	}
	if o.MaxGroups > MaxGroupsLimit {
		o.MaxGroups = MaxGroupsLimit
	}
	return o
}

// entryMeta locates one live entry on disk. 24 bytes per entry.
type entryMeta struct {
	// term is the entry's term, so Term never touches the disk.
	term uint64
	// seq is the segment holding the entry's record.
	seq uint32
	// off is the record's byte offset in the segment.
	off uint32
	// size is the record's encoded length (header included).
	size uint32
}

// dataLen is the length of the entry's Data.
func (m entryMeta) dataLen() int {
	return int(m.size) - recordHeaderBytes - entryPayloadHeaderBytes
}

// cachedEntry is one entry of the recent-entry cache.
type cachedEntry struct {
	// e is the entry; e.Data is the log's own copy.
	e wire.Entry
	// batch is the enqueue sequence number of the call that appended it; the
	// entry may leave the cache only once the writer has written that batch,
	// so that a cache miss can always be served from disk.
	batch uint64
}

// chunk is a run of encoded bytes destined for one contiguous range of one
// segment file.
type chunk struct {
	// seq is the segment the bytes go to.
	seq uint64
	// off is the file offset of the first byte.
	off int64
	// start and end delimit the bytes in the pending buffer.
	start, end int
	// create says the writer must create segment seq, allocBytes long
	// (prepared or fallocated), before writing; the bytes then begin with
	// its header.
	create     bool
	allocBytes int64
	// entries counts entry records in the chunk, for Stats.
	entries int
}

// waiter is one completion to fire after a batch is durable.
type waiter struct {
	// fn is the caller's callback (AppendAsync), or nil.
	fn func(error)
	// sw is a pooled synchronous waiter (Append and the sync calls), or nil.
	sw *syncWaiter
}

// syncWaiter lets a synchronous call wait without allocating a closure.
type syncWaiter struct{ ch chan error }

// syncWaiterPool recycles syncWaiters: a synchronous Append allocates
// nothing for its wait.
var syncWaiterPool = sync.Pool{New: func() any { return &syncWaiter{ch: make(chan error, 1)} }}

// Log is a segmented write-ahead log of Raft entries and hard state.
// All methods are safe for concurrent use.
type Log struct {
	// dir holds the segment files.
	dir string
	// opts are the options with defaults filled in.
	opts Options
	// fs is opts.FS: every disk operation goes through it.
	fs vfs.FS
	// log receives recovery and failure reports.
	log *slog.Logger

	// mu guards the in-memory view, the segment layout and the pending
	// queue. It is never held across a disk write or sync.
	mu struct {
		sync.Mutex
		// work wakes the writer when something is queued or on Close.
		work sync.Cond
		// space wakes appenders blocked on MaxBatchBytes or the sticky error.
		space sync.Cond

		// g0 is group 0, which the Log's own methods act on; it always
		// exists (groups[0] == g0) and is the first of groupList.
		g0 *groupState
		// groups holds every group that has written something (or was
		// recovered), by ID. Invariant: len(groups) <= opts.MaxGroups.
		groups map[uint64]*groupState
		// groupList is groups in creation order: the order of preambles,
		// so that a segment's preamble is deterministic.
		groupList []*groupState
		// cacheBytes is the sum of every group's cacheBytes: the
		// recent-entry cache budget (CacheBytes) is shared by all groups.
		cacheBytes int64
		// baseBytes is the sum of every group's len(base). Invariant:
		// baseBytes <= maxTotalBaseBytes, which bounds the preamble.
		baseBytes int64
		// evictCursor is where the next eviction pass over other groups
		// starts, so that no group is always the first to lose its cache.
		evictCursor int

		// curSeq is the segment new records go to; curOff is the offset of
		// the next record; curSize is the segment's allocated size.
		curSeq          uint64
		curOff, curSize int64
		// segs lists the segments that exist or are queued for creation,
		// oldest first.
		segs []uint64

		// buf, chunks and waiters are the pending batch, swapped out whole
		// by the writer.
		buf     []byte
		chunks  []chunk
		waiters []waiter
		// batchSeq counts enqueue calls; writtenBatch is the last one whose
		// bytes the writer has written and synced.
		batchSeq, writtenBatch uint64

		// err is the sticky error: the first write or sync failure.
		err error
		// closing is set by Close; no more calls are accepted.
		closing bool
	}

	// w is owned by the writer goroutine.
	w struct {
		// active is the segment file being written, and activeSeq its seq.
		active    vfs.File
		activeSeq uint64
		// dirty means bytes were written to active since its last sync.
		dirty bool
		// spare* are the buffers the writer swaps in for the next batch.
		spareBuf     []byte
		spareChunks  []chunk
		spareWaiters []waiter
	}
	// lock is the directory lock, held from Open to Close.
	lock io.Closer
	// writerDone is closed when the writer goroutine exits (after Close).
	writerDone chan struct{}

	// rd guards the read-only handles used by Entries for disk reads.
	// Readers hold it shared during a read; segment removal holds it
	// exclusively, so a file is never closed under a read.
	rd struct {
		sync.RWMutex
		// openMu guards files when a reader opens a handle lazily.
		openMu sync.Mutex
		files  map[uint64]vfs.File
	}

	// prep zero-fills the next segment in the background (prepare.go).
	prep *segmentPreparer

	// g0 is the handle of group 0, through which the Log's own methods go.
	g0 Group

	// removeMu serialises segment removal by concurrent compactions.
	removeMu sync.Mutex

	// counters feed Stats.
	counters counters

	// syncDelayNs is the current SyncDelay (Options.SyncDelay, changed by
	// SetSyncDelay), read by the writer before each round.
	syncDelayNs atomic.Int64

	// queuedWaiters mirrors len(mu.waiters) so that the writer can watch the
	// queue grow without taking mu (see gather).
	queuedWaiters atomic.Int64
}

// Open opens (creating if needed) the log in dir and recovers it: the
// recovered log is the longest valid prefix of what was written; a torn
// tail in the last segment is cut, and corruption anywhere else is an
// error wrapping ErrCorrupt that names the file and offset.
func Open(dir string, o Options) (*Log, error) {
	o = o.withDefaults()
	l := &Log{dir: dir, opts: o, fs: o.FS, log: o.Logger, writerDone: make(chan struct{})}
	l.syncDelayNs.Store(int64(o.SyncDelay))
	l.mu.work.L = &l.mu.Mutex
	l.mu.space.L = &l.mu.Mutex
	l.rd.files = make(map[uint64]vfs.File)
	if err := vfsutil.MkdirAllDurable(l.fs, dir); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	lock, err := l.fs.Lock(filepath.Join(dir, lockFileName))
	if err != nil {
		return nil, fmt.Errorf("wal: %s is in use by another process: %w", dir, err)
	}
	st, err := recoverDir(l.fs, dir, l.log, o.MaxGroups)
	if err != nil {
		lock.Close()
		return nil, err
	}
	l.lock = lock
	l.mu.groups = make(map[uint64]*groupState, len(st.groups))
	for _, g := range st.groups {
		l.addGroupLocked(&groupState{
			id:          g.id,
			markerIndex: g.markerIndex, markerTerm: g.markerTerm,
			base: g.base, meta: g.meta, hs: g.hs,
		})
	}
	l.mu.g0 = l.mu.groups[0]
	l.g0 = Group{l: l, id: 0, st: l.mu.g0}
	l.mu.segs = st.segs
	if n := len(st.segs); n > 0 {
		l.mu.curSeq = st.segs[n-1]
	}
	// curOff == curSize == 0: the first record rolls to a fresh segment, so
	// a recovered segment is never written again.
	l.prep = newSegmentPreparer(l.fs, dir, o.SegmentBytes, l.log)
	l.prep.start()
	go l.run()
	return l, nil
}

// SetSyncDelay changes SyncDelay from the next round on (negative is 0).
// The runtime uses it to batch more per fsync while its fsync is off the
// commit path (a leader of three whose followers both ack first).
func (l *Log) SetSyncDelay(d time.Duration) {
	l.syncDelayNs.Store(int64(max(d, 0)))
}

// FirstIndex is the first index still present: the compaction marker + 1
// (1 for a new log).
func (l *Log) FirstIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.g0.markerIndex + 1
}

// LastIndex is the last index appended (FirstIndex()-1 if the log is empty).
func (l *Log) LastIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.g0.last()
}

// Base returns a copy of the base bytes given to the latest CompactPrefix
// or Reset that took effect (durable or not yet): the caller's description
// of the state at FirstIndex()-1, e.g. the membership there. It is nil for
// a new log, and when the base given was empty.
func (l *Log) Base() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.mu.g0.base)
}

// HardState is the latest hard state appended (durable or not yet).
func (l *Log) HardState() wire.HardState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.g0.hs
}

// Term returns the term of entry i. i == FirstIndex()-1 gives the marker's
// term; below that ErrCompacted, above LastIndex() ErrUnavailable.
func (l *Log) Term(i uint64) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return termLocked(l.mu.g0, i)
}

// Close waits for queued batches to be written, stops the writer and closes
// the files. Later calls return ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.mu.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	l.mu.closing = true
	l.mu.work.Signal()
	l.mu.space.Broadcast()
	l.mu.Unlock()
	<-l.writerDone

	first := l.prep.close()
	if l.w.active != nil {
		if err := l.w.active.Close(); err != nil && first == nil {
			first = err
		}
		l.w.active = nil
	}
	l.rd.Lock()
	for seq, f := range l.rd.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
		delete(l.rd.files, seq)
	}
	l.rd.Unlock()
	if err := l.lock.Close(); err != nil && first == nil {
		first = err
	}
	return first
}
