package wal

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// FS is the small file-system surface the log uses. Every disk operation
// goes through it so that tests can inject write errors, short writes, sync
// errors, ENOSPC and slow syncs. Names are full paths.
type FS interface {
	// Create creates a new file for reading and writing; it fails if the
	// file exists (segments are never overwritten).
	Create(name string) (File, error)
	// Open opens an existing file read-only.
	Open(name string) (File, error)
	// OpenReadWrite opens an existing file for reading and writing (used
	// by recovery to cut a torn tail).
	OpenReadWrite(name string) (File, error)
	// Remove deletes a file.
	Remove(name string) error
	// Rename renames a file (the prepared segment into place).
	Rename(oldname, newname string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(dir string) error
	// SyncDir makes a directory's entries (creations, renames, removals) durable.
	SyncDir(dir string) error
	// ReadDir lists the names (not paths) of a directory's entries, sorted.
	ReadDir(dir string) ([]string, error)
	// Lock takes an exclusive lock on the file name (creating it), so that
	// a second process cannot open the same log; closing releases it.
	Lock(name string) (io.Closer, error)
}

// File is an open file.
type File interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes written data durable (fdatasync on the OS).
	Sync() error
	// Truncate sets the file's size.
	Truncate(size int64) error
	// Preallocate reserves size bytes so that later writes inside them do
	// not have to grow the file.
	Preallocate(size int64) error
	// Size returns the file's current size.
	Size() (int64, error)
	// Close closes the file.
	Close() error
}

// OSFS is the FS backed by the operating system.
type OSFS struct{}

// Create implements FS.
func (OSFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Open implements FS.
func (OSFS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// OpenReadWrite implements FS.
func (OSFS) OpenReadWrite(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// Rename implements FS.
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// SyncDir implements FS.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadDir implements FS.
func (OSFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// Lock implements FS with flock(2): the kernel releases the lock when the
// process dies, so a crash never leaves a stale lock behind.
func (OSFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return f, nil
}

// lockFileName is the lock file in the log directory.
const lockFileName = "LOCK"

// osFile adapts *os.File to File.
type osFile struct{ f *os.File }

func (o osFile) ReadAt(p []byte, off int64) (int, error)  { return o.f.ReadAt(p, off) }
func (o osFile) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, off) }
func (o osFile) Truncate(size int64) error                { return o.f.Truncate(size) }
func (o osFile) Close() error                             { return o.f.Close() }

// Sync uses fdatasync: a segment has its full size from the start, so its
// size metadata does not change when records are written and need not be
// flushed (and in a zero-filled segment neither does its extent map).
func (o osFile) Sync() error {
	for {
		err := unix.Fdatasync(int(o.f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: o.f.Name(), Err: err}
			}
			return nil
		}
	}
}

// Preallocate uses fallocate; where the file system does not support it,
// it falls back to extending the file (sparse).
func (o osFile) Preallocate(size int64) error {
	for {
		err := unix.Fallocate(int(o.f.Fd()), 0, 0, size)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EOPNOTSUPP, unix.ENOSYS:
			return o.f.Truncate(size)
		default:
			return &os.PathError{Op: "fallocate", Path: o.f.Name(), Err: err}
		}
	}
}

func (o osFile) Size() (int64, error) {
	st, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
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
