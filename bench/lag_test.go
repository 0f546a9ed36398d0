package bench

import (
	"context"
	"testing"
	"time"
)

const ms = time.Millisecond

func TestLagHistoryTimeLag(t *testing.T) {
	h := newLagHistory(16)
	// Leader appends 10 entries per ms: last = 10*t.
	for i := 0; i <= 4; i++ {
		h.add(time.Duration(i)*100*ms, uint64(i)*1000)
	}
	cases := []struct {
		index     uint64
		want      time.Duration
		saturated bool
	}{
		{4000, 0, false},        // caught up with the newest sample
		{5000, 0, false},        // ahead (a racy sample): still 0
		{3000, 100 * ms, false}, // exactly one sample back
		{3500, 50 * ms, false},  // interpolated between samples
		{1, 400*ms - 100*time.Microsecond, false},
		{0, 400 * ms, true}, // reached at the oldest sample: lower bound
	}
	for _, c := range cases {
		got, sat := h.timeLag(c.index)
		if got != c.want || sat != c.saturated {
			t.Errorf("timeLag(%d) = %v,%v; want %v,%v", c.index, got, sat, c.want, c.saturated)
		}
	}
}

func TestLagHistoryBoundedAndMonotonic(t *testing.T) {
	h := newLagHistory(3)
	h.add(0, 100)
	h.add(100*ms, 200)
	h.add(200*ms, 150) // a shorter log after a leader change: running max keeps 200
	h.add(300*ms, 400) // evicts the oldest point
	if h.n != 3 {
		t.Fatalf("history holds %d points, capacity 3", h.n)
	}
	if got := h.at(0); got.at != 100*ms || got.last != 200 {
		t.Fatalf("oldest point %+v, want {100ms 200}", got)
	}
	if got := h.at(1); got.last != 200 {
		t.Fatalf("running max not kept: %+v", got)
	}
	// Index 150 was reached before the oldest retained point.
	if lag, sat := h.timeLag(150); !sat || lag != 200*ms {
		t.Fatalf("timeLag(150) = %v,%v; want 200ms lower bound", lag, sat)
	}
	// 300 is between the points at 200 ms (200) and 300 ms (400).
	if lag, sat := h.timeLag(300); sat || lag != 50*ms {
		t.Fatalf("timeLag(300) = %v,%v; want 50ms", lag, sat)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("time going backwards did not panic")
		}
	}()
	h.add(0, 500)
}

func TestLagRecorderAndStats(t *testing.T) {
	lr := newLagRecorder()
	// Warm-up sample at 0 ms feeds history only; window opens at 100 ms.
	for i := 0; i <= 10; i++ {
		last := uint64(i) * 1000
		s := LagSample{LeaderLast: last, LeaderCommit: last - min(last, 100), Followers: map[uint64]uint64{
			2: last - min(last, 500), // half a sample interval behind
			3: last - min(last, uint64(i)*10),
		}}
		lr.observe(time.Duration(i)*100*ms, 100*ms, s)
	}
	if len(lr.series) != 10 {
		t.Fatalf("series has %d points, want the 10 in the window", len(lr.series))
	}
	p := lr.series[0]
	if p.TMs != 0 || len(p.Followers) != 2 || p.Followers[0].ID != 2 || p.Followers[1].ID != 3 {
		t.Fatalf("first point %+v", p)
	}
	f2 := p.Followers[0]
	if f2.BehindLast != 500 || f2.BehindCommit != 400 || f2.TimeLagMs != 50 {
		t.Fatalf("follower 2 at first point %+v, want 500 behind, 400 behind commit, 50ms", f2)
	}
	var r Report
	lr.fill(&r)
	if len(r.FollowerLag) != 2 {
		t.Fatalf("per-follower stats %+v", r.FollowerLag)
	}
	s2, s3 := r.FollowerLag[0], r.FollowerLag[1]
	if s2.ID != 2 || s2.Samples != 10 || s2.BehindLastP50 != 500 || s2.BehindLastMax != 500 || s2.TimeLagP99Ms != 50 {
		t.Fatalf("follower 2 stats %+v", s2)
	}
	// Follower 3 is 10*i behind at sample i = 1..10: p50 = 50, p99 = max = 100.
	if s3.BehindLastP50 != 50 || s3.BehindLastP99 != 100 || s3.BehindLastMax != 100 {
		t.Fatalf("follower 3 stats %+v", s3)
	}
	if s3.BehindCommitMax != 0 {
		t.Fatalf("follower 3 is never behind commit (100 behind last): %+v", s3)
	}
	if r.FollowerLagMaxEntries != 500 || r.FollowerLagP99Ms != 50 || r.FollowerLagSaturated {
		t.Fatalf("overall lag %d entries %v ms saturated %v", r.FollowerLagMaxEntries, r.FollowerLagP99Ms, r.FollowerLagSaturated)
	}
}

func TestPercentileRank(t *testing.T) {
	v := make([]uint64, 100)
	for i := range v {
		v[i] = uint64(100 - i) // unsorted on purpose
	}
	p50, p99, mx := pctU(v)
	if p50 != 50 || p99 != 99 || mx != 100 {
		t.Fatalf("p50 %d p99 %d max %d, want 50 99 100", p50, p99, mx)
	}
	if a, b, c := pctU(nil); a != 0 || b != 0 || c != 0 {
		t.Fatal("empty input should give zeros")
	}
	if a, _, _ := pctF([]float64{3}); a != 3 {
		t.Fatal("single value")
	}
}

func TestRunSamplesLag(t *testing.T) {
	cfg := shortCfg()
	cfg.Duration = 350 * time.Millisecond
	lag := &fakeLag{perCall: 100, commitBehind: 20, behind: map[uint64]uint64{2: 50, 3: 0}}
	rep, err := Run(context.Background(), cfg, &fakeTarget{delay: 100 * time.Microsecond}, lag, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.LagSeries) == 0 || len(rep.FollowerLag) != 2 {
		t.Fatalf("lag series %d points, follower stats %+v", len(rep.LagSeries), rep.FollowerLag)
	}
	f2, f3 := rep.FollowerLag[0], rep.FollowerLag[1]
	if f2.BehindLastP50 != 50 || f2.BehindLastMax != 50 || f2.BehindCommitMax != 30 {
		t.Fatalf("follower 2: %+v", f2)
	}
	if f3.BehindLastMax != 0 || f3.TimeLagMaxMs != 0 {
		t.Fatalf("caught-up follower 3 shows lag: %+v", f3)
	}
	if f2.TimeLagP50Ms <= 0 {
		t.Fatalf("follower 2 is behind but shows no time lag: %+v", f2)
	}
	if rep.FollowerLagMaxEntries != 50 || rep.FollowerLagP99Entries != 50 {
		t.Fatalf("overall lag entries p99 %d max %d", rep.FollowerLagP99Entries, rep.FollowerLagMaxEntries)
	}
}
