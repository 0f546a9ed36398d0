package wal

import (
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"golang.org/x/sys/unix"
)

// BenchmarkAppendMemFS is BenchmarkAppend's workload (128-byte entries) on
// an in-memory file system, where a sync costs nothing, and without the
// background zero-filling: what is left is the log's own work per Append
// (copy, encoding and CRC, the queue, the writer's hand-off and its
// write). Besides ns/op it reports cpu-ns/op, the process's user+system
// CPU per Append, which waiting for a core on a loaded machine does not
// inflate as much as it does wall time. It guards the append path's cost:
// compare it before and after a change there.
func BenchmarkAppendMemFS(b *testing.B) {
	for _, n := range []int{1, 256} {
		b.Run(fmt.Sprintf("appenders=%d/size=128", n), func(b *testing.B) {
			in := &injector{}
			in.set(failPrep)
			o := Options{Logger: quietLogger, FS: errorfs.Wrap(vfs.NewMem(), in), SegmentBytes: 8 << 20}
			var r0, r1 unix.Rusage
			if err := unix.Getrusage(unix.RUSAGE_SELF, &r0); err != nil {
				b.Fatal(err)
			}
			benchAppend(b, n, 128, o, false)
			if err := unix.Getrusage(unix.RUSAGE_SELF, &r1); err != nil {
				b.Fatal(err)
			}
			cpu := time.Duration(r1.Utime.Nano()+r1.Stime.Nano()-r0.Utime.Nano()-r0.Stime.Nano()) * time.Nanosecond
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
