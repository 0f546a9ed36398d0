package bench

import (
	"os"
	"syscall"
)

// syncMethod names the call datasync makes on this platform.
const syncMethod = "fdatasync"

// datasync flushes f's data (and only the metadata needed to read it back).
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
