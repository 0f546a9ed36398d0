package kv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"hash/fnv"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/raft/sm"
)

// ErrClosed is returned by every Store method called after Close.
var ErrClosed = errors.New("kv: store closed")

// defaultMemTableBytes is Pebble's memtable size when Options.MemTableBytes
// is 0. Tried 32 MiB (fewer flushes); 4 MiB used about 23% less CPU for the
// same apply+CAS benchmark work (user time, 2 runs each, shared machine),
// since a smaller skiplist has fewer cache misses per insert and lookup.
const defaultMemTableBytes = 4 << 20

// defaultCacheBytes is Pebble's block cache size when Options.CacheBytes is 0.
const defaultCacheBytes = 64 << 20

// Key layout inside Pebble. Part of the on-disk format: every user key is
// stored behind userKeyPrefix, so no user key can collide with the store's
// own records, which live behind localKeyPrefix.
const (
	localKeyPrefix = 0x00
	userKeyPrefix  = 0x01
)

var (
	// appliedKey holds the index and term of the last applied entry, 16
	// bytes: index u64 | term u64, big-endian (appliedRecordBytes). It is
	// written in the same batch as the entries it covers, so the pair always
	// describes the data beside it.
	appliedKey = []byte{localKeyPrefix, 'a', 'p', 'p', 'l', 'i', 'e', 'd'}
	// formatKey holds the store's format version, u32 big-endian
	// (storeFormatVersion). It is written once, when a database is
	// created, and checked by every Open and Restore.
	formatKey = []byte{localKeyPrefix, 'f', 'o', 'r', 'm', 'a', 't'}
	// legacyMetaKey is where format 1 kept the runtime's membership blob;
	// only looked for, to name an old data directory in the error.
	legacyMetaKey = []byte{localKeyPrefix, 'm', 'e', 't', 'a'}
	// userKeyLower and userKeyUpper bound every user key, for iteration.
	userKeyLower = []byte{userKeyPrefix}
	userKeyUpper = []byte{userKeyPrefix + 1}
)

// appliedRecordBytes is the size of appliedKey's value. Part of the on-disk
// format.
const appliedRecordBytes = 16

// storeFormatVersion is the on-disk format of a database. Part of the
// format. Format 1 (no format record) also stored the runtime's membership
// in the store; format 2 leaves membership to the runtime and the WAL
// (package sm). Format 1 directories are refused with ErrOldFormat.
const storeFormatVersion = 2

// ErrOldFormat means a database was written by an older raftpipe whose
// on-disk format this one does not read.
var ErrOldFormat = errors.New("kv: database in an older on-disk format")

// SnapshotInfo identifies a state of the store: what a snapshot of it
// covers, or what Restore installed (the index and term of the last entry
// applied to it). The runtime builds a snapshot's Raft metadata from it
// alone, so it never needs the Raft log (which may have been compacted
// past Index) to learn the term.
type SnapshotInfo = sm.SnapshotInfo

// Options configures a Store. The zero value is valid.
type Options struct {
	// Logger receives Pebble's messages (its informational ones at Debug
	// level, since Pebble reports every flush and compaction) and the store's
	// own. Nil keeps Pebble silent, which is what tests and benchmarks want.
	Logger *slog.Logger
	// DisableWAL turns off Pebble's write-ahead log. The node sets it: the
	// Raft log already holds every command durably, so a second log only
	// doubles the writes. See the package doc for why this is safe and for
	// the rule it imposes (compact the Raft log only past Flush).
	DisableWAL bool
	// CacheBytes is the size of Pebble's block cache; 0 means
	// defaultCacheBytes.
	CacheBytes int64
	// MemTableBytes is the size of one Pebble memtable; 0 means
	// defaultMemTableBytes.
	MemTableBytes uint64
	// FS is the file system every file operation of the store goes through:
	// Pebble's, CURRENT and its directory syncs, checkpoints and snapshot
	// files. Nil means vfs.Default. Tests pass a crashable one
	// (internal/crashfs) to crash the store at each sync and rename.
	FS vfs.FS
}

