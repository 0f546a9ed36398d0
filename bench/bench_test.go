package bench

import (
	"context"
	"errors"
	"testing"
	"time"
)

// BenchmarkRecordZeroAlloc guards the per-op measurement path: two
// histogram records and a clock read, no allocation.
func BenchmarkRecordZeroAlloc(b *testing.B) {
	start := time.Now()
	rs := &runState{measureStart: start, seconds: &secondsAgg{}, classify: ErrorKind}
	w := &worker{hist: newRunHist(), sec: newSecHist(), errors: map[string]uint64{}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sched := start.Add(time.Duration(i) * time.Microsecond)
		rs.record(w, sched, sched.Add(time.Duration(i%5000)*time.Microsecond), nil)
	}
}

// BenchmarkOpGenZeroAlloc guards op generation (key, mix, payload stamp).
func BenchmarkOpGenZeroAlloc(b *testing.B) {
	for _, dist := range []string{DistUniform, DistZipfian} {
		b.Run(dist, func(b *testing.B) {
			cfg, _ := Config{Distribution: dist, WriteFraction: 0.9}.withDefaults()
			g := newOpGen(&cfg, 0)
			var op Op
			b.ReportAllocs()
			for b.Loop() {
				g.next(&op)
			}
		})
	}
}

// nopTarget answers at once; it measures the driver's own cost per op.
type nopTarget struct{}

func (nopTarget) Do(context.Context, *Op) error { return nil }

// BenchmarkClosedLoopDriverOverhead reports the driver's cost per op with
// a target that does nothing: the floor under every measured latency and
// the CPU the load generator takes from a co-located cluster.
func BenchmarkClosedLoopDriverOverhead(b *testing.B) {
	cfg := Config{Clients: 8, Inflight: 1, Duration: 200 * time.Millisecond, WriteFraction: 1}
	b.ReportAllocs()
	var ops uint64
	for b.Loop() {
		rep, err := Run(context.Background(), cfg, nopTarget{}, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		ops += rep.Ops
	}
	if ops == 0 {
		b.Fatal(errors.New("no ops"))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(ops), "ns/driver-op")
	b.ReportMetric(0, "ns/op")
}
