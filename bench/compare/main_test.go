package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftpipe/raftpipe/bench"
)

// TestReportRowsAndRatios writes reports for two rows and checks that the
// table labels both, shows CPU per write, and takes the ratio against the
// tuned hashicorp row rather than the default one.
func TestReportRowsAndRatios(t *testing.T) {
	in := t.TempDir()
	reports := map[string]*bench.Report{
		"d.json":  {System: "raftpipe", Mode: "direct", Clients: 16, OpsPerS: 3000, P99Us: 100, CPUUsPerOp: 20, CPUProcesses: 1},
		"ht.json": {System: "hashicorp-raft", Mode: "tuned", Clients: 16, OpsPerS: 1000, P99Us: 200, CPUUsPerOp: 40, CPUProcesses: 1},
		"hd.json": {System: "hashicorp-raft", Mode: "default", Clients: 16, OpsPerS: 500, P99Us: 400},
	}
	for name, r := range reports {
		f, err := os.Create(filepath.Join(in, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.WriteJSON(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	out := filepath.Join(t.TempDir(), "cmp.md")
	if err := run(in, out, "", "test"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"| 16 | hashicorp-raft | default | 1 | 500 | – |",
		"| 16 | hashicorp-raft | tuned | 1 | 1000 | 40.0 |",
		"| 16 | raftpipe | direct | 1 | 3000 | 20.0 |",
		// direct/hashicorp ops, p99, p50 (none), CPU: against tuned.
		"| 16 | 3.00× | 0.50× | – | 0.50× |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
