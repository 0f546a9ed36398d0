package kv

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
func dbPath(dir string, n uint64) string { return filepath.Join(dir, dbDirName(n)) }

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
func readCurrent(dir string) (n uint64, ok bool, err error) {
	path := filepath.Join(dir, currentName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("kv: reading %s: %w", path, err)
	}
	defer f.Close()
	buf := make([]byte, maxCurrentBytes)
	m, err := f.Read(buf)
	if err != nil && m == 0 {
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
// CURRENT.tmp, fsync it, rename it over CURRENT, fsync dir. hook (may be
// nil) is the crash-injection point used by tests; it is called after each
// step and a true return stops at once, as a crash would.
func writeCurrent(dir string, n uint64, hook func(restoreStep) bool) error {
	tmp := filepath.Join(dir, currentTmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("kv: writing %s: %w", tmp, err)
	}
	if _, err := f.WriteString(dbDirName(n) + "\n"); err != nil {
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
	if hook != nil && hook(stepCurrentTmpWritten) {
		return errSimulatedCrash
	}
	if err := os.Rename(tmp, filepath.Join(dir, currentName)); err != nil {
		return fmt.Errorf("kv: installing %s: %w", currentName, err)
	}
	if hook != nil && hook(stepCurrentRenamed) {
		return errSimulatedCrash
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if hook != nil && hook(stepDirSynced) {
		return errSimulatedCrash
	}
	return nil
}

// removeLeftovers deletes from dir every database directory other than
// db-<active> (active 0: all of them), CURRENT.tmp, and every checkpoint
// directory: what an interrupted Restore or WriteSnapshot leaves behind.
// Names the store does not use are left alone.
func removeLeftovers(dir string, active uint64) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("kv: listing %s: %w", dir, err)
	}
	removed := false
	for _, e := range entries {
		name := e.Name()
		n, isDB := parseDBDirName(name)
		stale := (isDB && n != active) ||
			name == currentTmpName ||
			(strings.HasPrefix(name, snapDirPrefix) && strings.HasSuffix(name, tmpSuffix))
		if !stale {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("kv: removing leftover %s: %w", name, err)
		}
		removed = true
	}
	if removed {
		return syncDir(dir)
	}
	return nil
}

// syncDir fsyncs a directory so that entries created, renamed or removed in
// it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("kv: opening %s to sync: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("kv: syncing directory %s: %w", dir, err)
	}
	return nil
}