// fs returns the file system o names.
func (o *Options) fs() vfs.FS {
	if o.FS == nil {
		return vfs.Default
	}
	return o.FS
}

// Result is the outcome of one applied entry, for the client that proposed
// it. Status is StatusOK, StatusNotFound (a replicated get of a missing
// key), StatusCASFailed, StatusBadRequest (Data is not a valid command) or
// StatusUnknown (the entry was at or below the applied index and was
// skipped). Value is the current value on StatusCASFailed (nil if the key
// is absent, non-nil even when empty if present) or the value read by a
// replicated get, a fresh copy the caller owns; nil otherwise, so the
// common path allocates nothing.
type Result = sm.Result

// Store is the production sm.StateMachine.
var _ sm.StateMachine = (*Store)(nil)

// Store is the replicated key-value state machine: a Pebble database that
// holds the user keys plus the applied index and term.
//
// Apply, Flush, WriteSnapshot, Restore and Close may be called from any
// goroutine but are serialized (the node calls them from its apply loop);
// Get, Lookup, AppendValue, Hash, AppliedIndex and AppliedTerm may run
// concurrently with them and with each other.
type Store struct {
	// dir is the directory that holds CURRENT and the db-<n> directories.
	dir string
	// fs is Options.FS, or vfs.Default.
	fs vfs.FS
	// opts is what Open was given, kept to open a restored database alike.
	opts Options

	// applyMu serializes the writers (Apply, Flush, WriteSnapshot's
	// checkpoint, Restore, Close) and guards the fields after it. A writer
	// holding applyMu may read db and closed without dbMu, because changing
	// them requires both locks.
	applyMu sync.Mutex
	// batch is reused by every Apply whose entries only write. Reusing it
	// keeps Pebble's batch buffer warm so Apply allocates nothing per entry.
	batch *pebble.Batch
	// ap builds Apply's batches: the command semantics and their scratch
	// state, writing user keys behind userKeyPrefix.
	ap batchApplier
	// idxBuf holds the encoded applied record while a batch is built.
	idxBuf [appliedRecordBytes]byte
	// dbNum is n in the active db-<n> directory.
	dbNum uint64
	// err is the first commit error. Once set, Apply refuses to go on: the
	// in-memory applied index and Pebble may no longer agree.
	err error
	// snapSeq numbers checkpoint directories so that two concurrent
	// WriteSnapshot calls never share one.
	snapSeq atomic.Uint64

	// dbMu guards db and closed against readers: Get and Hash hold it shared;
	// Restore (which swaps db) and Close hold it exclusively, together with
	// applyMu.
	dbMu sync.RWMutex
	// db is the active Pebble database (dir/db-<dbNum>).
	db *pebbleDB
	// closed is set by Close.
	closed bool

	// writeStalls counts Pebble write stalls (its event listener adds to
	// it); shared by every database the store opens.
	writeStalls *atomic.Int64

	// applied and appliedTerm mirror the applied record stored in Pebble,
	// readable without a lock. Invariant: equal appliedKey's value in db
	// after every Apply. They are stored one after the other, so a reader
	// outside the writers' lock may see an index and a term from two
	// different Apply calls; SnapshotInfo gives a consistent pair.
	applied     atomic.Uint64
	appliedTerm atomic.Uint64
}

// keyPool holds scratch buffers for prefixing user keys in Get, so a read
// does not allocate a key.
var keyPool = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

