package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestParseRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-mode", "bogus"},
		{"-mode", "direct", "-cluster", "127.0.0.1:1"},
		{"-nodes", "0"},
		{"-admin", "127.0.0.1:1"},
		{"-cpu-pids", "1"},
		{"-cluster", "127.0.0.1:1", "-cpu-pids", "1,x"},
		{"extra"},
	} {
		_, _, err := parse(args, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("parse(%q) = %v, want a usage error", args, err)
		}
	}
	if _, err := parseSweep("clients=1,x"); err == nil {
		t.Error("parseSweep accepted a non-number")
	}
	if got, err := parseSweep("clients=1, 16,64"); err != nil || len(got) != 3 || got[1] != 16 {
		t.Errorf("parseSweep = %v, %v", got, err)
	}
	cfg, _, err := parse([]string{"-cluster", "127.0.0.1:1,127.0.0.1:2", "-cpu-pids", "10, 11"}, io.Discard)
	if err != nil || cfg.Mode != "cluster" || cfg.Nodes != 2 || len(cfg.CPUPIDs) != 2 || cfg.CPUPIDs[1] != 11 {
		t.Errorf("parse -cluster -cpu-pids: mode %q nodes %d pids %v, err %v", cfg.Mode, cfg.Nodes, cfg.CPUPIDs, err)
	}
}

// TestEmbeddedRunJSON runs the real thing briefly: an embedded 3-node
// cluster, client mode, and checks the JSON report's required fields.
func TestEmbeddedRunJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	out := t.TempDir()
	var stdout bytes.Buffer
	args := []string{"-duration", "1s", "-warmup", "200ms", "-clients", "8", "-json", "-quiet", "-dir", t.TempDir(), "-out", out}
	if err := run(args, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
	}
	for _, f := range []string{"system", "version", "mode", "nodes", "clients", "inflight", "payload", "duration_s", "ops",
		"ops_per_s", "p50_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us", "errors",
		"follower_lag_p99_entries", "follower_lag_max_entries", "follower_lag_p99_ms", "cpu_us_per_op"} {
		if _, ok := rep[f]; !ok {
			t.Errorf("JSON lacks %q", f)
		}
	}
	if rep["system"] != "raftpipe" || rep["mode"] != "client" {
		t.Errorf("system/mode = %v/%v", rep["system"], rep["mode"])
	}
	if ops, _ := rep["ops"].(float64); ops <= 0 {
		t.Errorf("no operations completed: %v", rep["ops"])
	}
	for _, pat := range []string{"*.json", "*.hgrm", "*.csv", "*.png"} {
		if m, _ := filepath.Glob(filepath.Join(out, pat)); len(m) == 0 {
			entries, _ := os.ReadDir(out)
			t.Errorf("-out wrote no %s (dir has %v)", pat, entries)
		}
	}
}
