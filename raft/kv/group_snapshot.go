package kv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
)

// Group snapshot archive format constants. Part of the format; the layout
// is in the package doc.
const (
	// groupSnapMagic opens every group snapshot stream. It differs from
	// snapMagic, so neither Restore accepts the other's archives.
	groupSnapMagic = "RPKVGSNP"
	// groupSnapVersion is the group archive version written and read.
	groupSnapVersion = 1
	// groupSnapKindPair and groupSnapKindEnd tag the records after the
	// header.
	groupSnapKindPair = 1
	groupSnapKindEnd  = 2
)

// restoreTableBytes is the size at which Restore starts a new sstable, so
// that one large group becomes several tables of a size compactions handle
// well rather than one huge one. All of them go into one ingest.
const restoreTableBytes = 64 << 20

// WriteSnapshot streams a consistent snapshot of this group's span to w
// and returns what it covers: the index and term of the last entry applied
// to it (what its header carries). It takes a Pebble snapshot (memtables
// included, so nothing is flushed) while holding off the group's Apply for
// that moment only, then streams the group's keys from it in key order. Other
// groups are neither read nor held up; a Restore of this group waits until
// the stream ends.
func (g *Group) WriteSnapshot(w io.Writer) (SnapshotInfo, error) {
	g.streamMu.RLock()
	defer g.streamMu.RUnlock()
	snap, err := g.pebbleSnapshot()
	if err != nil {
		return SnapshotInfo{}, err
	}
	defer g.e.dbMu.RUnlock()
	defer snap.Close()
	// The applied record comes from the snapshot itself, so it describes
	// exactly the data streamed.
	var info SnapshotInfo
	if info.Index, info.Term, err = readApplied(snap, g.keys.applied); err != nil {
		return SnapshotInfo{}, fmt.Errorf("kv: group %d: snapshot: %w", g.id, err)
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: g.keys.user, UpperBound: g.keys.userEnd})
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("kv: group %d: snapshot: %w", g.id, err)
	}
	defer it.Close()

	sw := &snapWriter{w: bufio.NewWriterSize(w, snapIOBufferBytes)}
	var hdr []byte
	hdr = append(hdr, groupSnapMagic...)
	hdr = binary.BigEndian.AppendUint32(hdr, groupSnapVersion)
	hdr = binary.BigEndian.AppendUint64(hdr, g.id)
	hdr = binary.BigEndian.AppendUint64(hdr, info.Index)
	hdr = binary.BigEndian.AppendUint64(hdr, info.Term)
	sw.write(hdr)
	sw.writeRecordCRC()
	var rec []byte
	pairs := uint64(0)
	for valid := it.First(); valid && sw.err == nil; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return SnapshotInfo{}, fmt.Errorf("kv: group %d: snapshot: %w", g.id, err)
		}
		k := it.Key()[groupPrefixBytes:]
		rec = append(rec[:0], groupSnapKindPair)
		rec = binary.BigEndian.AppendUint32(rec, uint32(len(k)))
		rec = append(rec, k...)
		rec = binary.BigEndian.AppendUint32(rec, uint32(len(v)))
		sw.write(rec)
		sw.write(v)
		pairs++
	}
	if err := it.Error(); err != nil {
		return SnapshotInfo{}, fmt.Errorf("kv: group %d: snapshot: %w", g.id, err)
	}
	var end []byte
	end = append(end, groupSnapKindEnd)
	end = binary.BigEndian.AppendUint64(end, pairs)
	sw.write(end)
	sw.writeUint32(sw.streamCRC)
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	if sw.err != nil {
		return SnapshotInfo{}, fmt.Errorf("kv: group %d: writing snapshot: %w", g.id, sw.err)
	}
	return info, nil
}

// pebbleSnapshot takes a Pebble snapshot with the group's writers held
// off, so it holds whole Apply batches only. On success it returns with
// e.dbMu held shared, for the caller to release once done with the
// snapshot. The locks are taken in the order every group operation takes
// them (applyMu, then dbMu): taking dbMu first could deadlock against an
// Apply once Engine.Close waits for dbMu.
func (g *Group) pebbleSnapshot() (*pebble.Snapshot, error) {
	g.applyMu.Lock()
	defer g.applyMu.Unlock()
	e := g.e
	e.dbMu.RLock()
	if e.closed || g.closed.Load() {
		e.dbMu.RUnlock()
		return nil, ErrClosed
	}
	return e.db.NewSnapshot(), nil
}

// ReadGroupSnapshotInfo reads and checks (magic, version, CRC) only the
// header of a group snapshot archive, reading nothing past it, and returns
// the group it belongs to and what it claims to hold. A bad header is
// ErrBadSnapshot.
func ReadGroupSnapshotInfo(r io.Reader) (group uint64, info SnapshotInfo, err error) {
	sr := &snapReader{r: r}
	return readGroupSnapHeader(sr)
}

