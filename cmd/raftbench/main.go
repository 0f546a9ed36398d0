// Command raftbench measures a raftpipe cluster: commit-latency histograms
// under load (HdrHistogram), throughput per second, errors by kind, and
// follower lag.
//
// With no arguments it starts an embedded local 3-node cluster (real TCP on
// 127.0.0.1, fsynced WALs and Pebble in a temporary directory that is
// removed afterwards) and runs the default load: 64 closed-loop clients
// writing 128-byte values for 10 s after a 2 s warm-up. With -cluster it
// drives an existing cluster through the client protocol instead.
//
// Every report includes the CPU time spent per committed op over the
// measurement window (cpu_us_per_op): raftbench's own process, which for
// the embedded cluster holds all nodes too, plus, with -cpu-pids, the
// cluster's processes on this host.
//
// Run `raftbench -help` for every flag.
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

	"github.com/raftpipe/raftpipe/bench"
	"github.com/raftpipe/raftpipe/bench/cluster"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "raftbench:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError marks bad flags (exit status 2).
type usageError struct{ error }

// options are raftbench's own flags (the load flags live in bench.Config).
type options struct {
	cluster   string
	admin     string
	clusterID uint64
	mode      string
	nodes     int
	conns     int
	json      bool
	out       string
	sweep     string
	quiet     bool
	dir       string
	fsync     bool
	cpuPIDs   string
}

func parse(args []string, stderr io.Writer) (bench.Config, options, error) {
	var cfg bench.Config
	var o options
	fs := flag.NewFlagSet("raftbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: raftbench [flags]\n\nWith no flags: an embedded local 3-node cluster, 64 clients, 128-byte writes, 10s after a 2s warm-up.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	bench.RegisterFlags(fs, &cfg)
	fs.StringVar(&o.cluster, "cluster", "", "comma-separated client addresses (host:port) of an existing cluster, driven through the client protocol (the report's mode is \"cluster\"); empty = start an embedded local cluster")
	fs.StringVar(&o.admin, "admin", "", "with -cluster: comma-separated admin HTTP addresses, polled (GET /status) every 100ms for follower lag")
	fs.Uint64Var(&o.clusterID, "cluster-id", 1, "cluster ID sent in the client handshake (must match the nodes' -cluster-id)")
	fs.StringVar(&o.mode, "mode", "client", "client: requests go through the client protocol over TCP; direct: in-process calls on the embedded leader (no client protocol; like-for-like with libraries benchmarked in-process)")
	fs.IntVar(&o.nodes, "nodes", 3, "embedded cluster size")
	fs.IntVar(&o.conns, "conns", 4, "client mode: number of client connections (per node) shared by all clients; requests are pipelined on them")
	fs.BoolVar(&o.json, "json", false, "print exactly one JSON object on stdout instead of the summary")
	fs.StringVar(&o.out, "out", "", "also write the JSON, the .hgrm percentile distribution, a CSV time series and PNG plots into this directory")
	fs.StringVar(&o.sweep, "sweep", "", "run the load at each point, e.g. clients=1,16,64,256; writes a throughput-latency table (and plot with -out)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line on stderr")
	fs.StringVar(&o.dir, "dir", "", "parent directory for the embedded cluster's data (default $TMPDIR); put it on the disk you want to measure")
	fs.BoolVar(&o.fsync, "fsync-probe", false, "before the run, measure and print this disk's write+fdatasync latency (1000 x 4 KiB)")
	fs.StringVar(&o.cpuPIDs, "cpu-pids", "", "with -cluster: comma-separated PIDs of the cluster's processes on this host, whose CPU (/proc/PID/stat) is added to raftbench's own in cpu_us_per_op")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, o, err
		}
		return cfg, o, usageError{err}
	}
	if fs.NArg() > 0 {
		return cfg, o, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	switch o.mode {
	case "client":
	case "direct":
		if o.cluster != "" {
			return cfg, o, usageError{errors.New("-mode direct needs the embedded cluster (no -cluster)")}
		}
	default:
		return cfg, o, usageError{fmt.Errorf("-mode %q: want client or direct", o.mode)}
	}
	if o.nodes < 1 || o.nodes > 9 {
		return cfg, o, usageError{fmt.Errorf("-nodes %d: want 1..9", o.nodes)}
	}
	if o.conns < 1 {
		return cfg, o, usageError{fmt.Errorf("-conns %d: want >= 1", o.conns)}
	}
	if o.admin != "" && o.cluster == "" {
		return cfg, o, usageError{errors.New("-admin goes with -cluster")}
	}
	if o.cpuPIDs != "" && o.cluster == "" {
		return cfg, o, usageError{errors.New("-cpu-pids goes with -cluster (an embedded cluster is in raftbench's own process)")}
	}
	for _, f := range splitList(o.cpuPIDs) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid < 1 {
			return cfg, o, usageError{fmt.Errorf("-cpu-pids: %q is not a process ID", f)}
		}
		cfg.CPUPIDs = append(cfg.CPUPIDs, pid)
	}
	cfg.System = "raftpipe"
	cfg.Version = version()
	cfg.Mode = o.mode
	cfg.Nodes = o.nodes
	if o.cluster != "" {
		// "cluster", not "client": the same protocol, but the nodes are
		// other processes, so results must not merge with the embedded
		// client-mode rows.
		cfg.Mode = "cluster"
		cfg.Nodes = len(splitList(o.cluster))
	}
	return cfg, o, nil
}

