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
// With -groups G the embedded cluster shards its keys over G Raft groups
// (raftnode -groups): -mode direct sends each operation to the node that
// leads its key's group, client mode relies on raft/client's shard-map
// routing. A -cluster run needs nothing new: the client learns the
// cluster's group count from the nodes.
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
	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/raft/node"
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

// Bounds on raftbench's own flags.
const (
	// maxNodes bounds -nodes: an embedded cluster shares this machine's
	// cores, and more than 9 replicas of one group is not a deployment.
	maxNodes = 9
	// maxConns bounds -conns: the nodes accept node.DefaultMaxClientConns
	// connections each, shared with every other client.
	maxConns = node.DefaultMaxClientConns
	// maxSweepClients is bench's bound on outstanding requests.
	maxSweepClients = 4096
)

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
	readMode  string
	groups    int
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
	fs.Uint64Var(&o.clusterID, "cluster-id", 1, "cluster ID sent in the client handshake (must match the nodes' -cluster-id); non-zero")
	fs.StringVar(&o.mode, "mode", "client", "client: requests go through the client protocol over TCP; direct: in-process calls on the embedded leader (no client protocol; like-for-like with libraries benchmarked in-process)")
	fs.IntVar(&o.nodes, "nodes", 3, fmt.Sprintf("embedded cluster size, 1..%d (with -cluster the size is the address count)", maxNodes))
	fs.IntVar(&o.conns, "conns", 4, fmt.Sprintf("client mode: number of client connections (per node) shared by all clients, 1..%d; requests are pipelined on them", maxConns))
	fs.BoolVar(&o.json, "json", false, "print exactly one JSON object on stdout instead of the summary")
	fs.StringVar(&o.out, "out", "", "also write the JSON, the .hgrm percentile distribution, a CSV time series and PNG plots into this directory")
	fs.StringVar(&o.sweep, "sweep", "", "closed loop: run the load at each point, e.g. clients=1,16,64,256 (each 1..4096); writes a throughput-latency table (and plot with -out); replaces -clients")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line on stderr")
	fs.StringVar(&o.dir, "dir", "", "parent directory for the embedded cluster's data and the -fsync-probe file (default $TMPDIR); put it on the disk you want to measure")
	fs.StringVar(&o.readMode, "read-mode", "index", "embedded cluster: how its leader confirms linearizable reads, index (ReadIndex heartbeat rounds) or lease (raftnode -read-mode)")
	fs.IntVar(&o.groups, "groups", 1, fmt.Sprintf("embedded cluster: shard the keys over this many Raft groups, 1..%d (raftnode -groups); direct mode sends each operation to the node leading its key's group, client mode relies on the client's shard-map routing. With -cluster the cluster's own group count applies", node.MaxGroups))
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
	if err := checkOptions(fs, &cfg, &o); err != nil {
		return cfg, o, usageError{err}
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
	cfg.Groups = o.groups
	if o.groups > 1 {
		// Its own row in comparisons: "direct-g16" is not "direct".
		cfg.Mode = fmt.Sprintf("%s-g%d", o.mode, o.groups)
	}
	if o.cluster != "" {
		// "cluster", not "client": the same protocol, but the nodes are
		// other processes, so results must not merge with the embedded
		// client-mode rows.
		cfg.Mode = "cluster"
		cfg.Nodes = len(splitList(o.cluster))
		cfg.Groups = 0 // the cluster's own; the client learns it, raftbench does not

	}
	return cfg, o, nil
}

// checkOptions refuses values out of range and flags that would be
// ignored in the combination given, naming the flags. set is told apart
// from a default with fs.Visit, so a flag that does nothing here is an
// error instead of a silent no-op.
func checkOptions(fs *flag.FlagSet, cfg *bench.Config, o *options) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := bench.CheckFlags(fs, cfg); err != nil {
		return err
	}
	embedded := o.cluster == ""
	switch {
	case cfg.PayloadBytes > kv.MaxValueBytes:
		return fmt.Errorf("-payload %d: raftpipe values are at most %d bytes; want 0..%d", cfg.PayloadBytes, kv.MaxValueBytes, kv.MaxValueBytes)
	case o.mode != "client" && o.mode != "direct":
		return fmt.Errorf("-mode %q: want client or direct", o.mode)
	case o.mode == "direct" && !embedded:
		return errors.New("-mode direct needs the embedded cluster (no -cluster)")
	case o.mode == "direct" && set["conns"]:
		return errors.New("-conns sets client connections: it does nothing with -mode direct")
	case o.nodes < 1 || o.nodes > maxNodes:
		return fmt.Errorf("-nodes %d: want 1..%d", o.nodes, maxNodes)
	case set["nodes"] && !embedded:
		return errors.New("-nodes sizes the embedded cluster: with -cluster the size is the number of addresses")
	case o.conns < 1 || o.conns > maxConns:
		return fmt.Errorf("-conns %d: want 1..%d", o.conns, maxConns)
	case o.clusterID == 0:
		return errors.New("-cluster-id 0: want 1..18446744073709551615 (nodes refuse cluster ID 0)")
	case o.admin != "" && embedded:
		return errors.New("-admin goes with -cluster")
	case set["dir"] && !embedded && !o.fsync:
		return errors.New("-dir places the embedded cluster's data or the -fsync-probe file: with -cluster it needs -fsync-probe")
	case o.sweep != "" && cfg.RateOpsPerSec > 0:
		return errors.New("-sweep clients=... sweeps the closed loop: it cannot go with -rate")
	case o.groups < 1 || o.groups > node.MaxGroups:
		return fmt.Errorf("-groups %d: want 1..%d", o.groups, node.MaxGroups)
	case set["groups"] && !embedded:
		return errors.New("-groups sizes the embedded cluster's shard map: with -cluster the cluster's own group count applies (the client learns it)")
	case set["read-mode"] && !embedded:
		return errors.New("-read-mode configures the embedded cluster: with -cluster the nodes' own -read-mode applies")
	case o.sweep != "" && set["clients"]:
		return errors.New("-sweep clients=... sets the client count of each point: drop -clients")
	}
	if o.sweep != "" {
		points, err := parseSweep(o.sweep)
		if err != nil {
			return err
		}
		for _, n := range points {
			if n*cfg.Inflight > maxSweepClients {
				return fmt.Errorf("-sweep point %d clients x -inflight %d = %d requests outstanding, above the bound of %d", n, cfg.Inflight, n*cfg.Inflight, maxSweepClients)
			}
		}
	}
	return nil
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
		fmt.Fprintf(stderr, "starting an embedded %d-node cluster (%d group(s)) on 127.0.0.1 ...\n", o.nodes, o.groups)
	}
	readMode, err := node.ParseReadMode(o.readMode)
	if err != nil {
		return nil, nil, nil, nil, usageError{fmt.Errorf("-read-mode: %w", err)}
	}
	c, err := cluster.Start(ctx, cluster.Options{Nodes: o.nodes, Dir: o.dir, ClusterID: o.clusterID, Groups: o.groups,
		Tune: func(cfg *node.Config) { cfg.ReadMode = readMode }})
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
		return nil, fmt.Errorf("-sweep %q: want clients=N[,N...] (for example clients=1,16,64)", s)
	}
	var out []int
	for _, f := range splitList(list) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > maxSweepClients {
			return nil, fmt.Errorf("-sweep: %q is not a client count in 1..%d", f, maxSweepClients)
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
