package bench

import (
	"bufio"
	"context"
	"fmt"
	"time"
)

// StageSource reports a commit-latency breakdown by stage measured inside
// the system under test (raftpipe's Node.StageStats). Run uses it when its
// LagSource (or, failing that, its Target) implements it: it resets the
// breakdown when the measurement window opens, so warm-up is excluded,
// and reads it once the window's ops have returned.
type StageSource interface {
	// ResetStages starts a new window on every node.
	ResetStages(ctx context.Context) error
	// Stages reads the breakdown since the last reset.
	Stages(ctx context.Context) (*StageBreakdown, error)
}

// stageTimeout bounds one ResetStages or Stages call.
const stageTimeout = 5 * time.Second

// StageBreakdown is commit latency by stage over the window, measured on
// the nodes themselves: the leader's sampled writes, its round trip to
// each follower, and each node's own WAL fsync (a follower's fsync is on
// the follower's clock; no stage spans two nodes' clocks).
type StageBreakdown struct {
	// Leader is the node whose sampled writes Stages describes.
	Leader uint64 `json:"leader"`
	// SampleEvery: one write in SampleEvery was timed.
	SampleEvery int `json:"sample_every"`
	// Stages are in pipeline order, "total" last (names in
	// raft/node/stages.go). "leader_wal" and "replication" run in
	// parallel inside "durable"; queue + durable + loop +
	// commit_to_applied + applied_to_reply = total for each sample.
	Stages []StageStat `json:"stages"`
	// Followers are the leader's round trips to each follower.
	Followers []NodeStageStat `json:"followers,omitempty"`
	// Fsync is each node's WAL fdatasync latency (approximate: the WAL's
	// power-of-two buckets).
	Fsync []NodeStageStat `json:"fsync,omitempty"`
	// OutOfOrder and Dropped count samples the leader did not record
	// (boundaries out of order: a bug; let go before commit: leadership
	// change, overwritten entry, too many in flight).
	OutOfOrder uint64 `json:"out_of_order"`
	Dropped    uint64 `json:"dropped"`
}

// StageStat is one stage's distribution, µs.
type StageStat struct {
	Name   string  `json:"name"`
	Count  int64   `json:"count"`
	P50Us  int64   `json:"p50_us"`
	P99Us  int64   `json:"p99_us"`
	MaxUs  int64   `json:"max_us"`
	MeanUs float64 `json:"mean_us"`
	// Approx: percentiles are bucket upper bounds, not 1% values.
	Approx bool `json:"approx,omitempty"`
}

// NodeStageStat is a stage measured for or on one node.
type NodeStageStat struct {
	// Node is the node's ID; Role is "leader" or "follower" where known.
	Node uint64 `json:"node"`
	Role string `json:"role,omitempty"`
	StageStat
}

// Stage returns the named stage (zero if absent).
func (b *StageBreakdown) Stage(name string) StageStat {
	for _, s := range b.Stages {
		if s.Name == name {
			return s
		}
	}
	return StageStat{}
}

// stageSourceOf returns the run's StageSource, if any.
func stageSourceOf(t Target, lag LagSource) StageSource {
	if s, ok := lag.(StageSource); ok {
		return s
	}
	if s, ok := t.(StageSource); ok {
		return s
	}
	return nil
}

// resetStagesAt resets src when the window opens (at measureStart) and
// returns the error, or ctx's if the run ended first.
func resetStagesAt(ctx context.Context, src StageSource, at time.Time) error {
	timer := time.NewTimer(time.Until(at))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	rctx, cancel := context.WithTimeout(ctx, stageTimeout)
	defer cancel()
	return src.ResetStages(rctx)
}

// readStages reads the breakdown after the window, even if the caller
// cancelled the run (the report of what was measured still gets it).
func readStages(ctx context.Context, src StageSource) (*StageBreakdown, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stageTimeout)
	defer cancel()
	return src.Stages(rctx)
}

// writeStages writes the breakdown's lines of the text summary.
func (b *StageBreakdown) writeSummary(bw *bufio.Writer) {
	n := b.Stage("total").Count
	fmt.Fprintf(bw, "stages (leader %d, 1 in %d writes timed, %d samples):  %9s %9s %9s\n",
		b.Leader, b.SampleEvery, n, "p50", "p99", "max")
	line := func(label string, s StageStat) {
		approx := ""
		if s.Approx {
			approx = "  (bucket bounds)"
		}
		if s.Count == 0 {
			fmt.Fprintf(bw, "  %-28s  no samples\n", label)
			return
		}
		fmt.Fprintf(bw, "  %-28s  %9s %9s %9s%s\n", label, fmtUs(s.P50Us), fmtUs(s.P99Us), fmtUs(s.MaxUs), approx)
	}
	for _, s := range b.Stages {
		line(s.Name, s)
	}
	for _, f := range b.Followers {
		line(fmt.Sprintf("%s to %d", f.Name, f.Node), f.StageStat)
	}
	for _, f := range b.Fsync {
		line(fmt.Sprintf("%s on %d (%s)", f.Name, f.Node, f.Role), f.StageStat)
	}
	if b.OutOfOrder > 0 || b.Dropped > 0 {
		fmt.Fprintf(bw, "  (%d samples out of order, %d dropped before commit: not recorded)\n", b.OutOfOrder, b.Dropped)
	}
}
