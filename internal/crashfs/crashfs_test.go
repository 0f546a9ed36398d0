package crashfs

import (
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func readAll(t *testing.T, fs vfs.FS, name string) string {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		return "<missing>"
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestImagesAtPoints checks the seam itself: points are numbered in order,
// and an image taken at a point holds what was synced before it and no
// unsynced data.
func TestImagesAtPoints(t *testing.T) {
	fs := New()
	var pts []Point
	images := map[int]*vfs.MemFS{}
	fs.OnPoint(func(p Point) {
		pts = append(pts, p)
		images[p.N] = fs.Image(false, 0)
	})
	if err := fs.MkdirAll("d", 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := fs.OpenDir("")
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Sync(); err != nil { // point 1: d exists durably
		t.Fatal(err)
	}
	root.Close()
	f, err := fs.Create("d/a", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil { // point 2
		t.Fatal(err)
	}
	dir, err := fs.OpenDir("d")
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.Sync(); err != nil { // point 3
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("two")); err != nil {
		t.Fatal(err)
	}
	if err := fs.Rename("d/a", "d/b"); err != nil { // point 4
		t.Fatal(err)
	}
	if err := dir.Sync(); err != nil { // point 5
		t.Fatal(err)
	}
	f.Close()
	dir.Close()
	if len(pts) != 5 || pts[0].Op != OpSync || pts[3].Op != OpRename || fs.Points() != 5 {
		t.Fatalf("points = %v", pts)
	}
	// Before the first sync, nothing of d/a is durable (its directory
	// entry was never synced either).
	if got := readAll(t, images[2], "d/a"); got != "<missing>" {
		t.Fatalf("image 2: d/a = %q", got)
	}
	// At the rename: "one" synced, "two" not; the rename has not happened.
	if got := readAll(t, images[4], "d/a"); got != "one" {
		t.Fatalf("image 4: d/a = %q", got)
	}
	// At the last dir sync the rename is not yet durable.
	if got := readAll(t, images[5], "d/b"); got != "<missing>" {
		t.Fatalf("image 5: d/b = %q", got)
	}
	if got := readAll(t, fs.Image(false, 0), "d/b"); got != "one" {
		t.Fatalf("final image: d/b = %q", got)
	}
}
