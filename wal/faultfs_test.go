package wal

import (
	"errors"
	"path/filepath"
	"sync"
	"syscall"
)

// faultFS wraps the OS file system with switchable faults. The zero value
// injects nothing. All knobs are guarded by mu.
type faultFS struct {
	OSFS
	mu sync.Mutex
	// writeFault, if set, decides the outcome of the next segment writes:
	// it returns how many bytes to really write and the error to report.
	writeFault func(p []byte) (n int, err error)
	// syncErr, if set, is returned by every file Sync (after not syncing).
	syncErr error
	// noSync makes Sync a no-op that succeeds (fast tests that do not
	// test durability).
	noSync bool
	// syncEntered, if set, receives a value when a Sync starts; the Sync
	// then waits for a value on syncRelease. Together they hold a sync
	// "in progress" for as long as a test needs.
	syncEntered, syncRelease chan struct{}
	// writes counts WriteAt calls (the preparer's zero writes included).
	writes int
	// failPrep makes creating the prepared segment fail, so that every
	// roll falls back to a fallocated segment.
	failPrep bool
	// open maps each open file to its current path (Rename moves it), so
	// that the sync gate can tell segments from the prepared file.
	open map[*faultFile]string
}

var errInjected = errors.New("injected fault")

// set runs f with mu held, to change the knobs.
func (fs *faultFS) set(f func(*faultFS)) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f(fs)
}

func (fs *faultFS) wrap(name string, f File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	ff := &faultFile{File: f, fs: fs}
	fs.mu.Lock()
	if fs.open == nil {
		fs.open = map[*faultFile]string{}
	}
	fs.open[ff] = name
	fs.mu.Unlock()
	return ff, nil
}

func (fs *faultFS) Create(name string) (File, error) {
	fs.mu.Lock()
	fail := fs.failPrep && filepath.Base(name) == preparedSegmentName
	fs.mu.Unlock()
	if fail {
		return nil, errInjected
	}
	f, err := fs.OSFS.Create(name)
	return fs.wrap(name, f, err)
}

func (fs *faultFS) Open(name string) (File, error) {
	f, err := fs.OSFS.Open(name)
	return fs.wrap(name, f, err)
}

func (fs *faultFS) OpenReadWrite(name string) (File, error) {
	f, err := fs.OSFS.OpenReadWrite(name)
	return fs.wrap(name, f, err)
}

// Rename moves the open handles' paths along with the name.
func (fs *faultFS) Rename(oldname, newname string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if err := fs.OSFS.Rename(oldname, newname); err != nil {
		return err
	}
	for f, p := range fs.open {
		if p == oldname {
			fs.open[f] = newname
		}
	}
	return nil
}

// SyncDir is skipped under noSync.
func (fs *faultFS) SyncDir(dir string) error {
	fs.mu.Lock()
	skip := fs.noSync
	fs.mu.Unlock()
	if skip {
		return nil
	}
	return fs.OSFS.SyncDir(dir)
}

type faultFile struct {
	File
	fs *faultFS
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	f.fs.writes++
	wf := f.fs.writeFault
	f.fs.mu.Unlock()
	if wf == nil {
		return f.File.WriteAt(p, off)
	}
	n, ferr := wf(p)
	if n > len(p) {
		n = len(p)
	}
	if n > 0 {
		if _, err := f.File.WriteAt(p[:n], off); err != nil {
			return 0, err
		}
	}
	return n, ferr
}

func (f *faultFile) Close() error {
	f.fs.mu.Lock()
	delete(f.fs.open, f)
	f.fs.mu.Unlock()
	return f.File.Close()
}

// Sync passes the gate only for segment files: the preparer's syncs of the
// prepared file run on another goroutine and must not take the writer's turn.
func (f *faultFile) Sync() error {
	f.fs.mu.Lock()
	entered, release := f.fs.syncEntered, f.fs.syncRelease
	_, isSegment := parseSegmentBase(filepath.Base(f.fs.open[f]))
	f.fs.mu.Unlock()
	if entered != nil && isSegment {
		entered <- struct{}{}
		<-release
	}
	// Read the outcome after the gate, so a test can arm it meanwhile.
	f.fs.mu.Lock()
	serr, skip := f.fs.syncErr, f.fs.noSync
	f.fs.mu.Unlock()
	if serr != nil {
		return serr
	}
	if skip {
		return nil
	}
	return f.File.Sync()
}

// Write fault helpers.
func failWrites(err error) func(p []byte) (int, error) {
	return func(p []byte) (int, error) { return 0, err }
}

// shortWrites writes half of p and reports success anyway (a buggy or
// interrupted writer); the log must notice n < len(p).
func shortWrites(p []byte) (int, error) { return len(p) / 2, nil }

// enospcWrites writes half of p and then reports ENOSPC, as a full disk does.
func enospcWrites(p []byte) (int, error) { return len(p) / 2, syscall.ENOSPC }
