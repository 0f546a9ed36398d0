package kv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"github.com/raftpipe/raftpipe/wire"
)

// ErrGroupOpen is returned by Engine.Group for a group that already has an
// open view: a group's writers are serialized by its view, so two views of
// one group would break that.
var ErrGroupOpen = errors.New("kv: group already open")

// ErrBadGroup is returned by Engine.Group for a group ID the key layout
// cannot hold (MaxGroupID+1, which bounds the last group's span).
var ErrBadGroup = errors.New("kv: group ID out of range")

// MaxGroupID is the largest group ID an Engine holds. The ID after it is
// reserved so that every group's span has an exclusive upper bound of the
// same width (the next group's prefix).
const MaxGroupID = math.MaxUint64 - 1

// Names inside an engine directory. Part of the on-disk format.
const (
	// engineDBName is the directory of the engine's one Pebble database.
	engineDBName = "pebble"
	// restoreDirPrefix and tmpSuffix name the directories where Restore
	// builds a group's sstables before ingesting them: restore-<seq>.tmp.
	// OpenEngine removes any it finds (a crash during a Restore).
	restoreDirPrefix = "restore-"
)

// Group key layout. Part of the on-disk format; the table is in the
// package doc. Every key of group g starts with g as 8 bytes big-endian,
// so a group's keys are one contiguous span, [g, g+1), that a snapshot can
// read and a restore can replace without touching another group.
const (
	// groupIDBytes is the width of the group prefix.
	groupIDBytes = 8
	// groupPrefixBytes is the group prefix and the kind byte after it
	// (localKeyPrefix or userKeyPrefix, as in a Store).
	groupPrefixBytes = groupIDBytes + 1
)

// engineFormatVersion is the on-disk format of an engine database. Part of
// the format: the key layout of the package doc, and the group archive
// version that Restore reads.
const engineFormatVersion = 1

// engineFormatKey holds engineFormatVersion, u32 big-endian, in the span
// above MaxGroupID that no group can use. It is written (and made durable)
// when the database is created and checked by every OpenEngine, so a
// Store's database, or one from another format, is refused instead of read
// as groups.
var engineFormatKey = append(binary.BigEndian.AppendUint64(nil, MaxGroupID+1), localKeyPrefix, 'f', 'o', 'r', 'm', 'a', 't')

// groupAppliedSuffix follows a group's prefix in its applied-record key,
// which holds index u64 | term u64 big-endian (appliedRecordBytes), as a
// Store's appliedKey does.
var groupAppliedSuffix = []byte{localKeyPrefix, 'a', 'p', 'p', 'l', 'i', 'e', 'd'}

// groupKeys are the keys and bounds of one group, precomputed in one
// allocation.
type groupKeys struct {
	// start and end bound the group's whole span: [id, id+1).
	start, end []byte
	// user precedes every user key: id | userKeyPrefix. userEnd bounds the
	// user keys: id | userKeyPrefix+1.
	user, userEnd []byte
	// applied is the key of the applied record.
	applied []byte
}

func makeGroupKeys(id uint64) groupKeys {
	buf := make([]byte, 0, 3*groupIDBytes+2*groupPrefixBytes+len(groupAppliedSuffix))
	put := func(id uint64, tail ...byte) []byte {
		at := len(buf)
		buf = binary.BigEndian.AppendUint64(buf, id)
		buf = append(buf, tail...)
		return buf[at:len(buf):len(buf)]
	}
	return groupKeys{
		start:   put(id),
		end:     put(id + 1),
		user:    put(id, userKeyPrefix),
		userEnd: put(id, userKeyPrefix+1),
		applied: put(id, groupAppliedSuffix...),
	}
}

// Engine is one Pebble database that holds the state of many Raft groups,
// each in its own key span. A node opens one Engine and a Group view per
// group it hosts: the groups share Pebble's memtables, block cache, WAL (if
// on), background goroutines, files and one flush, which is what lets a
// node carry thousands of groups. See the package doc for the layout.
type Engine struct {
	// dir holds the database directory and Restore's staging directories.
	dir string
	// fs is Options.FS, or vfs.Default.
	fs vfs.FS
	// opts is what OpenEngine was given.
	opts Options
	// db is the engine's database; it never changes while the engine is
	// open.
	db *pebbleDB
	// writerOpts are the options Restore builds ingestible sstables with,
	// matching the database's table format.
	writerOpts sstable.WriterOptions
	// writeStalls counts Pebble write stalls, for every group at once.
	writeStalls atomic.Int64
	// restoreSeq numbers Restore's staging directories, so that restores of
	// two groups at once never share one.
	restoreSeq atomic.Uint64
	// commits counts batches committed and restores ingested (by any
	// group), so FlushAsync can tell whether anything was written since the
	// last flush started.
	commits atomic.Uint64
	// appliers pools the scratch state of Apply calls: a group holds none
	// of its own between calls, which keeps an idle group small.
	appliers sync.Pool

	// dbMu guards closed and the database's lifetime: a group operation
	// holds it shared while it uses db, Close exclusively.
	dbMu sync.RWMutex
	// closed is set by Close.
	closed bool

	// mu guards the registry of open views.
	mu struct {
		sync.Mutex
		// groups holds every open view by group ID.
		groups map[uint64]*Group
	}

	// flush guards the record of the last flush started, so that groups
	// asking for a flush with nothing written since share that one.
	flush struct {
		sync.Mutex
		// commits is the value of Engine.commits when the flush started.
		commits uint64
		// done is closed when that flush is durable; nil before the first.
		done <-chan struct{}
	}
}

