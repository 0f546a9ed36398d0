package wal

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// Test file systems. Most tests run on Pebble's in-memory vfs.MemFS
// (fast: its syncs cost nothing); power-loss tests on internal/crashfs;
// faults are Pebble errorfs injectors (errors, slow or held syncs, a
// failing preparation), plus partialWriteFS for what errorfs cannot do:
// a write that lands only in part.

// testDir is the log directory on an in-memory file system.
const testDir = "wal"

var errInjected = errors.New("injected fault")

// memOpts are testOpts on a fresh in-memory file system.
func memOpts() Options {
	o := testOpts()
	o.FS = vfs.NewMem()
	return o
}

// readFile returns the content of name on fsys.
func readFile(t testing.TB, fsys vfs.FS, name string) []byte {
	t.Helper()
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFile replaces name on fsys with data.
func writeFile(t testing.TB, fsys vfs.FS, name string, data []byte) {
	t.Helper()
	f, err := fsys.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	// A copy: vfs.File.Write may scribble on its argument (MemFS does in
	// race and invariants builds).
	if _, err := f.Write(bytes.Clone(data)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// exists reports whether name exists on fsys.
func exists(fsys vfs.FS, name string) bool {
	_, err := fsys.Stat(name)
	return err == nil
}

// dirNames lists dir's entries on fsys, sorted.
func dirNames(t testing.TB, fsys vfs.FS, dir string) []string {
	t.Helper()
	names, err := listDir(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// segmentPaths lists the segment files of dir on fsys, oldest first.
func segmentPaths(t testing.TB, fsys vfs.FS, dir string) []string {
	t.Helper()
	var out []string
	for _, n := range dirNames(t, fsys, dir) {
		if _, ok := parseSegmentBase(n); ok {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}

// copyDir copies the files of src into dst (both on fsys).
func copyDir(t testing.TB, fsys vfs.FS, src, dst string) {
	t.Helper()
	if err := fsys.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range dirNames(t, fsys, src) {
		if name == lockFileName {
			continue
		}
		writeFile(t, fsys, filepath.Join(dst, name), readFile(t, fsys, filepath.Join(src, name)))
	}
}

// injector is a switchable errorfs.Injector: fn (nil: no fault) decides
// each operation's error and may block (a slow or held sync). It also
// counts WriteAt calls, so a test can check that a failed log writes
// nothing more.
type injector struct {
	mu     sync.Mutex
	fn     func(errorfs.Op) error
	writes atomic.Int64
}

// set replaces the fault function.
func (in *injector) set(fn func(errorfs.Op) error) {
	in.mu.Lock()
	in.fn = fn
	in.mu.Unlock()
}

// MaybeError implements errorfs.Injector.
func (in *injector) MaybeError(op errorfs.Op) error {
	if op.Kind == errorfs.OpFileWriteAt {
		in.writes.Add(1)
	}
	in.mu.Lock()
	fn := in.fn
	in.mu.Unlock()
	if fn == nil {
		return nil
	}
	return fn(op)
}

func (in *injector) String() string { return "wal test injector" }

// failOn fails every operation of the given kind with err.
func failOn(kind errorfs.OpKind, err error) func(errorfs.Op) error {
	return func(op errorfs.Op) error {
		if op.Kind == kind {
			return err
		}
		return nil
	}
}

// failPrep makes creating the prepared segment fail, so that every roll
// falls back to a fallocated segment.
func failPrep(op errorfs.Op) error {
	if op.Kind == errorfs.OpCreate && filepath.Base(op.Path) == preparedSegmentName {
		return errInjected
	}
	return nil
}

// isSegmentSync says whether op is the writer's fdatasync of a segment:
// the preparer syncs its file with Sync, recovery is not running.
func isSegmentSync(op errorfs.Op) bool { return op.Kind == errorfs.OpFileSyncData }

// faultOpts are memOpts on an errorfs-wrapped in-memory file system driven
// by the returned injector.
func faultOpts() (Options, *injector) {
	in := &injector{}
	o := testOpts()
	o.FS = errorfs.Wrap(vfs.NewMem(), in)
	return o, in
}

// partialWriteFS is a vfs.FS whose files' WriteAt, while fault is set,
// write only the first n bytes fault returns and report its error: a short
// write, or a disk that fills up in the middle of a write. (errorfs fails
// an operation before it runs; it cannot let part of it happen.)
type partialWriteFS struct {
	vfs.FS
	mu    sync.Mutex
	fault func(p []byte) (n int, err error)
}

// setFault replaces the write fault (nil: none).
func (fs *partialWriteFS) setFault(f func(p []byte) (int, error)) {
	fs.mu.Lock()
	fs.fault = f
	fs.mu.Unlock()
}

func (fs *partialWriteFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &partialWriteFile{File: f, fs: fs}, nil
}

func (fs *partialWriteFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.Create(name, c))
}

func (fs *partialWriteFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenReadWrite(name, c, opts...))
}

type partialWriteFile struct {
	vfs.File
	fs *partialWriteFS
}

func (f *partialWriteFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	fault := f.fs.fault
	f.fs.mu.Unlock()
	if fault == nil {
		return f.File.WriteAt(p, off)
	}
	n, ferr := fault(p)
	n = min(n, len(p))
	if n > 0 {
		if _, err := f.File.WriteAt(p[:n], off); err != nil {
			return 0, err
		}
	}
	return n, ferr
}
