package cluster

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/bench"
)

// TestRunReadsStages runs the driver briefly against an embedded cluster
// in direct mode and checks that the report has the leader's breakdown
// (every stage sampled) and every node's fsync; then reads the same
// through the nodes' admin endpoints, as raftbench -cluster -admin does.
func TestRunReadsStages(t *testing.T) {
	ctx := context.Background()
	c, err := Start(ctx, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := bench.Config{Clients: 8, Duration: 500 * time.Millisecond, Warmup: 200 * time.Millisecond,
		PayloadBytes: 64, Keys: 1000, System: "raftpipe", Mode: "direct", Nodes: 3}
	rep, err := bench.Run(ctx, cfg, &DirectTarget{C: c}, &Lag{C: c}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := rep.Stages
	if b == nil {
		t.Fatalf("no stages; notes %q", rep.Notes)
	}
	if l := c.Leader(); l == nil || b.Leader != l.ID() {
		t.Errorf("stages from node %d, leader is %v", b.Leader, l)
	}
	names := []string{"queue", "leader_wal", "replication", "durable", "loop", "commit_to_applied", "applied_to_reply", "total"}
	if len(b.Stages) != len(names) {
		t.Fatalf("stages %+v", b.Stages)
	}
	for i, s := range b.Stages {
		if s.Name != names[i] || s.Count == 0 {
			t.Errorf("stage %d: %+v, want %s with samples", i, s, names[i])
		}
	}
	// The window excludes warm-up: at most the window's writes (plus those
	// in flight at its edges) were sampled.
	if n := b.Stage("total").Count; n > int64(rep.Ops)/int64(b.SampleEvery)+int64(cfg.Clients)+1 {
		t.Errorf("%d samples for %d ops at 1 in %d: warm-up counted?", n, rep.Ops, b.SampleEvery)
	}
	if len(b.Fsync) != 3 || len(b.Followers) != 2 {
		t.Errorf("fsync for %d nodes, round trips to %d followers; want 3 and 2", len(b.Fsync), len(b.Followers))
	}
	var sum strings.Builder
	if err := rep.WriteSummary(&sum); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sum.String(), "stages (leader") || !strings.Contains(sum.String(), "commit_to_applied") {
		t.Errorf("summary lacks the stages:\n%s", sum.String())
	}

	var h HTTPLag
	for _, n := range c.Nodes {
		srv := httptest.NewServer(n.AdminHandler())
		defer srv.Close()
		h.AdminAddrs = append(h.AdminAddrs, strings.TrimPrefix(srv.URL, "http://"))
	}
	got, err := h.Stages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Leader != b.Leader || got.Stage("total").Count < b.Stage("total").Count || len(got.Fsync) != 3 {
		t.Errorf("admin stages %+v, direct %+v", got, b)
	}
	if err := h.ResetStages(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := h.Stages(ctx); err != nil || got.Stage("total").Count != 0 {
		t.Errorf("after reset over HTTP: %v, %d samples", err, got.Stage("total").Count)
	}
}