// Open opens (or creates) the store in dir, removes what an interrupted
// Restore or WriteSnapshot left behind, and restores the applied index and
// term from Pebble. A database in an older format is ErrOldFormat.
func Open(dir string, o Options) (*Store, error) {
	fsys := o.fs()
	o.FS = fsys
	// Synced even if dir exists: an earlier run may have created it and
	// stopped before its entry was durable.
	if err := vfsutil.MkdirAllDurable(fsys, dir); err != nil {
		return nil, err
	}
	num, ok, err := readCurrent(fsys, dir)
	if err != nil {
		return nil, err
	}
	var db *pebbleDB
	stalls := new(atomic.Int64)
	if !ok {
		// A fresh store, or a crash before the first CURRENT was written (in
		// which case db-1 holds nothing that was ever applied).
		num = 1
		if err := removeLeftovers(fsys, dir, 0); err != nil {
			return nil, err
		}
		if db, err = openPebble(dbPath(fsys, dir, num), o, false, stalls); err != nil {
			return nil, err
		}
		if err := writeFormat(db.DB); err != nil {
			_ = db.Close()
			return nil, err
		}
		if err := writeCurrent(fsys, dir, num); err != nil {
			_ = db.Close()
			return nil, err
		}
	} else {
		if err := removeLeftovers(fsys, dir, num); err != nil {
			return nil, err
		}
		if db, err = openPebble(dbPath(fsys, dir, num), o, true, stalls); err != nil {
			return nil, err
		}
	}
	s := &Store{dir: dir, fs: fsys, opts: o, dbNum: num, writeStalls: stalls}
	s.ap.prefix = userKeyLower
	if err := s.install(db); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// install makes db the active database: it loads the applied index and
// term from it and creates the reusable batches.
//
// REQUIRES: applyMu and dbMu held exclusively, or s not yet shared.
func (s *Store) install(db *pebbleDB) error {
	st, err := loadState(db.DB)
	if err != nil {
		return err
	}
	s.db = db
	s.batch = db.NewBatch()
	s.applied.Store(st.Index)
	s.appliedTerm.Store(st.Term)
	return nil
}

// writeFormat records storeFormatVersion in a new database and makes it
// durable (a flush: the node runs Pebble without its WAL) before Open
// writes the first CURRENT, so every database a CURRENT names has one.
func writeFormat(db *pebble.DB) error {
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], storeFormatVersion)
	if err := db.Set(formatKey, v[:], pebble.NoSync); err != nil {
		return fmt.Errorf("kv: writing format record: %w", err)
	}
	if err := db.Flush(); err != nil {
		return fmt.Errorf("kv: writing format record: %w", err)
	}
	return nil
}

// checkFormat refuses a database whose format this store does not read.
func checkFormat(db *pebble.DB) error {
	v, closer, err := db.Get(formatKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		what := "no format record"
		if _, c, err := db.Get(legacyMetaKey); err == nil {
			_ = c.Close()
			what = "format 1: it holds the membership record that format 2 moved to the WAL"
		}
		return fmt.Errorf("%w: %s; this build reads format %d only (start the node on an empty data directory, or seed one from a backup taken with a matching build)",
			ErrOldFormat, what, storeFormatVersion)
	case err != nil:
		return fmt.Errorf("kv: reading format record: %w", err)
	}
	defer closer.Close()
	if len(v) != 4 || binary.BigEndian.Uint32(v) != storeFormatVersion {
		return fmt.Errorf("%w: format record %x; this build reads format %d", ErrOldFormat, v, storeFormatVersion)
	}
	return nil
}

// loadState checks db's format and reads the applied index and term stored
// in it (both zero for a database nothing was applied to).
func loadState(db *pebble.DB) (SnapshotInfo, error) {
	var st SnapshotInfo
	if err := checkFormat(db); err != nil {
		return SnapshotInfo{}, err
	}
	v, closer, err := db.Get(appliedKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return SnapshotInfo{}, fmt.Errorf("kv: reading applied index: %w", err)
	default:
		if len(v) != appliedRecordBytes {
			_ = closer.Close()
			return SnapshotInfo{}, fmt.Errorf("kv: applied record is %d bytes, want %d", len(v), appliedRecordBytes)
		}
		st.Index = binary.BigEndian.Uint64(v[:8])
		st.Term = binary.BigEndian.Uint64(v[8:])
		_ = closer.Close()
	}
	return st, nil
}

// diskSlowThreshold is how long one disk operation may take before Pebble's
// disk-health checker reports it (through Options.Logger).
const diskSlowThreshold = 5 * time.Second

// bloomBitsPerKey sizes Pebble's Bloom filters (about 1% false positives).
const bloomBitsPerKey = 10

