package node

import (
	"fmt"
	"sync"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// TestStageStats writes a few hundred entries through a 3-node cluster's
// leader with every 4th write timed, and checks the breakdown: every stage
// has samples, boundaries were always in order, stages of one sample add
// up to its total, no sampled write took longer on the node than its
// caller measured, and a reset empties the window.
func TestStageStats(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.StageSampleEvery = 4
		cfg.TickInterval = 50 * time.Millisecond // no spurious elections on a loaded machine
	})
	l := c.leader()
	l.StageStats(true) // drop the bootstrap's and election's window
	const writers, perWriter = 8, 40
	measured := hdr.New(1, stageHistMaxMicros, 3)
	var mu sync.Mutex
	var wg sync.WaitGroup
	ctx := ctxT(t, 60*time.Second)
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				key := fmt.Appendf(nil, "w%d-%d", w, i)
				t0 := time.Now()
				if _, err := l.Put(ctx, key, []byte("value")); err != nil {
					errs <- fmt.Errorf("put %s: %w", key, err)
					return
				}
				d := time.Since(t0).Microseconds()
				mu.Lock()
				_ = measured.RecordValue(d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err) // a leadership change mid-test; rare, not what is tested
	}

	// A sample is recorded just after its caller's callback returned, so
	// the last ones may still be on their way when the Puts have returned.
	want := int64(writers * perWriter / 4)
	var st StageStats
	waitFor(t, 10*time.Second, "every sample recorded", func() bool {
		st = l.StageStats(false)
		return st.Stage(StageTotal).Count >= want
	})
	t.Logf("%+v", st)
	for _, s := range st.Stages {
		if s.Count != want {
			t.Errorf("stage %s: %d samples, want %d", s.Name, s.Count, want)
		}
		if s.P50Us < 0 || s.P99Us < s.P50Us || s.MaxUs < s.P99Us || s.MeanUs < 0 {
			t.Errorf("stage %s: impossible distribution %+v", s.Name, s)
		}
	}
	if len(st.Stages) != int(numStages) || st.Stages[len(st.Stages)-1].Name != StageTotal {
		t.Fatalf("stages %+v: want %d ending with total", st.Stages, numStages)
	}
	if st.OutOfOrder != 0 || st.Dropped != 0 {
		t.Errorf("out of order %d, dropped %d: want 0", st.OutOfOrder, st.Dropped)
	}
	if len(st.Followers) != 2 {
		t.Errorf("follower round trips for %d followers, want 2", len(st.Followers))
	}
	for _, f := range st.Followers {
		if f.Count == 0 || f.ID == l.ID() {
			t.Errorf("follower %d: %d round trips", f.ID, f.Count)
		}
	}
	if st.WALFsync.Count == 0 || st.WALFsync.P50Us <= 0 || !st.WALFsync.Approx {
		t.Errorf("wal fsync %+v: want syncs", st.WALFsync)
	}

	// One sample: its critical-path stages add up to its total (each
	// rounded down to a µs), and the parallel ones fit inside durable.
	s := st.Slowest
	if s == nil {
		t.Fatal("no slowest sample")
	}
	sum := s.QueueUs + s.DurableUs + s.LoopUs + s.CommitToAppliedUs + s.AppliedToReplyUs
	if sum > s.TotalUs || sum < s.TotalUs-5 {
		t.Errorf("slowest sample %+v: stages add up to %dµs, total %dµs", s, sum, s.TotalUs)
	}
	if s.LeaderWALUs > s.DurableUs || s.ReplicationUs > s.DurableUs {
		t.Errorf("slowest sample %+v: a parallel stage exceeds durable", s)
	}
	// Every sampled write took no longer on the node than its caller
	// measured, so the slowest sample is no slower than the slowest write:
	// 1% for the histograms' resolution, and 1 ms because the node reads
	// the clock after the callback returned, when the caller may already
	// have read its own.
	if tot := st.Stage(StageTotal); float64(tot.MaxUs) > float64(measured.Max())*1.01+1000 {
		t.Errorf("node-side total max %dµs > measured max %dµs", tot.MaxUs, measured.Max())
	}
	// Distributions: the sum of the critical-path p50s is within a
	// generous factor of the measured p50.
	var p50s int64
	for _, name := range []string{StageQueue, StageDurable, StageLoop, StageCommitToApplied, StageAppliedToReply} {
		p50s += st.Stage(name).P50Us
	}
	if m := measured.ValueAtQuantile(50); p50s > 3*m+100 || 3*p50s+100 < m {
		t.Errorf("sum of stage p50s %dµs vs measured p50 %dµs: not within 3x", p50s, m)
	}

	if r := l.StageStats(true); r.Stage(StageTotal).Count != want {
		t.Errorf("reset returned %d samples, want the window's %d", r.Stage(StageTotal).Count, want)
	}
	after := l.StageStats(false)
	for _, s := range after.Stages {
		if s.Count != 0 {
			t.Errorf("after reset, stage %s has %d samples", s.Name, s.Count)
		}
	}
	if after.Slowest != nil { // (a slow follower's late ack may already count in Followers)
		t.Errorf("after reset: %+v", after)
	}
}

// TestStageSamplingCostsNoAllocation: an unsampled write allocates
// nothing for the breakdown; a sampled one allocates its sample.
func TestStageSamplingCostsNoAllocation(t *testing.T) {
	var tr stageTracker
	tr.init(1 << 30)
	p := &proposal{}
	if a := testing.AllocsPerRun(1000, func() { tr.maybeSample(p) }); a != 0 || p.sample != nil {
		t.Fatalf("unsampled: %v allocations per write", a)
	}
	tr.init(1)
	tr.maybeSample(p)
	if p.sample == nil {
		t.Fatal("every=1 did not sample")
	}
	var off stageTracker
	off.init(-1)
	p = &proposal{}
	for range 100 {
		off.maybeSample(p)
	}
	if p.sample != nil {
		t.Fatal("sampling off still sampled")
	}
}

// BenchmarkStageSampleDecision measures what every accepted write pays
// for the breakdown when it is not sampled: the shared counter's atomic
// add, from parallel goroutines as clients call Submit. Zero allocations.
func BenchmarkStageSampleDecision(b *testing.B) {
	var tr stageTracker
	tr.init(1 << 62)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		p := &proposal{}
		for pb.Next() {
			tr.maybeSample(p)
		}
	})
}
