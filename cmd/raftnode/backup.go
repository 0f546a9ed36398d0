package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/raftpipe/raftpipe/raft/kv"
)

// Backup file format, version 1. Part of the on-disk format: a backup
// taken by one release must restore with the next. All integers are
// big-endian.
//
//	file    = header | archive | trailer
//	header  = magic "RPBACKUP" (8 bytes) | version u32 = 1
//	archive = the kv snapshot archive exactly as GET /admin/snapshot
//	          streamed it (raft/kv's package doc: its own header names the
//	          applied index, term and membership; it ends with a CRC-32C of
//	          the whole stream)
//	trailer = archive length u64 | SHA-256 of every byte before it (32 bytes)
//
// The trailer's digest covers the whole file but itself, so restore
// verifies every byte (truncation, a flipped bit, a file cut and joined)
// before it writes anything. The archive's own CRC-32C is checked once
// more when kv restores it; save checks it too before keeping the file.
// The digest is at the end so that save can write while it streams.
const (
	backupMagic   = "RPBACKUP"
	backupVersion = 1
	// backupHeaderBytes and backupTrailerBytes are the framing sizes.
	backupHeaderBytes  = len(backupMagic) + 4
	backupTrailerBytes = 8 + sha256.Size
	// minArchiveBytes is the smallest archive kv writes: magic, version,
	// index, term, meta length, header crc, end record.
	minArchiveBytes = 8 + 4 + 8 + 8 + 4 + 4 + 1 + 4 + 4
)

// errBadBackup marks a backup file that fails verification.
var errBadBackup = errors.New("not a valid raftnode backup")

