// Command compare turns the JSON reports of a `make compare` run into
// results/compare-DATE.md: one row per (system, mode, clients) with the
// median of the repetitions, and the ratios the project's targets are stated
// in (raftpipe direct and client vs hashicorp/raft, client vs direct).
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
	errors              uint64
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
		for _, r := range rs {
			a.errors += r.Errors
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
	fmt.Fprintf(w, "# raftpipe vs hashicorp/raft — %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "Produced by `%s`. 3 nodes in one process per system, loopback TCP, fsync on, 128-byte writes, closed loop; "+
		"systems and modes take turns at each client count, and each cell is the median of the repetitions.\n\n", cmdline)
	fmt.Fprintln(w, "| clients | system | mode | runs | ops/s | p50 µs | p99 µs | p99.9 µs | errors |")
	fmt.Fprintln(w, "|---:|---|---|---:|---:|---:|---:|---:|---:|")
	for _, k := range keys {
		a := aggs[k]
		fmt.Fprintf(w, "| %d | %s | %s | %d | %.0f | %.0f | %.0f | %.0f | %d |\n", k.clients, k.system, k.mode, a.runs, a.ops, a.p50, a.p99, a.p999, a.errors)
	}
	fmt.Fprintln(w, "\n## Ratios (medians)")
	fmt.Fprintln(w, "\nTargets: direct ≥ 3× hashicorp ops/s at 64 and 256 clients with a lower p99; single-client p50 ≤ 0.75× hashicorp; client mode ≥ 70% of direct.")
	fmt.Fprintln(w, "\n| clients | direct/hashicorp ops | direct/hashicorp p99 | direct/hashicorp p50 | client/hashicorp ops | client/direct ops |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|")
	seen := map[int]bool{}
	for _, k := range keys {
		if seen[k.clients] {
			continue
		}
		seen[k.clients] = true
		d, okD := find(aggs, "raftpipe", "direct", k.clients)
		c, okC := find(aggs, "raftpipe", "client", k.clients)
		h, okH := find(aggs, "hashicorp-raft", "", k.clients)
		cell := func(ok bool, a, b float64) string {
			if !ok || b == 0 {
				return "–"
			}
			return fmt.Sprintf("%.2f×", a/b)
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s |\n", k.clients,
			cell(okD && okH, d.ops, h.ops), cell(okD && okH, d.p99, h.p99), cell(okD && okH, d.p50, h.p50),
			cell(okC && okH, c.ops, h.ops), cell(okC && okD, c.ops, d.ops))
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

// find returns the aggregate for system (and mode, unless mode is "").
func find(aggs map[key]agg, system, mode string, clients int) (agg, bool) {
	for k, a := range aggs {
		if k.system == system && k.clients == clients && (mode == "" || k.mode == mode) {
			return a, true
		}
	}
	return agg{}, false
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
