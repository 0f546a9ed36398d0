package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/raftpipe/raftpipe/bench"
)

// presets are the two configurations make compare runs: hashicorp's
// documented defaults, and the best configuration this benchmark knows for
// it (see doc.go for each knob). Flags that set a knob explicitly override
// the preset and show in the report's mode label.
var presets = map[string]clusterOptions{
	"default": {batchApplyCh: false, maxAppendEntries: 64},
	"tuned":   {batchApplyCh: true, maxAppendEntries: 512, logCacheEntries: 512, noSnapshots: true},
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hashicorp peer:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	var (
		cfg        bench.Config
		opts       clusterOptions
		jsonOut    = flag.Bool("json", false, "print the report as one JSON object on stdout (else a summary)")
		outDir     = flag.String("out", "", "also write JSON, .hgrm, CSV and PNG plots into this directory")
		applyTO    = flag.Duration("apply-timeout", 10*time.Second, "raft.Apply enqueue timeout")
		noProgress = flag.Bool("quiet", false, "no progress on stderr")
		sweepList  = flag.String("sweep", "", "comma-separated client counts: run one closed-loop point per count on the same cluster and print a Markdown table (-json: one JSON object per point)")
	)
	var (
		tuned            = flag.Bool("tuned", false, "the tuned preset: BatchApplyCh, MaxAppendEntries 512, a 512-entry LogCache, no snapshots or log compaction during the run (default: raft.DefaultConfig())")
		batchApplyCh     = flag.Bool("batch-apply", false, "raft.Config.BatchApplyCh (overrides the preset)")
		maxAppendEntries = flag.Int("max-append-entries", 0, "raft.Config.MaxAppendEntries, at most 1024 (overrides the preset; default 64, tuned 512)")
		logCacheEntries  = flag.Int("log-cache", 0, "entries of raft.NewLogCache around the log store, 0 = none (overrides the preset; tuned 512)")
		noSnapshots      = flag.Bool("no-snapshots", false, "set TrailingLogs, SnapshotThreshold and SnapshotInterval so no snapshot or compaction happens during a run (overrides the preset)")
	)
	bench.RegisterFlags(flag.CommandLine, &cfg)
	flag.IntVar(&opts.nodes, "nodes", 3, "cluster size")
	flag.StringVar(&opts.parentDir, "dir", "", "parent of the temporary data directory (default $TMPDIR)")
	flag.Parse()
	if err := bench.CheckFlags(flag.CommandLine, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	preset := "default"
	if *tuned {
		preset = "tuned"
	}
	base := presets[preset]
	opts.batchApplyCh, opts.maxAppendEntries = base.batchApplyCh, base.maxAppendEntries
	opts.logCacheEntries, opts.noSnapshots = base.logCacheEntries, base.noSnapshots
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "batch-apply":
			opts.batchApplyCh = *batchApplyCh
		case "max-append-entries":
			opts.maxAppendEntries = *maxAppendEntries
		case "log-cache":
			opts.logCacheEntries = *logCacheEntries
		case "no-snapshots":
			opts.noSnapshots = *noSnapshots
		}
	})
	if cfg.WriteFraction != 1 || cfg.StaleReads {
		return errors.New("only writes are supported: -writes must be 1 and -stale unset")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts.logOutput = os.Stderr
	c, err := startCluster(ctx, opts)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.close()) }()
	leader := c.leader()
	if leader == nil {
		return errors.New("leader lost before the run")
	}

	cfg.System = "hashicorp-raft"
	cfg.Version = moduleVersion("github.com/hashicorp/raft")
	// Mode names the preset plus any departure from it, so sweep labels,
	// file names and compare rows stay short. Durability (raft-wal, fsync
	// per StoreLogs) is the same in every mode and is in the notes.
	cfg.Mode = preset + departures(opts, base)
	cfg.Nodes = opts.nodes
	target := newApplyTarget(c, leader, *applyTO)
	var progress io.Writer // nil: no progress
	if !*noProgress {
		progress = os.Stderr
	}
	lag := &lagSource{c: c, target: target}
	if *sweepList != "" {
		clients, perr := parseInts(*sweepList)
		if perr != nil {
			return perr
		}
		setup := func(context.Context, bench.Config) (bench.Target, bench.LagSource, func() error, error) {
			return target, lag, nil, nil
		}
		sr, err := bench.Sweep(ctx, cfg, clients, setup, progress)
		for _, rep := range sr.Points {
			addNotes(rep, opts)
		}
		if *outDir != "" {
			if werr := sr.WriteOut(*outDir); werr != nil {
				return errors.Join(err, werr)
			}
		}
		if *jsonOut {
			for _, rep := range sr.Points {
				if werr := rep.WriteJSON(os.Stdout); werr != nil {
					return errors.Join(err, werr)
				}
			}
			return err
		}
		return errors.Join(err, sr.WriteMarkdown(os.Stdout))
	}
	rep, err := bench.Run(ctx, cfg, target, lag, progress)
	if rep == nil {
		return err
	}
	addNotes(rep, opts)
	if *outDir != "" {
		if werr := rep.WriteOut(*outDir); werr != nil {
			return errors.Join(err, werr)
		}
	}
	if *jsonOut {
		return errors.Join(err, rep.WriteJSON(os.Stdout))
	}
	return errors.Join(err, rep.WriteSummary(os.Stdout))
}

// moduleVersion reports the version of a dependency built into the binary.
func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}

// departures names the knobs where opts differs from the preset base, as
// a mode-label suffix ("" when none).
func departures(opts, base clusterOptions) string {
	var s string
	if opts.batchApplyCh != base.batchApplyCh {
		s += fmt.Sprintf("-batchapply=%v", opts.batchApplyCh)
	}
	if opts.maxAppendEntries != base.maxAppendEntries {
		s += fmt.Sprintf("-maxappend%d", opts.maxAppendEntries)
	}
	if opts.logCacheEntries != base.logCacheEntries {
		s += fmt.Sprintf("-logcache%d", opts.logCacheEntries)
	}
	if opts.noSnapshots != base.noSnapshots {
		s += fmt.Sprintf("-nosnapshots=%v", opts.noSnapshots)
	}
	return s
}

// addNotes records the cluster setup in the report.
func addNotes(rep *bench.Report, opts clusterOptions) {
	snaps := "default snapshot settings (TrailingLogs 10240, SnapshotThreshold 8192, SnapshotInterval 120s)"
	if opts.noSnapshots {
		snaps = "no snapshots or compaction during the run (TrailingLogs, SnapshotThreshold and SnapshotInterval set high)"
	}
	cache := "no LogCache"
	if opts.logCacheEntries > 0 {
		cache = fmt.Sprintf("raft.NewLogCache(%d) around raft-wal", opts.logCacheEntries)
	}
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("raft-wal %s (fsync per StoreLogs), %d nodes in one process over loopback TCP",
			moduleVersion("github.com/hashicorp/raft-wal"), opts.nodes),
		fmt.Sprintf("raft.Config: DefaultConfig() with BatchApplyCh=%v, MaxAppendEntries=%d, %s; %s; follower index = follower LastIndex()",
			opts.batchApplyCh, opts.maxAppendEntries, snaps, cache))
}

// parseInts parses "1,4,16" into positive ints.
func parseInts(list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-sweep: %q is not a positive client count", f)
		}
		out = append(out, n)
	}
	return out, nil
}
