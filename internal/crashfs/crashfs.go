// Package crashfs is the crash-point seam for tests: a crashable in-memory
// file system (Pebble's vfs.MemFS) wrapped so that every durability point
// (a file or directory sync, a rename) is numbered and can be observed just
// before it happens. A test runs a scenario on an FS, takes a crash image at
// point k (what a power loss at that instant could leave: everything synced,
// and either nothing else or a random part of the unsynced blocks, i.e. a
// torn last write), restarts the system under test on the image, and checks
// that it starts with every acknowledged write.
//
// Production code never imports this package: it takes a vfs.FS, and only
// tests hand it this one.
package crashfs

import (
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Op says what kind of durability point a Point is.
type Op string

const (
	// OpSync is a Sync, SyncData or SyncTo of a file or a directory.
	OpSync Op = "sync"
	// OpRename is a Rename.
	OpRename Op = "rename"
)

// Point is one durability point, reported before the operation runs.
type Point struct {
	// N numbers the points of one FS from 1.
	N int
	// Op is the kind of operation.
	Op Op
	// Path is the file, directory or rename target.
	Path string
}

func (p Point) String() string { return fmt.Sprintf("#%d %s %s", p.N, p.Op, p.Path) }

// FS is a crashable in-memory vfs.FS that numbers its durability points.
// Safe for concurrent use; the hook runs with the point counter's lock
// held, so points are reported one at a time and in order.
type FS struct {
	vfs.FS
	mem *vfs.MemFS

	mu struct {
		sync.Mutex
		n    int
		hook func(Point)
	}
}

// New returns an empty crashable FS.
func New() *FS { return Wrap(vfs.NewCrashableMem()) }

// Wrap numbers the durability points of mem, which must be crashable (from
// vfs.NewCrashableMem or a crash image).
func Wrap(mem *vfs.MemFS) *FS { return &FS{FS: mem, mem: mem} }

// OnPoint sets the function called just before each durability point runs
// (nil: none). A crash image taken inside it reflects a crash at that point.
func (f *FS) OnPoint(fn func(Point)) {
	f.mu.Lock()
	f.mu.hook = fn
	f.mu.Unlock()
}

// Points is the number of durability points so far.
func (f *FS) Points() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.n
}

// Image returns what a crash now could leave on disk. With torn false it
// holds exactly what was synced; with torn true each unsynced block and
// directory entry survives with probability 1/2 (seeded by seed), which
// tears the writes in flight.
func (f *FS) Image(torn bool, seed uint64) *vfs.MemFS {
	cfg := vfs.CrashCloneCfg{}
	if torn {
		cfg.UnsyncedDataPercent = 50
		cfg.RNG = rand.New(rand.NewPCG(seed, 0x6372617368))
	}
	return f.mem.CrashClone(cfg)
}

// point numbers one durability point and runs the hook.
func (f *FS) point(op Op, path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.n++
	if f.mu.hook != nil {
		f.mu.hook(Point{N: f.mu.n, Op: op, Path: path})
	}
}

// Create implements vfs.FS.
func (f *FS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return f.wrap(f.FS.Create(name, c))(name)
}

// Open implements vfs.FS.
func (f *FS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return f.wrap(f.FS.Open(name, opts...))(name)
}

// OpenReadWrite implements vfs.FS.
func (f *FS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return f.wrap(f.FS.OpenReadWrite(name, c, opts...))(name)
}

// OpenDir implements vfs.FS.
func (f *FS) OpenDir(name string) (vfs.File, error) {
	return f.wrap(f.FS.OpenDir(name))(name)
}

// ReuseForWrite implements vfs.FS.
func (f *FS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f.point(OpRename, newname)
	return f.wrap(f.FS.ReuseForWrite(oldname, newname, c))(newname)
}

// Rename implements vfs.FS.
func (f *FS) Rename(oldname, newname string) error {
	f.point(OpRename, newname)
	return f.FS.Rename(oldname, newname)
}

// Unwrap implements vfs.FS.
func (f *FS) Unwrap() vfs.FS { return f.mem }

func (f *FS) wrap(file vfs.File, err error) func(string) (vfs.File, error) {
	return func(name string) (vfs.File, error) {
		if err != nil {
			return nil, err
		}
		return &crashFile{File: file, fs: f, name: name}, nil
	}
}

// crashFile reports its syncs as durability points.
type crashFile struct {
	vfs.File
	fs   *FS
	name string
}

func (c *crashFile) Sync() error {
	c.fs.point(OpSync, c.name)
	return c.File.Sync()
}

func (c *crashFile) SyncData() error {
	c.fs.point(OpSync, c.name)
	return c.File.SyncData()
}

// SyncTo is a full sync here: MemFS's own SyncTo promises nothing, and
// callers that rely on it for durability follow it with Sync anyway.
func (c *crashFile) SyncTo(length int64) (bool, error) {
	c.fs.point(OpSync, c.name)
	return true, c.File.Sync()
}