// readGroupSnapHeader reads the group archive header from sr.
func readGroupSnapHeader(sr *snapReader) (group uint64, info SnapshotInfo, err error) {
	magic := make([]byte, len(groupSnapMagic))
	if err := sr.readFull(magic, "magic"); err != nil {
		return 0, SnapshotInfo{}, err
	}
	if string(magic) != groupSnapMagic {
		return 0, SnapshotInfo{}, fmt.Errorf("%w: bad magic %q", ErrBadSnapshot, magic)
	}
	version, err := sr.readUint(4, "version")
	if err != nil {
		return 0, SnapshotInfo{}, err
	}
	if version != groupSnapVersion {
		return 0, SnapshotInfo{}, fmt.Errorf("%w: unknown group archive version %d (want %d)", ErrBadSnapshot, version, groupSnapVersion)
	}
	if group, err = sr.readUint(8, "group"); err != nil {
		return 0, SnapshotInfo{}, err
	}
	if info.Index, err = sr.readUint(8, "applied index"); err != nil {
		return 0, SnapshotInfo{}, err
	}
	if info.Term, err = sr.readUint(8, "applied term"); err != nil {
		return 0, SnapshotInfo{}, err
	}
	if err := sr.checkCRC(sr.recordCRC, "header"); err != nil {
		return 0, SnapshotInfo{}, err
	}
	return group, info, nil
}

// Restore replaces this group's whole state (its data and its applied
// index and term) with the snapshot streamed from r, atomically, and
// returns what it installed (the header's SnapshotInfo). Other groups are
// not touched.
//
// It reads the whole stream into sstables in a staging directory (each
// file synced), with the applied record among the keys, and only once the
// stream's CRC and counts check out hands them to Pebble's
// IngestAndExcise, which in one manifest edit removes every key of the
// group's span that was there and adds the new tables. A crash before
// that edit is durable leaves the old state, after it the new; OpenEngine
// removes the staging directory either way. The edit is synced before
// IngestAndExcise returns (OpenEngine disables ingesting as a flushable),
// so the new state is durable when Restore returns.
//
// A truncated or corrupt stream, or one for another group, returns
// ErrBadSnapshot with the old state intact. Restore does not compare the
// snapshot's index with AppliedIndex: the runtime decides what to install.
// It waits for a WriteSnapshot of this group in progress to end.
func (g *Group) Restore(r io.Reader) (SnapshotInfo, error) {
	g.streamMu.Lock()
	defer g.streamMu.Unlock()
	g.applyMu.Lock()
	defer g.applyMu.Unlock()
	e := g.e
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	if e.closed || g.closed.Load() {
		return SnapshotInfo{}, ErrClosed
	}
	stage := e.fs.PathJoin(e.dir, fmt.Sprintf("%s%d%s", restoreDirPrefix, e.restoreSeq.Add(1), tmpSuffix))
	// Pebble removes the tables it ingested; this removes the directory, or
	// everything if the restore failed. A leftover (after a crash) is
	// removed by OpenEngine, so no sync is needed.
	defer func() { _ = e.fs.RemoveAll(stage) }()
	paths, info, err := g.stageSnapshot(r, stage)
	if err != nil {
		return SnapshotInfo{}, err
	}
	span := pebble.KeyRange{Start: g.keys.start, End: g.keys.end}
	if _, err := e.db.IngestAndExcise(context.Background(), paths, nil, nil, span); err != nil {
		return SnapshotInfo{}, fmt.Errorf("kv: group %d: restore: ingest: %w", g.id, err)
	}
	e.commits.Add(1)
	idx, term, err := readApplied(e.db.DB, g.keys.applied)
	if err != nil || idx != info.Index || term != info.Term {
		panic(fmt.Sprintf("kv: group %d: after ingesting a snapshot at index %d term %d the group reads index %d term %d, %v (invariant: the applied record is ingested with the data)",
			g.id, info.Index, info.Term, idx, term, err))
	}
	g.applied.Store(info.Index)
	g.appliedTerm.Store(info.Term)
	g.err = nil
	return info, nil
}

