package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// SweepSetup prepares the target for one sweep point. cfg is the point's
// configuration (Clients set). It returns the target, an optional lag
// source, and a close function (nil if nothing to close). A setup that
// reuses one cluster for every point returns the same target each time.
type SweepSetup func(ctx context.Context, cfg Config) (Target, LagSource, func() error, error)

// SweepReport holds one Report per sweep point, in the order run.
type SweepReport struct {
	// Points are the per-point reports.
	Points []*Report
}

// Sweep runs Run once per client count in clients (closed loop), with
// everything else from cfg, and collects the reports. It stops at the first
// error and returns the points completed so far along with it.
func Sweep(ctx context.Context, cfg Config, clients []int, setup SweepSetup, progress io.Writer) (*SweepReport, error) {
	points := make([]Config, len(clients))
	for i, c := range clients {
		points[i] = cfg
		points[i].Clients = c
		points[i].RateOpsPerSec = 0
	}
	return sweep(ctx, points, setup, progress)
}

// SweepRates is Sweep for the open loop: one point per total rate (ops/s).
// A rate sweep gives the latency a user sees at each offered load, free of
// coordinated omission, up to the point where the system saturates.
func SweepRates(ctx context.Context, cfg Config, rates []float64, setup SweepSetup, progress io.Writer) (*SweepReport, error) {
	points := make([]Config, len(rates))
	for i, r := range rates {
		if r <= 0 {
			return nil, fmt.Errorf("%w: sweep rate %v ops/s is not positive", ErrInvalidConfig, r)
		}
		points[i] = cfg
		points[i].RateOpsPerSec = r
	}
	return sweep(ctx, points, setup, progress)
}

// sweep runs one point per config, in order.
func sweep(ctx context.Context, points []Config, setup SweepSetup, progress io.Writer) (*SweepReport, error) {
	sr := &SweepReport{}
	for _, pc := range points {
		name := fmt.Sprintf("%d clients x %d inflight", pc.Clients, max(pc.Inflight, 1))
		if pc.RateOpsPerSec > 0 {
			name = fmt.Sprintf("%.0f ops/s", pc.RateOpsPerSec)
		}
		if progress != nil {
			fmt.Fprintf(progress, "sweep point: %s\n", name)
		}
		t, lag, closeFn, err := setup(ctx, pc)
		if err != nil {
			return sr, fmt.Errorf("bench: sweep setup for %s: %w", name, err)
		}
		rep, err := Run(ctx, pc, t, lag, progress)
		if closeFn != nil {
			err = errors.Join(err, closeFn())
		}
		if rep != nil {
			sr.Points = append(sr.Points, rep)
		}
		if err != nil {
			return sr, fmt.Errorf("bench: sweep point %s: %w", name, err)
		}
	}
	return sr, nil
}

// WriteMarkdown writes the throughput-latency table, one row per point.
// Any list of reports can be tabled this way, e.g. raftpipe's and the
// hashicorp peer's side by side: SweepReport{Points: reports}.
func (sr *SweepReport) WriteMarkdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "| system | mode | load | payload B | ops/s | p50 | p90 | p99 | p99.9 | p99.99 | max | errors | lag p99 entries | lag p99 ms |")
	fmt.Fprintln(bw, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range sr.Points {
		load := fmt.Sprintf("%d x %d", r.Clients, r.Inflight)
		if r.LoadModel == "open" {
			load = fmt.Sprintf("open %.0f/s", r.RateOpsPerSec)
		}
		fmt.Fprintf(bw, "| %s | %s | %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %d | %d | %.2f |\n",
			r.System, r.Mode, load, r.Payload, r.OpsPerS,
			fmtUs(r.P50Us), fmtUs(r.P90Us), fmtUs(r.P99Us), fmtUs(r.P999Us), fmtUs(r.P9999Us), fmtUs(r.MaxUs),
			r.Errors, r.FollowerLagP99Entries, r.FollowerLagP99Ms)
	}
	return bw.Flush()
}

// WriteOut writes every point's files (Report.WriteOut), the table as
// sweep.md and the throughput-vs-p99 plot as sweep-throughput-p99.png.
func (sr *SweepReport) WriteOut(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: create output dir: %w", err)
	}
	series := map[string][]*Report{}
	for _, r := range sr.Points {
		if err := r.WriteOut(dir); err != nil {
			return err
		}
		series[r.label()] = append(series[r.label()], r)
	}
	if err := writeFile(filepath.Join(dir, "sweep.md"), sr.WriteMarkdown); err != nil {
		return err
	}
	return PlotThroughputLatency(filepath.Join(dir, "sweep-throughput-p99.png"), series)
}
