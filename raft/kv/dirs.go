package kv

import (
	"errors"
	"fmt"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"io"
	"io/fs"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Names inside the store directory. Part of the on-disk format.
const (
	// currentName is the file naming the active database directory.
	currentName = "CURRENT"
	// currentTmpName is where a new CURRENT is written before the rename
	// that makes it take effect.
	currentTmpName = "CURRENT.tmp"
	// dbDirPrefix starts every database directory name: db-<n>, n decimal,
	// zero-padded to dbDirDigits.
	dbDirPrefix = "db-"
	// dbDirDigits is the zero-padded width of n in db-<n>.
	dbDirDigits = 6
	// snapDirPrefix and tmpSuffix name the checkpoint directories that
	// WriteSnapshot streams from: snapshot-<seq>.tmp.
	snapDirPrefix = "snapshot-"
	tmpSuffix     = ".tmp"
	// maxCurrentBytes bounds how much of CURRENT is read.
	maxCurrentBytes = 64
)

// dbDirName is the directory name of database n.
func dbDirName(n uint64) string { return fmt.Sprintf("%s%0*d", dbDirPrefix, dbDirDigits, n) }

// dbPath is the path of database n under dir.
func dbPath(fsys vfs.FS, dir string, n uint64) string { return fsys.PathJoin(dir, dbDirName(n)) }

// parseDBDirName returns n for a name of the form db-<n>.
func parseDBDirName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, dbDirPrefix)
	if !ok || digits == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n == 0 {
		return 0, false
	}
	return n, true
}

// readCurrent returns the database number CURRENT names; ok is false if
// there is no CURRENT (a fresh store).
func readCurrent(fsys vfs.FS, dir string) (n uint64, ok bool, err error) {
	path := fsys.PathJoin(dir, currentName)
	f, err := fsys.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("kv: reading %s: %w", path, err)
	}
	defer f.Close()
	buf := make([]byte, maxCurrentBytes)
	m, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, false, fmt.Errorf("kv: reading %s: %w", path, err)
	}
	name := strings.TrimSuffix(string(buf[:m]), "\n")
	n, ok = parseDBDirName(name)
	if !ok {
		// Not a torn write (CURRENT only ever appears by rename): corruption.
		return 0, false, fmt.Errorf("kv: %s holds %q, not a database directory name", path, name)
	}
	return n, true, nil
}

// writeCurrent makes database n the active one, atomically: write
// CURRENT.tmp, fsync it, rename it over CURRENT, fsync dir. A crash before
// the rename leaves the old CURRENT (and a CURRENT.tmp that Open removes);
// after it, the new one, whose bytes were durable before the name was.
func writeCurrent(fsys vfs.FS, dir string, n uint64) error {
	tmp := fsys.PathJoin(dir, currentTmpName)
	f, err := fsys.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("kv: writing %s: %w", tmp, err)
	}
	if _, err := io.WriteString(f, dbDirName(n)+"\n"); err != nil {
		_ = f.Close()
		return fmt.Errorf("kv: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("kv: syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("kv: closing %s: %w", tmp, err)
	}
	if err := fsys.Rename(tmp, fsys.PathJoin(dir, currentName)); err != nil {
		return fmt.Errorf("kv: installing %s: %w", currentName, err)
	}
	return vfsutil.SyncDir(fsys, dir)
}

// removeLeftovers deletes from dir every database directory other than
// db-<active> (active 0: all of them), CURRENT.tmp, and every checkpoint
// directory: what an interrupted Restore or WriteSnapshot leaves behind.
// Names the store does not use are left alone.
func removeLeftovers(fsys vfs.FS, dir string, active uint64) error {
	names, err := fsys.List(dir)
	if err != nil {
		return fmt.Errorf("kv: listing %s: %w", dir, err)
	}
	removed := false
	for _, name := range names {
		n, isDB := parseDBDirName(name)
		stale := (isDB && n != active) ||
			name == currentTmpName ||
			(strings.HasPrefix(name, snapDirPrefix) && strings.HasSuffix(name, tmpSuffix))
		if !stale {
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
