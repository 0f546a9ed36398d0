// Command hashicorp is the hashicorp/raft peer of raftbench: it runs a
// 3-node hashicorp/raft v1.8.0 cluster in one process and measures it with
// the same driver (github.com/raftpipe/raftpipe/bench) that measures
// raftpipe, so both results come from identical measurement code and share
// one JSON format.
//
//	cd bench/peers/hashicorp && go run . -clients 16 -duration 5s -warmup 1s -json
//
// It lives in its own Go module so the main module never depends on
// hashicorp/raft; go.mod replaces github.com/raftpipe/raftpipe with the
// checkout three directories up.
//
// # The cluster
//
//   - Transport: raft.NewTCPTransport on 127.0.0.1:0 per node, so every
//     message crosses real loopback TCP (the same path raftpipe's local
//     cluster uses), connection pool of 3 per peer, 10 s I/O timeout.
//     hashicorp's network transport pipelines AppendEntries to followers.
//   - Log and stable store: hashicorp/raft-wal v0.4.0, one directory per
//     node in a temporary directory (removed afterwards; -dir to choose the
//     parent). raft-wal fsyncs every StoreLogs call: durable before ack, as
//     raftpipe's WAL is.
//   - Snapshots: raft.FileSnapshotStore in the same directory, retain 1.
//     With the default SnapshotInterval (120 s) and SnapshotThreshold (8192)
//     a run of a few minutes or less may take one or two snapshots of the
//     in-memory map, as a real deployment would.
//   - FSM: an in-memory map[string][]byte behind a mutex; a command is
//     op(1) | key length(2, big endian) | key | value.
//
// # Configuration and why
//
// raft.DefaultConfig() except:
//
//   - BatchApplyCh = true (flag -batch-apply): applyCh is buffered to
//     MaxAppendEntries, so the leader's group-commit loop finds several
//     proposals waiting and writes them with one StoreLogs (one fsync).
//     This is hashicorp's own knob for throughput; leaving it off would
//     handicap the peer under concurrent load. On the 2-core development
//     machine (shared with other work, so noisy) it made no measurable
//     difference: 64 clients, 4 s runs, alternating: 9474 vs 9850 and
//     8236 vs 7885 ops/s (on vs off). It is kept on as the setting a
//     throughput-minded user would pick; -batch-apply=false to compare.
//   - MaxAppendEntries = 64 (the default; flag -max-append-entries, at most
//     1024): the largest batch per AppendEntries and per group commit.
//   - Logger at WARN (the default DEBUG would log on the hot path).
//   - Timeouts are the defaults (heartbeat 1 s, election 1 s, leader lease
//     500 ms, commit 50 ms): they affect failover, not steady-state commit.
//
// # What is measured
//
// Target.Do is leader.Apply(cmd, applyTimeout).Error(): it returns after
// the entry is committed by a majority (fsynced on each) and applied to the
// leader's FSM. Only writes are supported. If leadership moves during a
// run (on a loaded machine the 1 s heartbeat timeout can fire), the op that
// hit the old leader is counted as a not_leader or leadership_lost error,
// not retried, and the target waits for the new leader and sends the
// following ops there, as a redirecting client would. Follower lag comes from the
// in-process nodes: leader LastIndex(), the leader's commit_index (Stats),
// and each follower's LastIndex() (its durable last log index, which is
// what the leader's match index tracks).
package main
