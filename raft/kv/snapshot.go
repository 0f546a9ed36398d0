package kv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"hash/crc32"
	"io"
	"io/fs"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrBadSnapshot means a snapshot stream is truncated, corrupt (a CRC
// mismatch), over a limit, or does not hold the database its header
// describes. Restore returns it with the old state intact.
var ErrBadSnapshot = errors.New("kv: bad snapshot")

// Snapshot archive format constants. Part of the format; the layout is in
// the package doc.
const (
	// snapMagic opens every snapshot stream.
	snapMagic = "RPKVSNAP"
	// snapVersion is the archive version written and read. Version 1 (no
	// term in the header) was never deployed; version 2 carried the
	// runtime's membership in the header, which the runtime now frames
	// itself (raft/node). Neither is read.
	snapVersion = 3
	// snapKindFile and snapKindEnd tag the records after the header.
	snapKindFile = 1
	snapKindEnd  = 2
)

// Limits checked before anything read from a snapshot stream is allocated
// or written.
const (
	// maxSnapNameBytes bounds a file name.
	maxSnapNameBytes = 255
	// maxSnapFileBytes bounds one file's size (a sanity bound on the
	// length field; data is streamed to disk, never held in memory).
	maxSnapFileBytes = 1 << 40
	// maxSnapFiles bounds the number of files in one archive.
	maxSnapFiles = 1 << 20
	// snapIOBufferBytes is the buffer used to stream file data.
	snapIOBufferBytes = 256 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WriteSnapshot streams a consistent snapshot of the store to w and returns
// what it covers: the index and term of the last entry applied to it (the
// same values its header carries). It flushes the memtable
// and takes a Pebble checkpoint (hard links) in a temporary directory under
// the store's directory while holding off Apply, then streams the
// checkpoint's files in the archive format of the package doc without
// blocking Apply.
func (s *Store) WriteSnapshot(w io.Writer) (SnapshotInfo, error) {
	ckpt := s.fs.PathJoin(s.dir, fmt.Sprintf("%s%d%s", snapDirPrefix, s.snapSeq.Add(1), tmpSuffix))
	info, err := s.checkpoint(ckpt)
	// A leftover (after a crash) is removed by Open; no sync needed.
	defer func() { _ = s.fs.RemoveAll(ckpt) }()
	if err != nil {
		return SnapshotInfo{}, err
	}
	if err := writeArchive(w, s.fs, ckpt, info); err != nil {
		return SnapshotInfo{}, err
	}
	return info, nil
}

// checkpoint flushes and checkpoints the database into dir, and returns
// what the checkpoint holds.
func (s *Store) checkpoint(dir string) (SnapshotInfo, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed {
		return SnapshotInfo{}, ErrClosed
	}
	// Flush first: with the WAL off, the memtable is in no file a
	// checkpoint could copy.
	if err := s.db.Flush(); err != nil {
		return SnapshotInfo{}, fmt.Errorf("kv: snapshot flush: %w", err)
	}
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return SnapshotInfo{}, fmt.Errorf("kv: checkpoint: %w", err)
	}
	// applyMu keeps Apply out, so these are the checkpoint's.
	return SnapshotInfo{Index: s.applied.Load(), Term: s.appliedTerm.Load()}, nil
}

// writeArchive streams the files of dir to w, under a header naming info.
func writeArchive(w io.Writer, fsys vfs.FS, dir string, info SnapshotInfo) error {
	names, err := fsys.List(dir)
	if err != nil {
		return fmt.Errorf("kv: listing checkpoint: %w", err)
	}
	slices.Sort(names) // List promises no order; the archive is sorted
	sw := &snapWriter{w: bufio.NewWriterSize(w, snapIOBufferBytes)}
	var hdr []byte
	hdr = append(hdr, snapMagic...)
	hdr = binary.BigEndian.AppendUint32(hdr, snapVersion)
	hdr = binary.BigEndian.AppendUint64(hdr, info.Index)
	hdr = binary.BigEndian.AppendUint64(hdr, info.Term)
	sw.write(hdr)
	sw.writeRecordCRC()
	buf := make([]byte, snapIOBufferBytes)
	for _, name := range names {
		if err := sw.writeFile(fsys, fsys.PathJoin(dir, name), name, buf); err != nil {
			return err
		}
	}
	var end []byte
	end = append(end, snapKindEnd)
	end = binary.BigEndian.AppendUint32(end, uint32(len(names)))
	sw.write(end)
	sw.writeUint32(sw.streamCRC)
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	if sw.err != nil {
		return fmt.Errorf("kv: writing snapshot: %w", sw.err)
	}
	return nil
}

// snapWriter writes a snapshot stream, keeping the CRC of the current record
// and of the whole stream, and the first write error.
type snapWriter struct {
	// w is the buffered destination.
	w *bufio.Writer
	// recordCRC covers the bytes of the record being written.
	recordCRC uint32
	// streamCRC covers every byte written so far.
	streamCRC uint32
	// err is the first write error; later writes are skipped.
	err error
}

func (sw *snapWriter) Write(p []byte) (int, error) {
	if sw.err != nil {
		return 0, sw.err
	}
	n, err := sw.w.Write(p)
	sw.recordCRC = crc32.Update(sw.recordCRC, castagnoli, p[:n])
	sw.streamCRC = crc32.Update(sw.streamCRC, castagnoli, p[:n])
	sw.err = err
	return n, err
}

func (sw *snapWriter) write(p []byte) { _, _ = sw.Write(p) }

func (sw *snapWriter) writeUint32(v uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	sw.write(b[:])
}

// writeRecordCRC ends a record with its CRC and starts the next.
func (sw *snapWriter) writeRecordCRC() {
	sw.writeUint32(sw.recordCRC)
	sw.recordCRC = 0
}

// writeFile writes one file record.
func (sw *snapWriter) writeFile(fsys vfs.FS, path, name string, buf []byte) error {
	f, err := fsys.Open(path)
	if err != nil {
		return fmt.Errorf("kv: snapshot: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("kv: snapshot: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("kv: checkpoint holds %s, which is not a regular file", name)
	}
	var hdr []byte
	hdr = append(hdr, snapKindFile)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(name)))
	hdr = append(hdr, name...)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(st.Size()))
	sw.write(hdr)
	n, err := io.CopyBuffer(sw, io.LimitReader(f, st.Size()), buf)
	if sw.err != nil {
		return fmt.Errorf("kv: writing snapshot: %w", sw.err)
	}
	if err != nil {
		return fmt.Errorf("kv: snapshot: reading %s: %w", name, err)
	}
	if n != st.Size() {
		return fmt.Errorf("kv: snapshot: %s shrank from %d to %d bytes while being read", name, st.Size(), n)
	}
	sw.writeRecordCRC()
	return sw.err
}

