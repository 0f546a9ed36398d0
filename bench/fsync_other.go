//go:build !linux

package bench

import "os"

// syncMethod names the call datasync makes on this platform.
const syncMethod = "fsync"

// datasync falls back to a full fsync where fdatasync is not available.
func datasync(f *os.File) error { return f.Sync() }
