package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	line := "4242 (a b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 123 0 0\n"
	c, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if c.user != 2500*time.Millisecond || c.sys != 750*time.Millisecond {
		t.Fatalf("got user %v sys %v, want 2.5s and 750ms", c.user, c.sys)
	}
	if _, err := parseProcStat([]byte("4242 (x) S 1 2")); err == nil {
		t.Fatal("short line parsed")
	}
}

// spinTarget burns CPU for spin on every op.
type spinTarget struct{ spin time.Duration }

func (s spinTarget) Do(context.Context, *Op) error {
	for end := time.Now().Add(s.spin); time.Now().Before(end); {
	}
	return nil
}

func TestRunChargesCPU(t *testing.T) {
	cfg := shortCfg()
	cfg.Clients, cfg.Inflight = 1, 1
	// This test's own process, named twice, is an "other process" whose
	// counter /proc reads: it must be summed, and it about doubles the total.
	cfg.CPUPIDs = []int{os.Getpid()}
	rep, err := Run(context.Background(), cfg, spinTarget{spin: 100 * time.Microsecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.CPUProcesses != 2 {
		t.Fatalf("cpu_processes %d, want 2 (notes %q)", rep.CPUProcesses, rep.Notes)
	}
	// One client spinning: at least 100µs per op from getrusage alone.
	if rep.CPUUsPerOp < 100 || rep.CPUCores <= 0 {
		t.Fatalf("cpu %.1fµs per op, %.2f cores: want >= 100µs and > 0", rep.CPUUsPerOp, rep.CPUCores)
	}
	var sb strings.Builder
	if err := rep.WriteSummary(&sb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "per write") {
		t.Fatalf("summary has no cpu line:\n%s", sb.String())
	}
}

func TestRunNotesUnreadableProcess(t *testing.T) {
	cfg := shortCfg()
	cfg.CPUPIDs = []int{1 << 30} // above pid_max: never a process
	rep, err := Run(context.Background(), cfg, &fakeTarget{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.CPUProcesses != 0 || len(rep.Notes) == 0 || !strings.Contains(rep.Notes[len(rep.Notes)-1], "cpu not measured") {
		t.Fatalf("cpu_processes %d notes %q", rep.CPUProcesses, rep.Notes)
	}
}
