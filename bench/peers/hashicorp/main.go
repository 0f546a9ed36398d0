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

// defaultMaxAppendEntries is hashicorp's own default, kept for fairness.
const defaultMaxAppendEntries = 64

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
	bench.RegisterFlags(flag.CommandLine, &cfg)
	flag.IntVar(&opts.nodes, "nodes", 3, "cluster size")
	flag.StringVar(&opts.parentDir, "dir", "", "parent of the temporary data directory (default $TMPDIR)")
	flag.BoolVar(&opts.batchApplyCh, "batch-apply", true, "raft.Config.BatchApplyCh")
	flag.IntVar(&opts.maxAppendEntries, "max-append-entries", defaultMaxAppendEntries, "raft.Config.MaxAppendEntries (hashicorp default 64, max 1024)")
	flag.Parse()
	if err := bench.CheckFlags(flag.CommandLine, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
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
	// Mode names the durability setting, plus any departure from the
	// documented configuration, so sweep labels and file names stay short.
	cfg.Mode = "wal-fsync"
	if !opts.batchApplyCh {
		cfg.Mode += "-nobatchapply"
	}
	if opts.maxAppendEntries != defaultMaxAppendEntries {
		cfg.Mode += fmt.Sprintf("-maxappend%d", opts.maxAppendEntries)
	}
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

// addNotes records the cluster setup in the report.
func addNotes(rep *bench.Report, opts clusterOptions) {
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("raft-wal %s (fsync per StoreLogs), %d nodes in one process over loopback TCP",
			moduleVersion("github.com/hashicorp/raft-wal"), opts.nodes),
		fmt.Sprintf("raft.Config: defaults, BatchApplyCh=%v, MaxAppendEntries=%d; follower index = follower LastIndex()",
			opts.batchApplyCh, opts.maxAppendEntries))
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
