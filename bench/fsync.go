package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// FsyncResult is the outcome of MeasureFdatasync. Latencies are per
// write+fdatasync pair.
type FsyncResult struct {
	// Dir is the directory measured (its file system and device).
	Dir string `json:"dir"`
	// Syncs is the number of write+fdatasync pairs timed.
	Syncs int `json:"syncs"`
	// WriteBytes is the size of each write.
	WriteBytes int `json:"write_bytes"`
	// Method names the sync call used ("fdatasync", or "fsync" where the
	// platform lacks fdatasync).
	Method string `json:"method"`
	// P50Us, P99Us, MaxUs and MeanUs summarise the timed pairs, µs.
	P50Us  int64   `json:"p50_us"`
	P99Us  int64   `json:"p99_us"`
	MaxUs  int64   `json:"max_us"`
	MeanUs float64 `json:"mean_us"`
}

// String formats the result on one line.
func (r FsyncResult) String() string {
	return fmt.Sprintf("%s: %d x (%d B write + %s): p50 %s, p99 %s, max %s, mean %.0fµs",
		r.Dir, r.Syncs, r.WriteBytes, r.Method, fmtUs(r.P50Us), fmtUs(r.P99Us), fmtUs(r.MaxUs), r.MeanUs)
}

// Bounds for MeasureFdatasync.
const (
	// maxFsyncSamples bounds n so the preallocated file stays small.
	maxFsyncSamples = 1_000_000
	// maxFsyncWriteBytes bounds one write.
	maxFsyncWriteBytes = 1 << 20
)

// MeasureFdatasync measures the disk's durable-write latency the way a WAL
// sees it: it preallocates a file in dir by writing zeros and syncing (so
// the timed syncs flush data, not block allocation), then n times writes
// writeBytes at the next offset and calls fdatasync, timing each pair. The
// file is removed afterwards.
func MeasureFdatasync(dir string, n, writeBytes int) (FsyncResult, error) {
	res := FsyncResult{Dir: dir, Syncs: n, WriteBytes: writeBytes, Method: syncMethod}
	if n < 1 || n > maxFsyncSamples || writeBytes < 1 || writeBytes > maxFsyncWriteBytes {
		return res, fmt.Errorf("%w: fdatasync n %d (1..%d) or write %d B (1..%d)",
			ErrInvalidConfig, n, maxFsyncSamples, writeBytes, maxFsyncWriteBytes)
	}
	f, err := os.CreateTemp(dir, "fsynclat-*.dat")
	if err != nil {
		return res, fmt.Errorf("bench: fsync probe file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	res.Dir, _ = filepath.Abs(dir)

	buf := make([]byte, writeBytes)
	for i := 0; i < n; i++ {
		if _, err := f.Write(buf); err != nil {
			return res, fmt.Errorf("bench: preallocate %s: %w", f.Name(), err)
		}
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("bench: sync %s: %w", f.Name(), err)
	}
	h := hdr.New(histMinMicros, histMaxMicros, histSigFigs)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i)*int64(writeBytes)); err != nil {
			return res, fmt.Errorf("bench: write %s: %w", f.Name(), err)
		}
		if err := datasync(f); err != nil {
			return res, fmt.Errorf("bench: %s %s: %w", syncMethod, f.Name(), err)
		}
		us := max(time.Since(start).Microseconds(), histMinMicros)
		_ = h.RecordValue(min(us, histMaxMicros))
	}
	res.P50Us, res.P99Us, res.MaxUs = h.ValueAtQuantile(50), h.ValueAtQuantile(99), h.Max()
	res.MeanUs = h.Mean()
	return res, nil
}
