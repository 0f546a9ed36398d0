package vfsutil

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/internal/crashfs"
)

// TestMkdirAllDurableSurvivesCrash: right after MkdirAllDurable returns, a
// crash image that keeps only synced data still has the whole path; a
// plain MkdirAll's does not.
func TestMkdirAllDurableSurvivesCrash(t *testing.T) {
	fs := crashfs.New()
	if err := MkdirAllDurable(fs, "a/b/c"); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Image(false, 0).Stat("a/b/c"); err != nil {
		t.Fatalf("a/b/c lost in a crash image: %v", err)
	}
	if err := fs.MkdirAll("x/y", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Image(false, 0).Stat("x/y"); err == nil {
		t.Fatal("a plain MkdirAll survived a crash image: the test cannot tell the difference")
	}
	// Existing: no error, nothing changes.
	if err := MkdirAllDurable(fs, "a/b/c"); err != nil {
		t.Fatal(err)
	}
	var _ vfs.FS = fs
}
