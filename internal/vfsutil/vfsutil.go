// Package vfsutil holds the two durability helpers that the WAL, the
// state machine and the node runtime all need on top of a Pebble vfs.FS:
// syncing a directory, and creating a directory so that it survives a
// power loss. One copy, so that the rule for what makes a name durable is
// written once.
package vfsutil

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// SyncDir makes dir's entries (creations, renames, removals) durable:
// OpenDir, Sync, Close.
func SyncDir(fsys vfs.FS, dir string) error {
	d, err := fsys.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// MkdirAllDurable creates dir and any missing parents, and syncs the
// parent of dir and of every directory it created. A new directory's entry
// is durable only once its parent is synced: without this, a power loss
// soon after a first start could take the whole directory, and everything
// synced inside it, away. If dir already exists its parent is synced
// anyway (cheap, and it covers an earlier run that created dir but crashed
// before the parent sync).
func MkdirAllDurable(fsys vfs.FS, dir string) error {
	var created []string
	for d := dir; ; {
		if _, err := fsys.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		created = append(created, d)
		p := fsys.PathDir(d)
		if p == d {
			break
		}
		d = p
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if len(created) == 0 {
		created = []string{dir}
	}
	for i := len(created) - 1; i >= 0; i-- {
		if err := SyncDir(fsys, fsys.PathDir(created[i])); err != nil {
			return err
		}
	}
	return nil
}
