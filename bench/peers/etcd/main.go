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
	"syscall"

	"go.etcd.io/etcd/server/v3/etcdmain"

	"github.com/raftpipe/raftpipe/bench"
)

// memberArg, as the first argument, makes this binary an etcd server:
// the rest of the arguments are etcd's own flags.
const memberArg = "member"

func main() {
	if len(os.Args) > 1 && os.Args[1] == memberArg {
		etcdmain.Main(append([]string{"etcd"}, os.Args[2:]...))
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "etcd peer:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	var (
		cfg        bench.Config
		opts       clusterOptions
		jsonOut    = flag.Bool("json", false, "print the report as one JSON object on stdout (else a summary)")
		outDir     = flag.String("out", "", "also write JSON, .hgrm, CSV and PNG plots into this directory")
		noProgress = flag.Bool("quiet", false, "no progress on stderr")
		conns      = flag.Int("conns", 4, "gRPC client connections to the leader, shared by all clients (raftbench's client mode uses 4)")
		noLag      = flag.Bool("no-lag", false, "do not poll Status on the members every 100 ms for follower lag")
		sweepList  = flag.String("sweep", "", "comma-separated client counts: run one closed-loop point per count on the same cluster and print a Markdown table (-json: one JSON object per point)")
	)
	bench.RegisterFlags(flag.CommandLine, &cfg)
	flag.IntVar(&opts.nodes, "nodes", 3, "cluster size (member processes)")
	flag.StringVar(&opts.parentDir, "dir", "", "parent of the temporary data directory (default $TMPDIR)")
	flag.Parse()
	if err := bench.CheckFlags(flag.CommandLine, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if cfg.WriteFraction != 1 || cfg.StaleReads {
		return errors.New("only writes are supported: -writes must be 1 and -stale unset")
	}
	if *conns < 1 {
		return fmt.Errorf("-conns %d: want >= 1", *conns)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	opts.memberCmd = []string{exe, memberArg}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !*noProgress {
		fmt.Fprintf(os.Stderr, "starting %d etcd members on 127.0.0.1 ...\n", opts.nodes)
	}
	c, err := startCluster(ctx, opts)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.close()) }()
	leader, err := c.waitReady(ctx)
	if err != nil {
		return err
	}
	target, err := newPutTarget(leader.clientURL, *conns)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, target.close()) }()

	cfg.System = "etcd"
	cfg.Version = moduleVersion("go.etcd.io/etcd/server/v3")
	cfg.Mode = "default"
	cfg.Nodes = opts.nodes
	cfg.CPUPIDs = c.pids()
	var progress io.Writer // nil: no progress
	if !*noProgress {
		progress = os.Stderr
	}
	var lag bench.LagSource
	if !*noLag {
		lag = &lagSource{c: c}
	}
	notes := func(rep *bench.Report) {
		rep.Notes = append(rep.Notes,
			fmt.Sprintf("etcd server %s (go.etcd.io/etcd/server/v3, etcdmain), %d member processes on 127.0.0.1, etcd's default flags apart from URLs, names and --log-level warn (fsync on, snapshot-count 10000, no auto-compaction)",
				cfg.Version, opts.nodes),
			fmt.Sprintf("load: clientv3 %s Put to the leader over %d gRPC connections; cpu is this process plus the %d members (/proc/PID/stat)",
				moduleVersion("go.etcd.io/etcd/client/v3"), *conns, opts.nodes),
		)
		if lag != nil {
			rep.Notes = append(rep.Notes, "follower index = the follower's Status.RaftIndex (its commit index; etcd exposes no durable index)")
		}
	}
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
			notes(rep)
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
	notes(rep)
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