func run(args []string, stdout, stderr io.Writer) error {
	cfg, o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	var clients []int
	if o.sweep != "" {
		if clients, err = parseSweep(o.sweep); err != nil {
			return usageError{err}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.fsync {
		dir := o.dir
		if dir == "" {
			dir = os.TempDir()
		}
		r, err := bench.MeasureFdatasync(dir, 1000, 4096)
		if err != nil {
			return fmt.Errorf("fsync probe: %w", err)
		}
		fmt.Fprintf(stderr, "fdatasync probe (%s): %s\n", dir, r)
	}
	var progress io.Writer
	if !o.quiet {
		progress = stderr
	}
	target, lag, embedded, closeAll, err := setup(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer closeAll()
	notes := func(rep *bench.Report) {
		if embedded != nil {
			rep.Notes = append(rep.Notes, embedded.WALNotes()...)
		}
	}

	if len(clients) > 0 {
		same := func(context.Context, bench.Config) (bench.Target, bench.LagSource, func() error, error) {
			return target, lag, nil, nil
		}
		sr, err := bench.Sweep(ctx, cfg, clients, same, progress)
		if sr == nil {
			return err
		}
		for _, rep := range sr.Points {
			notes(rep)
		}
		if o.out != "" {
			err = errors.Join(err, sr.WriteOut(o.out))
		}
		if o.json {
			for _, rep := range sr.Points {
				err = errors.Join(err, rep.WriteJSON(stdout))
			}
			return err
		}
		return errors.Join(err, sr.WriteMarkdown(stdout))
	}
	rep, err := bench.Run(ctx, cfg, target, lag, progress)
	if rep == nil {
		return err
	}
	notes(rep)
	if o.out != "" {
		err = errors.Join(err, rep.WriteOut(o.out))
	}
	if o.json {
		return errors.Join(err, rep.WriteJSON(stdout))
	}
	return errors.Join(err, rep.WriteSummary(stdout))
}

// setup starts the embedded cluster (or connects to -cluster) and returns
// the target, the lag source, the embedded cluster (nil with -cluster) and a
// cleanup function.
func setup(ctx context.Context, o options, stderr io.Writer) (bench.Target, bench.LagSource, *cluster.Cluster, func() error, error) {
	if o.cluster != "" {
		ct, err := cluster.NewClientTarget(splitList(o.cluster), o.clusterID, o.conns)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		var lag bench.LagSource
		if o.admin != "" {
			lag = &cluster.HTTPLag{AdminAddrs: splitList(o.admin)}
		}
		return ct, lag, nil, ct.Close, nil
	}
	if !o.quiet {
		fmt.Fprintf(stderr, "starting an embedded %d-node cluster on 127.0.0.1 ...\n", o.nodes)
	}
	c, err := cluster.Start(ctx, cluster.Options{Nodes: o.nodes, Dir: o.dir, ClusterID: o.clusterID})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	lag := &cluster.Lag{C: c}
	if o.mode == "direct" {
		return &cluster.DirectTarget{C: c}, lag, c, c.Close, nil
	}
	ct, err := cluster.NewClientTarget(c.ClientAddrs(), o.clusterID, o.conns)
	if err != nil {
		c.Close()
		return nil, nil, nil, nil, err
	}
	return ct, lag, c, func() error { return errors.Join(ct.Close(), c.Close()) }, nil
}

// parseSweep parses "clients=1,16,64".
func parseSweep(s string) ([]int, error) {
	name, list, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(name) != "clients" {
		return nil, fmt.Errorf("-sweep %q: want clients=N,N,...", s)
	}
	var out []int
	for _, f := range splitList(list) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-sweep: %q is not a positive client count", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-sweep %q: no points", s)
	}
	return out, nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// version is the module version built into the binary, or "dev".
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
