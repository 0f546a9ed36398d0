package bench

import (
	"context"
	"math"
	"slices"
	"sort"
	"time"
)

// LagSample is one observation of replication progress, taken from the
// leader (or assembled from all nodes) at one moment.
type LagSample struct {
	// LeaderLast is the leader's last log index.
	LeaderLast uint64
	// LeaderCommit is the leader's commit index.
	LeaderCommit uint64
	// Followers maps follower node ID to its progress index: the leader's
	// match index for it, or the follower's own applied index, whichever
	// the source can observe. The report says which in Mode or notes.
	Followers map[uint64]uint64
}

// LagSource reports replication progress. SampleLag is called every
// lagSampleInterval from one goroutine; it should be cheap.
type LagSource interface {
	SampleLag(ctx context.Context) (LagSample, error)
}

const (
	// lagSampleInterval is the polling period of the LagSource.
	lagSampleInterval = 100 * time.Millisecond
	// lagSampleTimeout bounds one SampleLag call.
	lagSampleTimeout = time.Second
	// lagHistorySamples bounds the (time, leader last index) history used to
	// convert an index into a time lag: 3000 samples = 5 minutes at 100 ms.
	// A follower further behind than that reports the history's span, marked
	// as a lower bound (Report.FollowerLagSaturated).
	lagHistorySamples = 3000
	// maxLagSamples bounds the stored lag series: 1 hour at 100 ms. Samples
	// past it are counted in LagSamplesDropped.
	maxLagSamples = 36_000
)

// histPoint is one entry of the leader-index history. last is the running
// maximum of the leader's last index, so the history is non-decreasing and
// can be binary-searched even across a leader change that truncates a log.
type histPoint struct {
	// at is the sample time from the run's start.
	at time.Duration
	// last is the running maximum of the leader's last index at that time.
	last uint64
}

// lagHistory is a bounded ring of histPoints, oldest first in logical order.
type lagHistory struct {
	// ring holds the points; its length is the capacity.
	ring []histPoint
	// head is the ring position of the oldest point; n the number held.
	head, n int
}

func newLagHistory(capacity int) *lagHistory {
	if capacity < 2 {
		panic("bench: lag history capacity must be at least 2")
	}
	return &lagHistory{ring: make([]histPoint, capacity)}
}

// at returns the i-th oldest point.
func (h *lagHistory) at(i int) histPoint { return h.ring[(h.head+i)%len(h.ring)] }

// add appends a point, evicting the oldest when full. Times must not go
// backwards; a smaller last index is replaced by the running maximum.
func (h *lagHistory) add(at time.Duration, last uint64) {
	if h.n > 0 {
		prev := h.at(h.n - 1)
		if at < prev.at {
			panic("bench: lag history time went backwards")
		}
		last = max(last, prev.last)
	}
	if h.n == len(h.ring) {
		h.head = (h.head + 1) % len(h.ring)
		h.n--
	}
	h.ring[(h.head+h.n)%len(h.ring)] = histPoint{at, last}
	h.n++
}

// timeLag answers: at time now (the newest point's time), how long ago did
// the leader's last index first reach index? Zero if the newest point is at
// or below index (the follower is caught up). Between two samples the
// crossing time is linearly interpolated, assuming a steady append rate, so
// sub-interval lags are estimated rather than rounded to 100 ms. If index
// was already reached at the oldest point held, the lag is at least
// now-oldest and saturated is true.
func (h *lagHistory) timeLag(index uint64) (lag time.Duration, saturated bool) {
	if h.n == 0 {
		return 0, false
	}
	newest := h.at(h.n - 1)
	if index >= newest.last {
		return 0, false
	}
	// First point whose last >= index. Exists: newest.last > index.
	j := sort.Search(h.n, func(i int) bool { return h.at(i).last >= index })
	if j == 0 {
		return newest.at - h.at(0).at, true
	}
	a, b := h.at(j-1), h.at(j)
	frac := float64(index-a.last) / float64(b.last-a.last)
	cross := a.at + time.Duration(frac*float64(b.at-a.at))
	return newest.at - cross, false
}