// snapReader reads a snapshot stream, keeping the CRC of the current record
// and of the whole stream.
type snapReader struct {
	// r is the source: buffered for Restore, bare for ReadSnapshotInfo
	// (which must not read past the header).
	r io.Reader
	// recordCRC covers the bytes of the record being read.
	recordCRC uint32
	// streamCRC covers every byte read so far.
	streamCRC uint32
}

func (sr *snapReader) Read(p []byte) (int, error) {
	n, err := sr.r.Read(p)
	sr.recordCRC = crc32.Update(sr.recordCRC, castagnoli, p[:n])
	sr.streamCRC = crc32.Update(sr.streamCRC, castagnoli, p[:n])
	return n, err
}

// readFull fills p; running out of stream is ErrBadSnapshot (truncated).
func (sr *snapReader) readFull(p []byte, what string) error {
	if _, err := io.ReadFull(sr, p); err != nil {
		return fmt.Errorf("%w: reading %s: %w", ErrBadSnapshot, what, err)
	}
	return nil
}

func (sr *snapReader) readUint(size int, what string) (uint64, error) {
	var b [8]byte
	if err := sr.readFull(b[8-size:], what); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

// checkCRC reads a 4-byte CRC and compares it with want (the CRC of the
// bytes before it).
func (sr *snapReader) checkCRC(want uint32, what string) error {
	got, err := sr.readUint(4, what+" crc")
	if err != nil {
		return err
	}
	if uint32(got) != want {
		return fmt.Errorf("%w: %s crc mismatch (stored %#x, computed %#x)", ErrBadSnapshot, what, got, want)
	}
	sr.recordCRC = 0
	return nil
}

// readHeader reads and checks the archive header, reading nothing past it.
func (sr *snapReader) readHeader() (SnapshotInfo, error) {
	var info SnapshotInfo
	magic := make([]byte, len(snapMagic))
	if err := sr.readFull(magic, "magic"); err != nil {
		return SnapshotInfo{}, err
	}
	if string(magic) != snapMagic {
		return SnapshotInfo{}, fmt.Errorf("%w: bad magic %q", ErrBadSnapshot, magic)
	}
	version, err := sr.readUint(4, "version")
	if err != nil {
		return SnapshotInfo{}, err
	}
	if version != snapVersion {
		return SnapshotInfo{}, fmt.Errorf("%w: unknown archive version %d (want %d)", ErrBadSnapshot, version, snapVersion)
	}
	if info.Index, err = sr.readUint(8, "applied index"); err != nil {
		return SnapshotInfo{}, err
	}
	if info.Term, err = sr.readUint(8, "applied term"); err != nil {
		return SnapshotInfo{}, err
	}
	if err := sr.checkCRC(sr.recordCRC, "header"); err != nil {
		return SnapshotInfo{}, err
	}
	return info, nil
}

// ReadSnapshotInfo reads and checks (magic, version, limits, CRC) only the
// header of a snapshot archive and returns what the archive claims to hold.
// It reads exactly the header's bytes from r, nothing past them. The
// runtime uses it to identify a staged snapshot file without restoring it;
// the claim is verified against the data only by Restore. A bad header is
// ErrBadSnapshot.
func ReadSnapshotInfo(r io.Reader) (SnapshotInfo, error) {
	sr := &snapReader{r: r}
	return sr.readHeader()
}

// validSnapName reports whether name may be created inside the new
// database directory: a plain file name, never a path.
func validSnapName(name string) bool {
	return name != "" && name != "." && name != ".." &&
		!strings.ContainsAny(name, "/\\\x00")
}

// Restore replaces the whole state with the snapshot streamed from r,
// atomically, and returns what it installed (the header's SnapshotInfo,
// which the data was checked to match; AppliedIndex and AppliedTerm now
// return the same). The new database is written to db-<n+1>, fsynced
// and opened (checking it holds the index and term its header claims, in
// this store's format) while the old one keeps serving; then CURRENT is switched to it (write CURRENT.tmp,
// fsync, rename, fsync the directory) and the old database is closed and
// removed. A crash before the rename leaves the old state, after it the
// new; Open removes the leftovers either way.
//
// A truncated or corrupt stream returns ErrBadSnapshot and leaves the old
// state intact. An error after the rename (only the directory fsync can
// fail there) is returned with the new state installed; the node should
// treat it as fatal, like any fsync error. Restore reads r through a
// buffer, so r should end with the snapshot. Restore does not compare the
// snapshot's index with AppliedIndex: the node decides what to install
// (ReadSnapshotInfo reads the header without restoring).
func (s *Store) Restore(r io.Reader) (SnapshotInfo, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed {
		return SnapshotInfo{}, ErrClosed
	}
	n := s.dbNum + 1
	path := dbPath(s.fs, s.dir, n)
	newDB, info, err := s.buildFromSnapshot(r, path)
	if err != nil {
		return SnapshotInfo{}, err
	}
	err = writeCurrent(s.fs, s.dir, n)
	if err != nil {
		if cur, ok, rerr := readCurrent(s.fs, s.dir); rerr != nil || !ok || cur != n {
			// The rename did not happen: the old state stands.
			_ = newDB.Close()
			_ = s.fs.RemoveAll(path)
			return SnapshotInfo{}, err
		}
		// The rename happened but its directory fsync failed: the new
		// state is on disk, so serve it and report the error.
	}
	oldNum := s.dbNum
	s.dbMu.Lock()
	oldDB := s.db
	_ = s.batch.Close()
	ierr := s.install(newDB)
	if ierr != nil {
		panic(fmt.Sprintf("kv: restored database unreadable after it was verified: %v", ierr))
	}
	s.dbNum = n
	s.err = nil
	s.dbMu.Unlock()
	// Readers hold dbMu while they use a database, so none uses oldDB now.
	cerr := oldDB.Close()
	rerr := s.fs.RemoveAll(dbPath(s.fs, s.dir, oldNum))
	if rerr == nil {
		rerr = vfsutil.SyncDir(s.fs, s.dir)
	}
	if err != nil || cerr != nil || rerr != nil {
		return info, fmt.Errorf("kv: restore installed the new state but: %w", errors.Join(err, cerr, rerr))
	}
	return info, nil
}

// buildFromSnapshot writes the archive from r into the new directory path,
// fsyncs it, opens it and checks that it holds what the header claims,
// which it returns. On failure it removes path and returns an error.
func (s *Store) buildFromSnapshot(r io.Reader, path string) (db *pebbleDB, info SnapshotInfo, err error) {
	defer func() {
		if err == nil {
			return
		}
		if db != nil {
			_ = db.Close()
			db = nil
		}
		_ = s.fs.RemoveAll(path)
	}()
	if err := s.fs.RemoveAll(path); err != nil {
		return nil, SnapshotInfo{}, fmt.Errorf("kv: clearing %s: %w", path, err)
	}
	if err := s.fs.MkdirAll(path, 0o755); err != nil {
		return nil, SnapshotInfo{}, fmt.Errorf("kv: restore: %w", err)
	}
	sr := &snapReader{r: bufio.NewReaderSize(r, snapIOBufferBytes)}
	info, err = sr.readHeader()
	if err != nil {
		return nil, SnapshotInfo{}, err
	}
	buf := make([]byte, snapIOBufferBytes)
	files := uint64(0)
	for {
		kind, err := sr.readUint(1, "record kind")
		if err != nil {
			return nil, SnapshotInfo{}, err
		}
		if kind == snapKindEnd {
			break
		}
		if kind != snapKindFile {
			return nil, SnapshotInfo{}, fmt.Errorf("%w: unknown record kind %d", ErrBadSnapshot, kind)
		}
		if files++; files > maxSnapFiles {
			return nil, SnapshotInfo{}, fmt.Errorf("%w: more than %d files", ErrBadSnapshot, maxSnapFiles)
		}
		if err := readSnapFile(sr, s.fs, path, buf); err != nil {
			return nil, SnapshotInfo{}, err
		}
	}
	count, err := sr.readUint(4, "file count")
	if err != nil {
		return nil, SnapshotInfo{}, err
	}
	if count != files {
		return nil, SnapshotInfo{}, fmt.Errorf("%w: trailer says %d files, stream held %d", ErrBadSnapshot, count, files)
	}
	if err := sr.checkCRC(sr.streamCRC, "stream"); err != nil {
		return nil, SnapshotInfo{}, err
	}
	if err := vfsutil.SyncDir(s.fs, path); err != nil {
		return nil, SnapshotInfo{}, err
	}
	if err := vfsutil.SyncDir(s.fs, s.dir); err != nil {
		return nil, SnapshotInfo{}, err
	}
	if db, err = openPebble(path, s.opts, true, s.writeStalls); err != nil {
		return nil, SnapshotInfo{}, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	got, err := loadState(db.DB)
	if err != nil {
		return db, SnapshotInfo{}, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	if got.Index != info.Index || got.Term != info.Term {
		return db, SnapshotInfo{}, fmt.Errorf("%w: header says index %d term %d, database holds index %d term %d",
			ErrBadSnapshot, info.Index, info.Term, got.Index, got.Term)
	}
	return db, info, nil
}

// readSnapFile reads one file record (after its kind byte) into dir.
func readSnapFile(sr *snapReader, fsys vfs.FS, dir string, buf []byte) error {
	nameLen, err := sr.readUint(2, "name length")
	if err != nil {
		return err
	}
	if nameLen > maxSnapNameBytes {
		return fmt.Errorf("%w: file name of %d bytes is over the %d-byte limit", ErrBadSnapshot, nameLen, maxSnapNameBytes)
	}
	nameBuf := make([]byte, nameLen)
	if err := sr.readFull(nameBuf, "file name"); err != nil {
		return err
	}
	name := string(nameBuf)
	if !validSnapName(name) {
		return fmt.Errorf("%w: invalid file name %q", ErrBadSnapshot, name)
	}
	size, err := sr.readUint(8, "file size")
	if err != nil {
		return err
	}
	if size > maxSnapFileBytes {
		return fmt.Errorf("%w: file %s of %d bytes is over the %d-byte limit", ErrBadSnapshot, name, size, uint64(maxSnapFileBytes))
	}
	fpath := fsys.PathJoin(dir, name)
	// vfs.FS has no exclusive create; dir started empty and only this
	// goroutine writes to it, so a file already there came from this stream.
	if _, err := fsys.Stat(fpath); err == nil {
		return fmt.Errorf("%w: file %s appears twice", ErrBadSnapshot, name)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("kv: restore: %w", err)
	}
	f, err := fsys.Create(fpath, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("kv: restore: %w", err)
	}
	n, err := io.CopyBuffer(f, io.LimitReader(sr, int64(size)), buf)
	if err == nil && uint64(n) != size {
		err = fmt.Errorf("%w: file %s truncated at %d of %d bytes", ErrBadSnapshot, name, n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("kv: restore: writing %s: %w", name, err)
	}
	return sr.checkCRC(sr.recordCRC, "file "+name)
}
