package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeStages is a LagSource that is also a StageSource: it records when
// it was reset (in ops the target had seen) and returns a fixed breakdown.
type fakeStages struct {
	fakeLag
	target *fakeTarget
	// resetErr, if set, is returned by ResetStages.
	resetErr error

	mu           sync.Mutex
	resets       int
	callsAtReset uint64
	reads        int
}

func (f *fakeStages) ResetStages(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resets++
	f.callsAtReset = f.target.calls.Load()
	return f.resetErr
}

func (f *fakeStages) Stages(ctx context.Context) (*StageBreakdown, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	st := func(name string, p50 int64) StageStat {
		return StageStat{Name: name, Count: 10, P50Us: p50, P99Us: 2 * p50, MaxUs: 3 * p50, MeanUs: float64(p50)}
	}
	return &StageBreakdown{
		Leader: 1, SampleEvery: 64,
		Stages: []StageStat{st("queue", 11), st("leader_wal", 222), st("replication", 333), st("durable", 344),
			st("loop", 12), st("commit_to_applied", 44), st("applied_to_reply", 5), st("total", 416)},
		Followers: []NodeStageStat{{Node: 2, Role: "follower", StageStat: st("replication_rtt", 350)}},
		Fsync: []NodeStageStat{{Node: 1, Role: "leader", StageStat: StageStat{Name: "wal_fsync", Count: 99, P50Us: 128, P99Us: 512, MaxUs: 1024, Approx: true}},
			{Node: 2, Role: "follower", StageStat: StageStat{Name: "wal_fsync", Count: 98, P50Us: 256, P99Us: 512, MaxUs: 2048, Approx: true}}},
	}, nil
}

// TestRunReportsStages: a run whose LagSource is a StageSource resets it
// once, after warm-up, reads it once, and the summary, the JSON and -out's
// plot carry the breakdown.
func TestRunReportsStages(t *testing.T) {
	target := &fakeTarget{delay: 100 * time.Microsecond}
	src := &fakeStages{fakeLag: fakeLag{perCall: 10, behind: map[uint64]uint64{2: 1}}, target: target}
	rep, err := Run(context.Background(), shortCfg(), target, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if src.resets != 1 || src.reads != 1 {
		t.Fatalf("reset %d times, read %d times; want once each", src.resets, src.reads)
	}
	if src.callsAtReset == 0 {
		t.Error("stages were reset before any warm-up op was sent")
	}
	if rep.Stages == nil || rep.Stages.Stage("total").P50Us != 416 {
		t.Fatalf("report stages %+v", rep.Stages)
	}

	var sum bytes.Buffer
	if err := rep.WriteSummary(&sum); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stages (leader 1, 1 in 64 writes timed, 10 samples)", "queue", "leader_wal",
		"replication", "commit_to_applied", "applied_to_reply", "total", "416µs", "832µs", "1.25ms",
		"replication_rtt to 2", "wal_fsync on 2 (follower)", "(bucket bounds)"} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum.String())
		}
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var m struct {
		Stages struct {
			Leader      uint64 `json:"leader"`
			SampleEvery int    `json:"sample_every"`
			Stages      []map[string]any
			Followers   []map[string]any
			Fsync       []map[string]any
		} `json:"stages"`
	}
	if err := json.Unmarshal(js.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m.Stages.Leader != 1 || m.Stages.SampleEvery != 64 || len(m.Stages.Stages) != 8 ||
		len(m.Stages.Followers) != 1 || len(m.Stages.Fsync) != 2 {
		t.Fatalf("JSON stages: %+v", m.Stages)
	}
	for _, s := range m.Stages.Stages {
		for _, k := range []string{"name", "count", "p50_us", "p99_us", "max_us", "mean_us"} {
			if _, ok := s[k]; !ok {
				t.Errorf("JSON stage %v lacks %q", s["name"], k)
			}
		}
	}
	if m.Stages.Fsync[1]["node"] != float64(2) || m.Stages.Fsync[1]["role"] != "follower" || m.Stages.Fsync[1]["approx"] != true {
		t.Errorf("JSON fsync: %v", m.Stages.Fsync[1])
	}
	back, err := ReadReport(bytes.NewReader(js.Bytes()))
	if err != nil || back.Stages.Stage("durable").P99Us != 688 {
		t.Fatalf("read back: %v %+v", err, back.Stages)
	}

	dir := t.TempDir()
	if err := rep.WriteOut(dir); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, filepath.Join(dir, rep.BaseName()+"-stages.png"))
}

// TestRunWithoutStages: no StageSource, no breakdown and no stages plot;
// a failed reset leaves a note instead of a breakdown.
func TestRunWithoutStages(t *testing.T) {
	rep := runShort(t)
	if rep.Stages != nil {
		t.Fatalf("stages without a source: %+v", rep.Stages)
	}
	dir := t.TempDir()
	if err := rep.WriteOut(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, rep.BaseName()+"-stages.png")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stages plot without stages: %v", err)
	}

	target := &fakeTarget{delay: 100 * time.Microsecond}
	src := &fakeStages{fakeLag: fakeLag{perCall: 10}, target: target, resetErr: errors.New("admin down")}
	rep, err := Run(context.Background(), shortCfg(), target, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stages != nil || src.reads != 0 || !strings.Contains(strings.Join(rep.Notes, "\n"), "admin down") {
		t.Fatalf("failed reset: stages %+v, %d reads, notes %q", rep.Stages, src.reads, rep.Notes)
	}
}