// pebbleDB is an open Pebble database together with the disk-health
// checking file system it runs on. The store creates that file system
// itself, instead of letting Pebble do it, because Pebble leaks the
// checker's goroutine when Open fails (as it must for a snapshot without a
// database in it); owning the closer lets every path release it.
type pebbleDB struct {
	*pebble.DB
	// fsCloser stops the disk-health checker; closed after the DB.
	fsCloser io.Closer
}

// Close closes the database, then its file system's checker.
func (d *pebbleDB) Close() error {
	err := d.DB.Close()
	_ = d.fsCloser.Close()
	return err
}

// openPebble opens the Pebble database at path. mustExist makes a missing
// database an error instead of creating an empty one (a snapshot or a
// CURRENT that names nothing must not silently become an empty store).
// tune, if given, adjusts Pebble's options last (the Engine uses it).
func openPebble(path string, o Options, mustExist bool, stalls *atomic.Int64, tune ...func(*pebble.Options)) (*pebbleDB, error) {
	cacheBytes := o.CacheBytes
	if cacheBytes <= 0 {
		cacheBytes = defaultCacheBytes
	}
	memBytes := o.MemTableBytes
	if memBytes == 0 {
		memBytes = defaultMemTableBytes
	}
	logger := pebbleLogger{o.Logger}
	fs, fsCloser := vfs.WithDiskHealthChecks(o.fs(), diskSlowThreshold, nil, func(info vfs.DiskSlowInfo) {
		logger.Errorf("disk slow: %s", info)
	})
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref() // the DB holds its own reference
	el := &pebble.EventListener{
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			stalls.Add(1)
			logger.Infof("pebble write stall: %s", info.Reason)
		},
	}
	po := &pebble.Options{
		EventListener:      el,
		Cache:              cache,
		DisableWAL:         o.DisableWAL,
		ErrorIfNotExists:   mustExist,
		FS:                 fs,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             logger,
		MemTableSize:       memBytes,
	}
	// Bloom filters on every level: a CAS with FlagExpectAbsent, or a get of
	// a missing key, would otherwise search every L0 table.
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(bloomBitsPerKey)
	}
	for _, fn := range tune {
		fn(po)
	}
	db, err := pebble.Open(path, po)
	if err != nil {
		_ = fsCloser.Close()
		return nil, fmt.Errorf("kv: opening pebble at %s: %w", path, err)
	}
	return &pebbleDB{DB: db, fsCloser: fsCloser}, nil
}

// WriteStalls is how many times Pebble delayed this store's writes
// (memtables or L0 full), over every database it has had since Open.
func (s *Store) WriteStalls() int64 { return s.writeStalls.Load() }

// AppliedIndex is the index of the last entry applied, as restored from
// Pebble on Open and advanced by Apply and Restore.
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// AppliedTerm is the term of the entry at AppliedIndex (0 if none was ever
// applied), stored in the same batch as the index. Read together with
// AppliedIndex from the goroutine that calls Apply and Restore, the two
// describe the same entry.
func (s *Store) AppliedTerm() uint64 { return s.appliedTerm.Load() }

// Get returns a copy of key's value. It reads the local state: the node
// does a ReadIndex round first when the read must be linearizable.
func (s *Store) Get(key []byte) (value []byte, ok bool, err error) {
	v, ok, err := s.AppendValue(nil, key)
	if ok && v == nil {
		v = []byte{}
	}
	return v, ok, err
}

// Lookup is Get, under the name sm.StateMachine gives it.
func (s *Store) Lookup(key []byte) ([]byte, bool, error) { return s.Get(key) }

// AppendValue appends key's value to dst and reports whether key exists. It
// lets a reader reuse one buffer across reads instead of allocating per Get.
func (s *Store) AppendValue(dst, key []byte) ([]byte, bool, error) {
	kp := keyPool.Get().(*[]byte)
	k := append(append((*kp)[:0], userKeyPrefix), key...)
	defer func() { *kp = k; keyPool.Put(kp) }()

	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.closed {
		return dst, false, ErrClosed
	}
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return dst, false, nil
	}
	if err != nil {
		return dst, false, fmt.Errorf("kv: get: %w", err)
	}
	dst = append(dst, v...)
	return dst, true, closer.Close()
}

