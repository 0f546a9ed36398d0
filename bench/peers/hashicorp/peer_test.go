package main

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/bench"
)

// TestPeerRunsAndCleansUp starts the 3-node cluster, runs a short closed
// loop through the same driver raftbench uses, and checks that writes
// committed, lag was sampled, and the data directory is gone afterwards.
func TestPeerRunsAndCleansUp(t *testing.T) {
	for _, preset := range []string{"default", "tuned"} {
		t.Run(preset, func(t *testing.T) {
			opts := presets[preset]
			opts.nodes, opts.parentDir, opts.logOutput = 3, t.TempDir(), io.Discard
			testPeerRun(t, opts)
		})
	}
}

func testPeerRun(t *testing.T, opts clusterOptions) {
	c, err := startCluster(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	leader := c.leader()
	if leader == nil {
		t.Fatal("no leader after startCluster returned")
	}
	cfg := bench.Config{Clients: 4, WriteFraction: 1, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, System: "hashicorp-raft", Nodes: 3}
	target := newApplyTarget(c, leader, 5*time.Second)
	rep, err := bench.Run(context.Background(), cfg, target, &lagSource{c: c, target: target}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ops == 0 || rep.Errors != 0 {
		t.Fatalf("ops %d errors %v", rep.Ops, rep.ErrorsByKind)
	}
	if len(rep.FollowerLag) != 2 {
		t.Fatalf("lag for %d followers, want 2", len(rep.FollowerLag))
	}
	// Every node applied the writes: the leader's FSM holds them.
	if applied := leader.raft.AppliedIndex(); applied < rep.Ops {
		t.Fatalf("leader applied index %d below %d committed ops", applied, rep.Ops)
	}
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Fatalf("data dir %s still exists (%v)", c.dir, err)
	}
}

func TestFSMApplyAndRestore(t *testing.T) {
	f := newKVFSM()
	cmd := encodePut([]byte("k1"), []byte("v1"))
	if r := f.Apply(raftLog{data: cmd}.log()); r != nil {
		t.Fatalf("apply: %v", r)
	}
	if r := f.Apply(raftLog{data: []byte{9}}.log()); r != errBadCommand {
		t.Fatalf("bad command gave %v", r)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newKVFSM()
	if err := g.Restore(io.NopCloser(&sink.buf)); err != nil {
		t.Fatal(err)
	}
	if string(g.mu.data["k1"]) != "v1" || len(g.mu.data) != 1 {
		t.Fatalf("restored %v", g.mu.data)
	}
}
