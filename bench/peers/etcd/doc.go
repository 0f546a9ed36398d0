// Command etcd is the etcd peer of raftbench: it runs a 3-member etcd
// v3.7.3 cluster as three server processes on 127.0.0.1 and measures it
// with the same driver (github.com/raftpipe/raftpipe/bench) that measures
// raftpipe and hashicorp/raft, so the results share one JSON format and
// one measurement code.
//
//	cd bench/peers/etcd && go build -o ../../../bin/etcd-peer . && ../../../bin/etcd-peer -clients 16 -duration 5s -warmup 1s
//
// # The build
//
// This is a tools-style build of the etcd server: main imports
// go.etcd.io/etcd/server/v3/etcdmain, the package behind the etcd binary,
// and runs it when the first argument is "member"; with any other
// arguments the binary is the load driver. `go install
// go.etcd.io/etcd/v3@v3.7.3` does not work because etcd's go.mod files
// carry replace directives (to sibling directories of etcd's repository),
// which go install refuses. This module instead requires
// go.etcd.io/etcd/server/v3, client/v3, api/v3, client/pkg/v3 and pkg/v3 at
// v3.7.3 directly: replace directives apply only in the main module, so
// etcd's are ignored and every etcd module resolves to its tagged version
// through the module proxy (api, client/pkg and pkg are required by
// server/v3 at v3.7.3 too, so `go mod tidy` marks some of them indirect).
// A build compiles about 650 packages, 430 outside the standard library (a
// minute or more on 2 shared cores when nothing is cached);
// scripts/compare.sh builds it once per run into bin/etcd-peer.
//
// It lives in its own Go module so the main module never depends on etcd;
// go.mod replaces github.com/raftpipe/raftpipe with the checkout three
// directories up (for the bench driver and internal/loopback).
//
// # The cluster
//
// Three processes of this binary in member mode, each an unmodified etcd
// server with etcd's default configuration except what a local cluster
// must set: --name, --data-dir (in a temporary directory, removed
// afterwards; -dir chooses the parent), listen and advertise URLs on
// 127.0.0.1 ports from internal/loopback, --initial-cluster and a token
// unique to the run, and --log-level warn (as the hashicorp peer's
// logger). So: fsync on (the WAL fdatasyncs before a proposal is
// acknowledged, bbolt commits every 100 ms or 10000 writes), snapshot
// every 10000 applied entries, heartbeat 100 ms, election 1 s, no
// auto-compaction, 2 GiB backend quota (a 10 s run writes well under
// 100 MB). The members' logs go to mN.log in the data directory and are
// shown if a member exits before the cluster is ready.
//
// After the run the members get SIGTERM and, after 2 s, SIGKILL: the data
// is discarded, and the last member to stop has no quorum and would wait
// about 5 s for its peers.
//
// # What is measured
//
// Target.Do is clientv3 KV.Put(key, value) on the leader's client URL,
// returning once the write is committed (fsynced on a majority) and
// applied by the leader, as etcd acknowledges every Put. Logical clients
// share -conns gRPC connections (default 4, as raftbench's client mode)
// round-robin. Only writes are supported. Errors are classified from
// etcd's rpctypes and gRPC codes (not_leader, busy, timeout, unavailable,
// no_space).
//
// CPU per write (cpu_us_per_op) is this driver process (getrusage) plus
// the three members (/proc/PID/stat utime+stime), read when the
// measurement window opens and when it closes; see bench/cpu.go.
//
// Follower lag comes from Status on each member every 100 ms over a
// connection per member (-no-lag turns it off). etcd does not report a
// follower's durable log index to clients, so a follower's index is its
// raft commit index (Status.RaftIndex), and the leader's last and commit
// index are both its commit index.
package main