// Flush makes everything applied so far durable. With the WAL off it
// flushes the memtable to an sstable; with the WAL on it syncs the WAL. The
// node calls it before compacting the Raft log past AppliedIndex.
func (s *Store) Flush() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.flushLocked()
}

// FlushAsync starts making durable everything applied so far and returns
// at once: index is the applied index the flush covers, and done is closed
// once it is durable. The node's apply goroutine uses it so that applying
// never waits for a memtable flush (a 64 MiB flush took up to 640 ms on a
// busy shared disk, and every write applied behind it waited too).
func (s *Store) FlushAsync() (index uint64, done <-chan struct{}, err error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed {
		return 0, nil, ErrClosed
	}
	index = s.applied.Load()
	if s.opts.DisableWAL {
		ch, err := s.db.AsyncFlush()
		if err != nil {
			return 0, nil, fmt.Errorf("kv: flush: %w", err)
		}
		return index, ch, nil
	}
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return 0, nil, fmt.Errorf("kv: flush: %w", err)
	}
	ch := make(chan struct{})
	close(ch)
	return index, ch, nil
}

// flushLocked is Flush. REQUIRES: applyMu held.
func (s *Store) flushLocked() error {
	var err error
	if s.opts.DisableWAL {
		err = s.db.Flush()
	} else {
		err = s.db.LogData(nil, pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("kv: flush: %w", err)
	}
	return nil
}

// Hash is a 64-bit FNV-1a hash over every user key and value in key order
// (each length-prefixed), not covering the applied index. Replicas
// at the same applied index must have equal hashes; chaos tests compare
// them.
func (s *Store) Hash() (uint64, error) {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: userKeyLower, UpperBound: userKeyUpper})
	if err != nil {
		return 0, fmt.Errorf("kv: hash: %w", err)
	}
	h := fnv.New64a()
	var lenBuf [binary.MaxVarintLen64]byte
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()[1:]
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return 0, fmt.Errorf("kv: hash: %w", err)
		}
		_, _ = h.Write(binary.AppendUvarint(lenBuf[:0], uint64(len(k))))
		_, _ = h.Write(k)
		_, _ = h.Write(binary.AppendUvarint(lenBuf[:0], uint64(len(v))))
		_, _ = h.Write(v)
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("kv: hash: %w", err)
	}
	return h.Sum64(), nil
}

// Close flushes (so a clean restart replays nothing) and closes the store.
// A second Close returns ErrClosed.
func (s *Store) Close() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	var flushErr error
	if s.err == nil {
		flushErr = s.flushLocked()
	}
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	s.closed = true
	return errors.Join(flushErr, s.closeDB())
}

// closeDB releases the batches and closes db.
// REQUIRES: applyMu and dbMu held exclusively.
func (s *Store) closeDB() error {
	_ = s.batch.Close()
	s.batch = nil
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("kv: closing pebble: %w", err)
	}
	return nil
}

// pebbleLogger routes Pebble's log calls to a slog.Logger, or drops them if
// the logger is nil.
type pebbleLogger struct {
	// l is the destination; nil means silent.
	l *slog.Logger
}

func (p pebbleLogger) logf(level slog.Level, format string, args ...any) {
	if p.l == nil || !p.l.Enabled(context.Background(), level) {
		return
	}
	p.l.Log(context.Background(), level, fmt.Sprintf(format, args...), "component", "pebble")
}

// Infof logs at Debug level: Pebble reports every flush and compaction.
func (p pebbleLogger) Infof(format string, args ...any) { p.logf(slog.LevelDebug, format, args...) }

// Errorf logs at Error level.
func (p pebbleLogger) Errorf(format string, args ...any) { p.logf(slog.LevelError, format, args...) }

// Fatalf logs and panics: Pebble calls it on an unrecoverable internal
// error, and unwinding is kinder to tests than os.Exit.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.logf(slog.LevelError, "%s", msg)
	panic("kv: pebble fatal error: " + msg)
}
