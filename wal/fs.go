package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Every disk operation of the log goes through a Pebble vfs.FS
// (Options.FS): production uses vfs.Default, tests wrap it or an in-memory
// one (internal/crashfs, vfs/errorfs) to inject errors, torn writes and slow
// syncs. The helpers below are the few compound operations the log needs
// that vfs.FS does not offer directly.
//
// Rejected: keeping the log's own FS interface beside vfs.FS. The node's
// other durable state (the state machine's Pebble store) already goes
// through vfs.FS, and one seam lets one crash test cover both.

// lockFileName is the lock file in the log directory.
const lockFileName = "LOCK"

// writeCategory labels the log's writes for file systems that account
// them by category.
const writeCategory vfs.DiskWriteCategory = "raftpipe-wal"

// listDir returns the base names of dir's entries, sorted (vfs.FS.List
// promises no order).
func listDir(fsys vfs.FS, dir string) ([]string, error) {
	names, err := fsys.List(dir)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// createNew creates name for reading and writing and fails if it exists.
// vfs.FS.Create replaces an existing file; the log must never replace a
// segment (it would silently drop log data), so it checks first. The check
// and the create are not atomic, which is fine: the directory is locked and
// one goroutine at a time creates each name.
func createNew(fsys vfs.FS, name string) (vfs.File, error) {
	if _, err := fsys.Stat(name); err == nil {
		return nil, fmt.Errorf("create %s: %w", name, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	return fsys.Create(name, writeCategory)
}

// segmentName is the file name of segment seq.
func segmentName(dir string, seq uint64) string {
	return filepath.Join(dir, segmentBase(seq))
}

// segmentBase is the base name of segment seq: zero-padded so that names
// sort in seq order.
func segmentBase(seq uint64) string {
	const digits = "0123456789"
	var b [20 + len(segmentExt)]byte
	for i := 19; i >= 0; i-- {
		b[i] = digits[seq%10]
		seq /= 10
	}
	copy(b[20:], segmentExt)
	return string(b[:])
}

// segmentExt is the suffix of segment files; other files in the directory
// are ignored.
const segmentExt = ".wal"

// parseSegmentBase returns the seq of a segment file's base name.
func parseSegmentBase(name string) (uint64, bool) {
	if len(name) != 20+len(segmentExt) || name[20:] != segmentExt {
		return 0, false
	}
	var seq uint64
	for i := 0; i < 20; i++ {
		c := name[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		seq = seq*10 + uint64(c-'0')
	}
	return seq, true
}
