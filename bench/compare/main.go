// Command compare turns the JSON reports of a `make compare` run into
// results/compare-DATE.md: one row per (system, mode, clients) with the
// median of the repetitions (throughput, CPU per write, latency
// percentiles), and the ratios the project's targets are stated in
// (raftpipe against the best-configured peer, hashicorp/raft tuned, and
// the multi-process raftnode row against etcd).
//
//	go run ./bench/compare -in DIR -out results/compare-DATE.md -machine results/machine-now.txt
package main

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/raftpipe/raftpipe/bench"
)

func main() {
	in := flag.String("in", "", "directory holding one JSON report per run (*.json)")
	out := flag.String("out", "", "Markdown file to write (default stdout)")
	machine := flag.String("machine", "", "optional text file with machine notes to include verbatim")
	cmdline := flag.String("cmd", "make compare", "the command that produced the reports, for the record")
	flag.Parse()
	if *in == "" {
		fmt.Fprintln(os.Stderr, "compare: -in is required")
		os.Exit(2)
	}
	if err := run(*in, *out, *machine, *cmdline); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// key identifies one configuration measured (possibly several times).
type key struct {
	system, mode string
	clients      int
}

// agg is the medians of one configuration's repetitions.
type agg struct {
	runs                int
	ops, p50, p99, p999 float64
	// cpu is the median CPU µs per op over the runs that measured it;
	// cpuRuns counts those (0: no CPU figure, e.g. reports from before
	// CPU accounting).
	cpu     float64
	cpuRuns int
	errors  uint64
}

// rowDoc says what each known (system, mode) row is, for the report.
var rowDoc = []struct{ system, mode, doc string }{
	{"raftpipe", "direct", "embedded 3-node cluster in raftbench's process, writes by in-process calls on the leader (`raftbench -mode direct`)"},
	{"raftpipe", "client", "the same embedded cluster, writes through the client protocol over loopback TCP (`raftbench -mode client`)"},
	{"raftpipe", "direct-g16", "the direct row with the keys sharded over 16 Raft groups on the same 3 nodes (`raftbench -mode direct -groups 16`): each write goes to the node leading its key's group"},
	{"raftpipe", "cluster", "3 `raftnode` processes on 127.0.0.1, driven by `raftbench -cluster` through the client protocol; CPU is raftbench plus the 3 nodes"},
	{"hashicorp-raft", "default", "hashicorp/raft, raft.DefaultConfig(), raft-wal, 3 nodes in one process (`bench/peers/hashicorp`)"},
	{"hashicorp-raft", "tuned", "hashicorp/raft with BatchApplyCh, MaxAppendEntries 512, a 512-entry LogCache, no snapshots during the run (`bench/peers/hashicorp -tuned`)"},
	{"etcd", "default", "etcd server in 3 member processes on 127.0.0.1, etcd's defaults, clientv3 Put to the leader (`bench/peers/etcd`); CPU is the driver plus the 3 members"},
}

func run(in, out, machine, cmdline string) error {
	files, err := filepath.Glob(filepath.Join(in, "*.json"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no *.json reports in %s", in)
	}
	byKey := map[key][]*bench.Report{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return err
		}
		r, err := bench.ReadReport(fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		k := key{r.System, r.Mode, r.Clients}
		byKey[k] = append(byKey[k], r)
	}
	aggs := map[key]agg{}
	var keys []key
	for k, rs := range byKey {
		a := agg{runs: len(rs)}
		a.ops = median(rs, func(r *bench.Report) float64 { return r.OpsPerS })
		a.p50 = median(rs, func(r *bench.Report) float64 { return float64(r.P50Us) })
		a.p99 = median(rs, func(r *bench.Report) float64 { return float64(r.P99Us) })
		a.p999 = median(rs, func(r *bench.Report) float64 { return float64(r.P999Us) })
		var withCPU []*bench.Report
		for _, r := range rs {
			a.errors += r.Errors
			if r.CPUProcesses > 0 {
				withCPU = append(withCPU, r)
			}
		}
		if a.cpuRuns = len(withCPU); a.cpuRuns > 0 {
			a.cpu = median(withCPU, func(r *bench.Report) float64 { return r.CPUUsPerOp })
		}
		aggs[k] = a
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(a.clients, b.clients), cmp.Compare(a.system, b.system), cmp.Compare(a.mode, b.mode))
	})

	var w io.Writer = os.Stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	fmt.Fprintf(w, "# raftpipe vs hashicorp/raft and etcd — %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "Produced by `%s`. 3 nodes per system on one machine, loopback TCP, fsync on, 128-byte writes, closed loop; "+
		"systems and modes take turns at each client count, and each cell is the median of the repetitions.\n\n", cmdline)
	fmt.Fprintln(w, "CPU µs/write is user+sys CPU time of every process of the row (the load generator included) "+
		"over the measurement window only, divided by the writes committed in it: getrusage(RUSAGE_SELF) for the driver's own "+
		"process, /proc/PID/stat utime+stime for member processes (bench/cpu.go).")
	fmt.Fprintln(w, "\n| clients | system | mode | runs | ops/s | CPU µs/write | p50 µs | p99 µs | p99.9 µs | errors |")
	fmt.Fprintln(w, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, k := range keys {
		a := aggs[k]
		cpu := "–"
		if a.cpuRuns > 0 {
			cpu = fmt.Sprintf("%.1f", a.cpu)
		}
		fmt.Fprintf(w, "| %d | %s | %s | %d | %.0f | %s | %.0f | %.0f | %.0f | %d |\n", k.clients, k.system, k.mode, a.runs, a.ops, cpu, a.p50, a.p99, a.p999, a.errors)
	}
	fmt.Fprintln(w, "\nRows:")
	fmt.Fprintln(w)
	for _, d := range rowDoc {
		if present(keys, d.system, d.mode) {
			fmt.Fprintf(w, "- %s %s: %s\n", d.system, d.mode, d.doc)
		}
	}

	fmt.Fprintln(w, "\n## Ratios (medians)")
	fmt.Fprintln(w, "\nTargets: direct ≥ 3× hashicorp ops/s at 64 and 256 clients with a lower p99; single-client p50 ≤ 0.75× hashicorp; client mode ≥ 70% of direct. "+
		"hashicorp here is its tuned row, the best configuration measured; raftnode/etcd compares the two multi-process rows.")
	fmt.Fprintln(w, "\n| clients | direct/hashicorp ops | direct/hashicorp p99 | direct/hashicorp p50 | direct/hashicorp CPU | client/hashicorp ops | client/direct ops | raftnode/etcd ops | raftnode/etcd CPU |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	seen := map[int]bool{}
	for _, k := range keys {
		if seen[k.clients] {
			continue
		}
		seen[k.clients] = true
		d, okD := find(aggs, "raftpipe", "direct", k.clients)
		c, okC := find(aggs, "raftpipe", "client", k.clients)
		n, okN := find(aggs, "raftpipe", "cluster", k.clients)
		h, okH := find(aggs, "hashicorp-raft", "tuned", k.clients)
		e, okE := find(aggs, "etcd", "default", k.clients)
		cell := func(ok bool, a, b float64) string {
			if !ok || b == 0 || a == 0 {
				return "–"
			}
			return fmt.Sprintf("%.2f×", a/b)
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", k.clients,
			cell(okD && okH, d.ops, h.ops), cell(okD && okH, d.p99, h.p99), cell(okD && okH, d.p50, h.p50),
			cell(okD && okH, d.cpu, h.cpu),
			cell(okC && okH, c.ops, h.ops), cell(okC && okD, c.ops, d.ops),
			cell(okN && okE, n.ops, e.ops), cell(okN && okE, n.cpu, e.cpu))
	}
	if machine != "" {
		b, err := os.ReadFile(machine)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "\n## Machine\n\n```\n%s```\n", strings.TrimRight(string(b), "\n")+"\n")
	}
	return nil
}

// present says whether any row has this system and mode.
func present(keys []key, system, mode string) bool {
	return slices.ContainsFunc(keys, func(k key) bool { return k.system == system && k.mode == mode })
}

// find returns the aggregate for one (system, mode, clients) row.
func find(aggs map[key]agg, system, mode string, clients int) (agg, bool) {
	a, ok := aggs[key{system, mode, clients}]
	return a, ok
}

// median of f over rs.
func median(rs []*bench.Report, f func(*bench.Report) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