// saveSnapshot streams GET /admin/snapshot from the node into path as a
// backup file. It writes a temporary file beside path, checks the
// archive's stream CRC, adds the trailer, syncs, and only then renames it
// to path, so path never holds a partial backup. path must not exist.
func (a *adminClient) saveSnapshot(ctx context.Context, path string, stdout io.Writer) error {
	if _, err := os.Lstat(path); err == nil {
		return usageErrorf("snapshot save: %s already exists; choose a new name (backups are never overwritten)", path)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/admin/snapshot", nil)
	if err != nil {
		return err
	}
	if a.token != nil {
		req.Header.Set("Authorization", "Bearer "+string(a.token))
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin request to %s failed: %w", a.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAdminResponseBytes))
		msg := strings.TrimSpace(string(body))
		if resp.StatusCode == http.StatusConflict {
			return fmt.Errorf("node at %s is not the leader: %s", a.base, msg)
		}
		return fmt.Errorf("GET /admin/snapshot: %s: %s", resp.Status, msg)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".partial-*")
	if err != nil {
		return err
	}
	kept := false
	defer func() {
		if !kept {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := newBackupWriter(tmp)
	n, err := io.Copy(bw, resp.Body)
	if err != nil {
		return fmt.Errorf("snapshot stream from %s broke after %d bytes: %w", a.base, n, err)
	}
	if err := bw.finish(); err != nil {
		return fmt.Errorf("snapshot from %s: %w", a.base, err)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	kept = true
	if err := syncDirOf(path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "saved snapshot at index %d (term %d) with %d bytes of data to %s\n", bw.info.Index, bw.info.Term, bw.archiveBytes, path)
	return nil
}

// backupWriter frames an archive as a backup file while it is written.
type backupWriter struct {
	// w is the file.
	w io.Writer
	// sum covers every byte written to w.
	sum hash.Hash
	// crc covers the archive except its last 4 bytes (held in tail), which
	// are the archive's stream CRC.
	crc  uint32
	tail []byte
	// head collects the first bytes, to read the archive header from.
	head []byte
	// archiveBytes counts the archive bytes written; err is the first
	// write error.
	archiveBytes int64
	err          error
	// info is the archive header, set by finish.
	info kv.SnapshotInfo
}

// maxHeadBytes bounds what backupWriter keeps to parse the archive
// header, which is a few dozen bytes.
const maxHeadBytes = 1 << 20

func newBackupWriter(w io.Writer) *backupWriter {
	bw := &backupWriter{w: w, sum: sha256.New()}
	hdr := binary.BigEndian.AppendUint32([]byte(backupMagic), backupVersion)
	bw.raw(hdr)
	return bw
}

// raw writes p to the file and the digest.
func (bw *backupWriter) raw(p []byte) {
	if bw.err != nil {
		return
	}
	if _, err := bw.w.Write(p); err != nil {
		bw.err = err
		return
	}
	bw.sum.Write(p)
}

// Write takes archive bytes.
func (bw *backupWriter) Write(p []byte) (int, error) {
	bw.raw(p)
	if bw.err != nil {
		return 0, bw.err
	}
	bw.archiveBytes += int64(len(p))
	if room := maxHeadBytes - len(bw.head); room > 0 {
		bw.head = append(bw.head, p[:min(room, len(p))]...)
	}
	if len(p) >= 4 {
		// The held bytes are not the last four any more.
		bw.crc = crc32.Update(bw.crc, castagnoliTable, bw.tail)
		bw.crc = crc32.Update(bw.crc, castagnoliTable, p[:len(p)-4])
		bw.tail = append(bw.tail[:0], p[len(p)-4:]...)
		return len(p), nil
	}
	all := append(bw.tail, p...) // at most 7 bytes
	if len(all) > 4 {
		bw.crc = crc32.Update(bw.crc, castagnoliTable, all[:len(all)-4])
		all = all[len(all)-4:]
	}
	bw.tail = append(bw.tail[:0], all...)
	return len(p), nil
}

// finish checks the archive (its header, and its stream CRC against the
// bytes received) and writes the trailer.
func (bw *backupWriter) finish() error {
	if bw.err != nil {
		return bw.err
	}
	if bw.archiveBytes < minArchiveBytes {
		return fmt.Errorf("%w: the archive is only %d bytes", errBadBackup, bw.archiveBytes)
	}
	if got := binary.BigEndian.Uint32(bw.tail); got != bw.crc {
		return fmt.Errorf("%w: the archive's stream CRC does not match (stored %#x, computed %#x): the stream was cut or damaged", errBadBackup, got, bw.crc)
	}
	info, err := kv.ReadSnapshotInfo(bytes.NewReader(bw.head))
	if err != nil {
		return fmt.Errorf("%w: %w", errBadBackup, err)
	}
	bw.info = info
	bw.raw(binary.BigEndian.AppendUint64(nil, uint64(bw.archiveBytes)))
	if bw.err == nil {
		_, bw.err = bw.w.Write(bw.sum.Sum(nil))
	}
	return bw.err
}

// castagnoliTable is CRC-32C, the archive's checksum.
var castagnoliTable = crc32.MakeTable(crc32.Castagnoli)

// verifyBackup checks a backup file's framing and digest (reading it
// whole) and returns the archive inside it and the archive's header.
func verifyBackup(f *os.File) (*io.SectionReader, kv.SnapshotInfo, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, kv.SnapshotInfo{}, err
	}
	size := st.Size()
	if size < int64(backupHeaderBytes+minArchiveBytes+backupTrailerBytes) {
		return nil, kv.SnapshotInfo{}, fmt.Errorf("%w: %d bytes is too short", errBadBackup, size)
	}
	hdr := make([]byte, backupHeaderBytes)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, kv.SnapshotInfo{}, err
	}
	if string(hdr[:len(backupMagic)]) != backupMagic {
		return nil, kv.SnapshotInfo{}, fmt.Errorf("%w: it does not start with %q", errBadBackup, backupMagic)
	}
	if v := binary.BigEndian.Uint32(hdr[len(backupMagic):]); v != backupVersion {
		return nil, kv.SnapshotInfo{}, fmt.Errorf("%w: format version %d, this raftnode reads version %d", errBadBackup, v, backupVersion)
	}
	trailer := make([]byte, backupTrailerBytes)
	if _, err := f.ReadAt(trailer, size-int64(backupTrailerBytes)); err != nil {
		return nil, kv.SnapshotInfo{}, err
	}
	archiveBytes := int64(binary.BigEndian.Uint64(trailer))
	if archiveBytes != size-int64(backupHeaderBytes+backupTrailerBytes) {
		return nil, kv.SnapshotInfo{}, fmt.Errorf("%w: the trailer says %d bytes of archive, the file holds %d (truncated or joined)",
			errBadBackup, archiveBytes, size-int64(backupHeaderBytes+backupTrailerBytes))
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, io.NewSectionReader(f, 0, size-sha256.Size)); err != nil {
		return nil, kv.SnapshotInfo{}, err
	}
	if !bytes.Equal(sum.Sum(nil), trailer[8:]) {
		return nil, kv.SnapshotInfo{}, fmt.Errorf("%w: SHA-256 mismatch: the file is damaged", errBadBackup)
	}
	archive := io.NewSectionReader(f, int64(backupHeaderBytes), archiveBytes)
	info, err := kv.ReadSnapshotInfo(io.NewSectionReader(f, int64(backupHeaderBytes), archiveBytes))
	if err != nil {
		return nil, kv.SnapshotInfo{}, fmt.Errorf("%w: %w", errBadBackup, err)
	}
	return archive, info, nil
}

// syncDirOf fsyncs the directory holding path, so a rename into it is
// durable.
func syncDirOf(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