// stageSnapshot reads the archive from r into sstables in the new directory
// stage and returns their paths and the header's SnapshotInfo. The tables
// hold the group's keys with their prefix, the applied record first.
func (g *Group) stageSnapshot(r io.Reader, stage string) (paths []string, info SnapshotInfo, err error) {
	fsys := g.e.fs
	if err := fsys.MkdirAll(stage, 0o755); err != nil {
		return nil, SnapshotInfo{}, fmt.Errorf("kv: group %d: restore: %w", g.id, err)
	}
	sr := &snapReader{r: bufio.NewReaderSize(r, snapIOBufferBytes)}
	group, info, err := readGroupSnapHeader(sr)
	if err != nil {
		return nil, SnapshotInfo{}, err
	}
	if group != g.id {
		return nil, SnapshotInfo{}, fmt.Errorf("%w: snapshot of group %d given to group %d", ErrBadSnapshot, group, g.id)
	}
	tw := &tableWriter{fs: fsys, dir: stage, opts: g.e.writerOpts}
	defer tw.abort()
	var rec [appliedRecordBytes]byte
	binary.BigEndian.PutUint64(rec[:8], info.Index)
	binary.BigEndian.PutUint64(rec[8:], info.Term)
	if err := tw.set(g.keys.applied, rec[:]); err != nil {
		return nil, SnapshotInfo{}, err
	}
	key := append([]byte{}, g.keys.user...) // prefixed key being read
	var prev []byte                         // the last key read, unprefixed
	var value []byte
	pairs := uint64(0)
	for {
		kind, err := sr.readUint(1, "record kind")
		if err != nil {
			return nil, SnapshotInfo{}, err
		}
		if kind == groupSnapKindEnd {
			break
		}
		if kind != groupSnapKindPair {
			return nil, SnapshotInfo{}, fmt.Errorf("%w: unknown record kind %d", ErrBadSnapshot, kind)
		}
		if key, err = readSnapField(sr, key[:groupPrefixBytes], MaxKeyBytes, "key"); err != nil {
			return nil, SnapshotInfo{}, err
		}
		k := key[groupPrefixBytes:]
		if pairs > 0 && bytes.Compare(prev, k) >= 0 {
			return nil, SnapshotInfo{}, fmt.Errorf("%w: key %q after %q (keys must increase)", ErrBadSnapshot, k, prev)
		}
		prev = append(prev[:0], k...)
		if value, err = readSnapField(sr, value[:0], MaxValueBytes, "value"); err != nil {
			return nil, SnapshotInfo{}, err
		}
		if err := tw.set(key, value); err != nil {
			return nil, SnapshotInfo{}, err
		}
		pairs++
	}
	count, err := sr.readUint(8, "pair count")
	if err != nil {
		return nil, SnapshotInfo{}, err
	}
	if count != pairs {
		return nil, SnapshotInfo{}, fmt.Errorf("%w: trailer says %d pairs, stream held %d", ErrBadSnapshot, count, pairs)
	}
	if err := sr.checkCRC(sr.streamCRC, "stream"); err != nil {
		return nil, SnapshotInfo{}, err
	}
	if err := tw.finish(); err != nil {
		return nil, SnapshotInfo{}, err
	}
	// The tables' names must survive too: Pebble links them into its own
	// directory and syncs that, but sync the stage as well so a link never
	// refers to an entry that is not durable.
	if err := vfsutil.SyncDir(fsys, stage); err != nil {
		return nil, SnapshotInfo{}, err
	}
	return tw.paths, info, nil
}

// readSnapField reads a u32 length (checked against limit) and that many
// bytes, appended to dst.
func readSnapField(sr *snapReader, dst []byte, limit uint64, what string) ([]byte, error) {
	n, err := sr.readUint(4, what+" length")
	if err != nil {
		return dst, err
	}
	if n > limit {
		return dst, fmt.Errorf("%w: %s of %d bytes is over the %d-byte limit", ErrBadSnapshot, what, n, limit)
	}
	at := len(dst)
	dst = slices.Grow(dst, int(n))[:at+int(n)]
	if err := sr.readFull(dst[at:], what); err != nil {
		return dst, err
	}
	return dst, nil
}

// tableWriter writes keys in increasing order into a run of sstables for
// ingestion, starting a new one past restoreTableBytes.
type tableWriter struct {
	// fs and dir are where the tables go.
	fs  vfs.FS
	dir string
	// opts match the engine's table format.
	opts sstable.WriterOptions
	// w is the table being written (nil between tables).
	w *sstable.Writer
	// paths lists every table started, in key order.
	paths []string
}

// set adds one key to the current table, starting one if needed.
func (tw *tableWriter) set(key, value []byte) error {
	if tw.w == nil {
		path := tw.fs.PathJoin(tw.dir, fmt.Sprintf("%06d.sst", len(tw.paths)+1))
		f, err := tw.fs.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			return fmt.Errorf("kv: restore: %w", err)
		}
		tw.w = sstable.NewWriter(objstorageprovider.NewFileWritable(f), tw.opts)
		tw.paths = append(tw.paths, path)
	}
	if err := tw.w.Set(key, value); err != nil {
		return fmt.Errorf("kv: restore: writing table: %w", err)
	}
	if tw.w.Raw().EstimatedSize() >= restoreTableBytes {
		return tw.closeTable()
	}
	return nil
}

// closeTable finishes the current table: its footer written, the file
// synced and closed.
func (tw *tableWriter) closeTable() error {
	w := tw.w
	tw.w = nil
	if err := w.Close(); err != nil {
		return fmt.Errorf("kv: restore: finishing table: %w", err)
	}
	return nil
}

// finish closes the last table.
func (tw *tableWriter) finish() error {
	if tw.w == nil {
		return nil
	}
	return tw.closeTable()
}

// abort releases a table left open by an error (its file is removed with
// the staging directory).
func (tw *tableWriter) abort() {
	if tw.w != nil {
		_ = tw.w.Close()
		tw.w = nil
	}
}