// OpenEngine opens (or creates) the engine in dir and removes what an
// interrupted Restore left behind. o means what it means to Open: with
// DisableWAL the Raft logs are the durable record and Flush makes every
// group's applied state durable; every file goes through o.FS.
func OpenEngine(dir string, o Options) (*Engine, error) {
	fsys := o.fs()
	o.FS = fsys
	if err := vfsutil.MkdirAllDurable(fsys, dir); err != nil {
		return nil, err
	}
	if err := removeRestoreLeftovers(fsys, dir); err != nil {
		return nil, err
	}
	e := &Engine{dir: dir, fs: fsys, opts: o}
	e.mu.groups = make(map[uint64]*Group)
	e.appliers.New = func() any { return new(batchApplier) }
	var po *pebble.Options
	db, err := openPebble(fsys.PathJoin(dir, engineDBName), o, false, &e.writeStalls, func(p *pebble.Options) {
		// An ingest that overlaps a memtable then waits for that memtable
		// to flush and goes straight into the LSM, whose manifest edit is
		// synced before IngestAndExcise returns. Ingested as a flushable
		// instead, a restored group would be durable only at the next
		// flush (the WAL is off), and Restore could not promise it.
		p.Experimental.DisableIngestAsFlushable = func() bool { return true }
		po = p
	})
	if err != nil {
		return nil, err
	}
	if err := checkEngineFormat(db.DB, o.DisableWAL); err != nil {
		_ = db.Close()
		return nil, err
	}
	wo := po.Clone()
	wo.EnsureDefaults()
	e.writerOpts = wo.MakeWriterOptions(0, db.TableFormat())
	e.db = db
	return e, nil
}

// checkEngineFormat checks db's format record, writing it (durably) if db
// is empty: a new database, or one whose creation a crash interrupted
// before anything was written to it.
func checkEngineFormat(db *pebble.DB, walOff bool) error {
	v, closer, err := db.Get(engineFormatKey)
	if err == nil {
		defer closer.Close()
		if len(v) != 4 || binary.BigEndian.Uint32(v) != engineFormatVersion {
			return fmt.Errorf("%w: engine format record %x; this build reads engine format %d", ErrOldFormat, v, engineFormatVersion)
		}
		return nil
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("kv: reading engine format record: %w", err)
	}
	it, err := db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("kv: reading engine format record: %w", err)
	}
	empty := !it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("kv: reading engine format record: %w", err)
	}
	if !empty {
		return fmt.Errorf("%w: a database with keys and no engine format record (a Store's database, or not raftpipe's); this build reads engine format %d",
			ErrOldFormat, engineFormatVersion)
	}
	var rec [4]byte
	binary.BigEndian.PutUint32(rec[:], engineFormatVersion)
	// Without a WAL, Pebble refuses a synced write: a flush makes it durable.
	wo := pebble.Sync
	if walOff {
		wo = pebble.NoSync
	}
	if err := db.Set(engineFormatKey, rec[:], wo); err != nil {
		return fmt.Errorf("kv: writing engine format record: %w", err)
	}
	if walOff {
		if err := db.Flush(); err != nil {
			return fmt.Errorf("kv: writing engine format record: %w", err)
		}
	}
	return nil
}

// removeRestoreLeftovers deletes every restore-<seq>.tmp directory in dir.
func removeRestoreLeftovers(fsys vfs.FS, dir string) error {
	names, err := fsys.List(dir)
	if err != nil {
		return fmt.Errorf("kv: listing %s: %w", dir, err)
	}
	removed := false
	for _, name := range names {
		if !strings.HasPrefix(name, restoreDirPrefix) || !strings.HasSuffix(name, tmpSuffix) {
			continue
		}
		if err := fsys.RemoveAll(fsys.PathJoin(dir, name)); err != nil {
			return fmt.Errorf("kv: removing leftover %s: %w", name, err)
		}
		removed = true
	}
	if removed {
		return vfsutil.SyncDir(fsys, dir)
	}
	return nil
}