// FollowerLagPoint is one follower's state in one lag sample.
type FollowerLagPoint struct {
	// ID is the follower's node ID.
	ID uint64 `json:"id"`
	// Index is the follower's match/applied index.
	Index uint64 `json:"index"`
	// BehindLast is LeaderLast - Index (0 if ahead).
	BehindLast uint64 `json:"behind_last_entries"`
	// BehindCommit is LeaderCommit - Index (0 if ahead).
	BehindCommit uint64 `json:"behind_commit_entries"`
	// TimeLagMs is how long ago the leader's last index reached Index.
	TimeLagMs float64 `json:"time_lag_ms"`
}

// LagPoint is one sample of the lag time series.
type LagPoint struct {
	// TMs is the sample time in ms since the measurement window opened.
	TMs float64 `json:"t_ms"`
	// LeaderLast and LeaderCommit are the sample's leader indexes.
	LeaderLast   uint64 `json:"leader_last"`
	LeaderCommit uint64 `json:"leader_commit"`
	// Followers are in ID order.
	Followers []FollowerLagPoint `json:"followers"`
}

// lagPoint computes one series point from a sample; hist must already hold
// the sample's leader index. Followers are listed in ID order.
func lagPoint(t time.Duration, s LagSample, hist *lagHistory) (LagPoint, bool) {
	p := LagPoint{TMs: float64(t) / 1e6, LeaderLast: s.LeaderLast, LeaderCommit: s.LeaderCommit}
	sat := false
	for id, idx := range s.Followers {
		tl, s2 := hist.timeLag(idx)
		sat = sat || s2
		p.Followers = append(p.Followers, FollowerLagPoint{
			ID: id, Index: idx,
			BehindLast:   subFloor(s.LeaderLast, idx),
			BehindCommit: subFloor(s.LeaderCommit, idx),
			TimeLagMs:    float64(tl) / 1e6,
		})
	}
	slices.SortFunc(p.Followers, func(a, b FollowerLagPoint) int {
		if a.ID < b.ID {
			return -1
		} else if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return p, sat
}

func subFloor(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return 0
}

// lagRecorder accumulates lag samples. Owned by the sampling goroutine
// until Run has joined it.
type lagRecorder struct {
	// hist converts indexes to time lags; it also holds warm-up samples.
	hist *lagHistory
	// series is the window's samples. Invariant: len <= maxLagSamples.
	series []LagPoint
	// dropped counts window samples past maxLagSamples.
	dropped uint64
	// errors counts failed SampleLag calls in the window.
	errors uint64
	// saturated records that some time lag was a lower bound.
	saturated bool
}

func newLagRecorder() *lagRecorder {
	return &lagRecorder{hist: newLagHistory(lagHistorySamples)}
}

// observe feeds one sample taken at offset at from the run start; it is
// added to the series only if it falls in the window (at >= windowStart).
func (lr *lagRecorder) observe(at, windowStart time.Duration, s LagSample) {
	lr.hist.add(at, s.LeaderLast)
	if at < windowStart {
		return
	}
	if len(lr.series) >= maxLagSamples {
		lr.dropped++
		return
	}
	p, sat := lagPoint(at-windowStart, s, lr.hist)
	lr.saturated = lr.saturated || sat
	lr.series = append(lr.series, p)
}

// sampleLag polls src every lagSampleInterval until ctx is done or the
// window closes.
func (rs *runState) sampleLag(ctx context.Context, src LagSource, lr *lagRecorder) {
	tick := time.NewTicker(lagSampleInterval)
	defer tick.Stop()
	warm := rs.measureStart.Sub(rs.start)
	for {
		sctx, cancel := context.WithTimeout(ctx, lagSampleTimeout)
		s, err := src.SampleLag(sctx)
		cancel()
		now := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !now.Before(rs.measureStart) {
				lr.errors++
			}
		} else {
			lr.observe(now.Sub(rs.start), warm, s)
		}
		if !now.Before(rs.measureEnd) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// FollowerLagStats summarises one follower's lag over the window.
type FollowerLagStats struct {
	// ID is the follower's node ID (0 for the pooled statistics).
	ID uint64 `json:"id"`
	// Samples is how many lag samples the statistics cover.
	Samples int `json:"samples"`
	// BehindLast*: entries behind the leader's last index (replication
	// backlog), nearest-rank p50, p99 and max over the samples.
	BehindLastP50 uint64 `json:"behind_last_p50_entries"`
	BehindLastP99 uint64 `json:"behind_last_p99_entries"`
	BehindLastMax uint64 `json:"behind_last_max_entries"`
	// BehindCommit*: entries behind the leader's commit index (staleness
	// of a read served by this follower).
	BehindCommitP50 uint64 `json:"behind_commit_p50_entries"`
	BehindCommitP99 uint64 `json:"behind_commit_p99_entries"`
	BehindCommitMax uint64 `json:"behind_commit_max_entries"`
	// TimeLag*: how long ago the leader had the follower's index, ms.
	TimeLagP50Ms float64 `json:"time_lag_p50_ms"`
	TimeLagP99Ms float64 `json:"time_lag_p99_ms"`
	TimeLagMaxMs float64 `json:"time_lag_max_ms"`
	// behindLast, behindC and timeLag collect samples until finished.
	behindLast, behindC []uint64
	timeLag             []float64
}

// lagStats computes per-follower and overall statistics from a series.
// The overall entry has ID 0 and pools every follower's samples.
func lagStats(series []LagPoint) (per []FollowerLagStats, overall FollowerLagStats) {
	byID := map[uint64]*FollowerLagStats{}
	for _, p := range series {
		for _, f := range p.Followers {
			st := byID[f.ID]
			if st == nil {
				st = &FollowerLagStats{ID: f.ID}
				byID[f.ID] = st
			}
			for _, s := range []*FollowerLagStats{st, &overall} {
				s.behindLast = append(s.behindLast, f.BehindLast)
				s.behindC = append(s.behindC, f.BehindCommit)
				s.timeLag = append(s.timeLag, f.TimeLagMs)
			}
		}
	}
	finish := func(s *FollowerLagStats) {
		s.Samples = len(s.behindLast)
		s.BehindLastP50, s.BehindLastP99, s.BehindLastMax = pctU(s.behindLast)
		s.BehindCommitP50, s.BehindCommitP99, s.BehindCommitMax = pctU(s.behindC)
		s.TimeLagP50Ms, s.TimeLagP99Ms, s.TimeLagMaxMs = pctF(s.timeLag)
		s.behindLast, s.behindC, s.timeLag = nil, nil, nil
	}
	for _, st := range byID {
		finish(st)
		per = append(per, *st)
	}
	slices.SortFunc(per, func(a, b FollowerLagStats) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	finish(&overall)
	return per, overall
}

// rank is the nearest-rank index of quantile q (0..1) in n sorted values.
func rank(n int, q float64) int {
	i := int(math.Ceil(float64(n)*q)) - 1
	return min(max(i, 0), n-1)
}

func pctU(v []uint64) (p50, p99, mx uint64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	slices.Sort(v)
	return v[rank(len(v), 0.5)], v[rank(len(v), 0.99)], v[len(v)-1]
}

func pctF(v []float64) (p50, p99, mx float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	slices.Sort(v)
	return v[rank(len(v), 0.5)], v[rank(len(v), 0.99)], v[len(v)-1]
}

// fill writes the lag results into r.
func (lr *lagRecorder) fill(r *Report) {
	r.LagSeries = lr.series
	r.LagSamplesDropped = lr.dropped
	r.LagSampleErrors = lr.errors
	r.FollowerLagSaturated = lr.saturated
	per, all := lagStats(lr.series)
	r.FollowerLag = per
	r.FollowerLagP50Entries = all.BehindLastP50
	r.FollowerLagP99Entries = all.BehindLastP99
	r.FollowerLagMaxEntries = all.BehindLastMax
	r.FollowerLagP99CommitEntries = all.BehindCommitP99
	r.FollowerLagP50Ms = all.TimeLagP50Ms
	r.FollowerLagP99Ms = all.TimeLagP99Ms
	r.FollowerLagMaxMs = all.TimeLagMaxMs
}
