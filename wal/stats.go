package wal

import (
	"sync/atomic"
	"time"
)

// histBuckets is the number of fsync-latency buckets: upper bounds of
// 1µs·2^k for k = 0..histBuckets-2, and a last bucket for everything above.
// Fixed exponential buckets keep recording allocation-free and map directly
// onto a Prometheus histogram later.
const histBuckets = 24

// HistogramBucket is one bucket of a latency histogram.
type HistogramBucket struct {
	// UpperBound is the bucket's inclusive upper bound; the last bucket's is
	// the largest time.Duration (it catches everything above the others).
	UpperBound time.Duration
	// Count is the number of observations in this bucket alone (not
	// cumulative; sum the buckets up to a bound for a Prometheus "le" count).
	Count uint64
}

// Histogram is a snapshot of a fixed-bucket latency histogram.
type Histogram struct {
	// Buckets are in increasing UpperBound order.
	Buckets [histBuckets]HistogramBucket
	// Count is the number of observations.
	Count uint64
	// Sum is the total of all observations, for a mean.
	Sum time.Duration
}

// Stats is a snapshot of the log's counters.
type Stats struct {
	// Batches is the number of write+sync rounds the writer completed: the
	// number of group commits.
	Batches uint64
	// Entries is the number of entries written.
	Entries uint64
	// Bytes is the number of bytes written to segments (records and headers).
	Bytes uint64
	// Syncs is the number of fdatasync calls on segments (one per batch,
	// plus one when a batch spans a segment boundary).
	Syncs uint64
	// Calls counts the calls (appends and the synchronous operations, of
	// every group) whose records the rounds wrote: Calls/Batches is how
	// many callers one write+fsync served. With many groups it grows with
	// the number of groups writing, while Syncs does not.
	Calls uint64
	// Groups is the number of groups the log holds (group 0 included).
	Groups int
	// SyncLatency is the distribution of fdatasync latencies.
	SyncLatency Histogram
	// SegmentsZeroFilled counts new segments that were a prepared,
	// zero-filled file (the fast case: writes into them need no extent
	// conversion at fdatasync).
	SegmentsZeroFilled uint64
	// SegmentsFallocated counts new segments that were only fallocated
	// because no prepared one was ready (the first after Open, rolls faster
	// than the disk zero-fills, or failed preparations).
	SegmentsFallocated uint64
}

// counters are written by the writer goroutine and read by Stats; atomics
// keep Stats lock-free and the writer never blocked by a reader.
type counters struct {
	// batches, entries, bytes and syncs back the Stats fields of those names.
	batches, entries, bytes, syncs atomic.Uint64
	// calls backs Stats.Calls.
	calls atomic.Uint64
	// groups mirrors len(Log.mu.groupList) for Stats.Groups.
	groups atomic.Int64
	// segmentsZeroFilled and segmentsFallocated back the Stats fields of
	// those names.
	segmentsZeroFilled, segmentsFallocated atomic.Uint64
	// syncNanos is the sum of all fdatasync latencies.
	syncNanos atomic.Int64
	// buckets are the histogram's per-bucket counts.
	buckets [histBuckets]atomic.Uint64
}

// bucketBound is the upper bound of bucket i.
func bucketBound(i int) time.Duration {
	if i == histBuckets-1 {
		return time.Duration(1<<63 - 1)
	}
	return time.Microsecond << uint(i)
}

// observeSync records one fdatasync latency.
func (c *counters) observeSync(d time.Duration) {
	c.syncs.Add(1)
	c.syncNanos.Add(int64(d))
	i := 0
	for i < histBuckets-1 && d > bucketBound(i) {
		i++
	}
	c.buckets[i].Add(1)
}

// Stats returns a snapshot of the counters. The fields are read one by one,
// so a snapshot taken during a batch may be off by that batch.
func (l *Log) Stats() Stats {
	c := &l.counters
	s := Stats{
		Batches: c.batches.Load(),
		Entries: c.entries.Load(),
		Bytes:   c.bytes.Load(),
		Syncs:   c.syncs.Load(),
		Calls:   c.calls.Load(),

		SegmentsZeroFilled: c.segmentsZeroFilled.Load(),
		SegmentsFallocated: c.segmentsFallocated.Load(),
	}
	for i := range s.SyncLatency.Buckets {
		n := c.buckets[i].Load()
		s.SyncLatency.Buckets[i] = HistogramBucket{UpperBound: bucketBound(i), Count: n}
		s.SyncLatency.Count += n
	}
	s.SyncLatency.Sum = time.Duration(c.syncNanos.Load())
	s.Groups = int(c.groups.Load())
	return s
}
