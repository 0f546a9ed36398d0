package main

import (
	"context"
	"os"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/etcdmain"

	"github.com/raftpipe/raftpipe/bench"
)

// TestMain lets the test binary serve as the member program, as the
// peer's own binary does, so the test needs no separate build.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == memberArg {
		etcdmain.Main(append([]string{"etcd"}, os.Args[2:]...))
		return
	}
	os.Exit(m.Run())
}

// TestPeerRunsAndCleansUp starts 3 member processes, runs a short closed
// loop through the driver raftbench uses, and checks that writes
// committed, CPU was charged to all four processes, lag was sampled, and
// the members and their data directory are gone afterwards.
func TestPeerRunsAndCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 etcd processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := startCluster(ctx, clusterOptions{nodes: 3, parentDir: t.TempDir(), memberCmd: []string{exe, memberArg}})
	if err != nil {
		t.Fatal(err)
	}
	leader, err := c.waitReady(ctx)
	if err != nil {
		t.Fatal(err)
	}
	target, err := newPutTarget(leader.clientURL, 2)
	if err != nil {
		t.Fatal(err)
	}
	cfg := bench.Config{Clients: 4, WriteFraction: 1, Duration: 500 * time.Millisecond, Warmup: 200 * time.Millisecond,
		System: "etcd", Nodes: 3, CPUPIDs: c.pids()}
	rep, err := bench.Run(ctx, cfg, target, &lagSource{c: c}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ops == 0 || rep.Errors != 0 {
		t.Fatalf("ops %d errors %v", rep.Ops, rep.ErrorsByKind)
	}
	if rep.CPUProcesses != 4 || rep.CPUUsPerOp <= 0 {
		t.Fatalf("cpu over %d processes, %.1fµs per op (notes %q)", rep.CPUProcesses, rep.CPUUsPerOp, rep.Notes)
	}
	if len(rep.FollowerLag) != 2 {
		t.Fatalf("lag for %d followers, want 2", len(rep.FollowerLag))
	}
	if err := target.close(); err != nil {
		t.Fatal(err)
	}
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.members {
		select {
		case <-m.exited:
		default:
			t.Fatalf("member %s still running", m.name)
		}
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Fatalf("data dir %s still exists (%v)", c.dir, err)
	}
}