// Group returns the view of group id, reading its applied index and term.
// A group nothing was applied to starts empty at index 0; nothing is
// written until its first Apply or Restore. Only one view of a group may
// be open at a time (ErrGroupOpen); Group.Close releases it.
func (e *Engine) Group(id uint64) (*Group, error) {
	if id > MaxGroupID {
		return nil, fmt.Errorf("%w: %d", ErrBadGroup, id)
	}
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	if e.closed {
		return nil, ErrClosed
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.mu.groups[id]; ok {
		return nil, fmt.Errorf("%w: %d", ErrGroupOpen, id)
	}
	g := &Group{e: e, id: id, keys: makeGroupKeys(id)}
	idx, term, err := readApplied(e.db.DB, g.keys.applied)
	if err != nil {
		return nil, fmt.Errorf("kv: group %d: %w", id, err)
	}
	g.applied.Store(idx)
	g.appliedTerm.Store(term)
	e.mu.groups[id] = g
	return g, nil
}

// RemoveGroup deletes every key of group id, its applied record included,
// with one Pebble excise of the group's span: atomic across a crash and
// durable when it returns (as Restore's ingest is). The runtime calls it
// when it removes the group's replica from this node; afterwards the group
// reads as empty at index 0. The group must have no open view
// (ErrGroupOpen).
func (e *Engine) RemoveGroup(id uint64) error {
	if id > MaxGroupID {
		return fmt.Errorf("%w: %d", ErrBadGroup, id)
	}
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	if e.closed {
		return ErrClosed
	}
	e.mu.Lock()
	defer e.mu.Unlock() // held so that no view opens during the excise
	if _, ok := e.mu.groups[id]; ok {
		return fmt.Errorf("%w: %d (close its view before removing it)", ErrGroupOpen, id)
	}
	k := makeGroupKeys(id)
	if err := e.db.Excise(context.Background(), pebble.KeyRange{Start: k.start, End: k.end}); err != nil {
		return fmt.Errorf("kv: removing group %d: %w", id, err)
	}
	e.commits.Add(1)
	return nil
}

// readApplied decodes the applied record at key in r (zero if absent).
func readApplied(r pebble.Reader, key []byte) (index, term uint64, err error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reading applied index: %w", err)
	}
	defer closer.Close()
	if len(v) != appliedRecordBytes {
		return 0, 0, fmt.Errorf("applied record is %d bytes, want %d", len(v), appliedRecordBytes)
	}
	return binary.BigEndian.Uint64(v[:8]), binary.BigEndian.Uint64(v[8:]), nil
}

// flushAsync starts a flush that makes every batch committed so far
// durable and returns a channel closed when it is, unless nothing was
// committed since the last flush started, in which case that flush's
// channel serves. Reusing it is safe: a batch counted in commits was
// committed before it was counted, so a flush started after the count was
// read covers it.
func (e *Engine) flushAsync() (<-chan struct{}, error) {
	e.flush.Lock()
	defer e.flush.Unlock()
	n := e.commits.Load()
	if e.flush.done != nil && e.flush.commits == n {
		return e.flush.done, nil
	}
	var done <-chan struct{}
	if e.opts.DisableWAL {
		ch, err := e.db.AsyncFlush()
		if err != nil {
			return nil, fmt.Errorf("kv: flush: %w", err)
		}
		done = ch
	} else {
		if err := e.db.LogData(nil, pebble.Sync); err != nil {
			return nil, fmt.Errorf("kv: flush: %w", err)
		}
		ch := make(chan struct{})
		close(ch)
		done = ch
	}
	e.flush.commits, e.flush.done = n, done
	return done, nil
}

// Flush makes every group's applied state durable (one Pebble flush, or
// one WAL sync, for all of them).
func (e *Engine) Flush() error {
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	if e.closed {
		return ErrClosed
	}
	done, err := e.flushAsync()
	if err != nil {
		return err
	}
	<-done
	return nil
}

// WriteStalls is how many times Pebble delayed the engine's writes
// (memtables or L0 full), for all groups together, since OpenEngine.
func (e *Engine) WriteStalls() int64 { return e.writeStalls.Load() }

// Close flushes (so a clean restart replays nothing), closes every open
// view and the database. A second Close returns ErrClosed.
func (e *Engine) Close() error {
	e.dbMu.Lock()
	defer e.dbMu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.closed = true
	e.mu.Lock()
	for id, g := range e.mu.groups {
		g.closed.Store(true)
		delete(e.mu.groups, id)
	}
	e.mu.Unlock()
	var flushErr error
	if e.opts.DisableWAL {
		flushErr = e.db.Flush()
	} else {
		flushErr = e.db.LogData(nil, pebble.Sync)
	}
	if flushErr != nil {
		flushErr = fmt.Errorf("kv: flush: %w", flushErr)
	}
	err := e.db.Close()
	if err != nil {
		err = fmt.Errorf("kv: closing pebble: %w", err)
	}
	return errors.Join(flushErr, err)
}

// getApplier returns pooled Apply scratch state writing behind prefix.
func (e *Engine) getApplier(prefix []byte) *batchApplier {
	a := e.appliers.Get().(*batchApplier)
	a.prefix = prefix
	return a
}

// putApplier returns a to the pool.
func (e *Engine) putApplier(a *batchApplier) {
	a.prefix = nil
	a.req = wire.ClientRequest{} // drop references into the last batch's entries
	e.appliers.Put(a)
}
