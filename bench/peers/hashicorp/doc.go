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
//     In the default preset, SnapshotInterval (120 s) and SnapshotThreshold
//     (8192) may take a snapshot of the in-memory map (and compact the log
//     to TrailingLogs) once or twice in a run of a few minutes, as a real
//     deployment would. The tuned preset sets all three high, so none
//     happens during a run.
//   - FSM: an in-memory map[string][]byte behind a mutex; a command is
//     op(1) | key length(2, big endian) | key | value.
//
// # Configuration and why
//
// Two presets; make compare runs both, side by side.
//
// default (no flag): raft.DefaultConfig() as hashicorp ships it, except
// the logger at WARN (DEBUG would log on the hot path). BatchApplyCh off,
// MaxAppendEntries 64, no LogCache. Timeouts are the defaults (heartbeat
// 1 s, election 1 s, leader lease 500 ms, commit 50 ms): they affect
// failover, not steady-state commit. Before -tuned existed this peer ran
// with BatchApplyCh on and labelled the row "wal-fsync"; the committed
// compare results of 2026-11-26 are that configuration.
//
// tuned (-tuned): the best configuration this benchmark knows for
// hashicorp/raft, so make compare measures against the peer at its best:
//
//   - BatchApplyCh = true: applyCh is buffered to MaxAppendEntries, so the
//     leader's loop finds several proposals waiting and writes them with
//     one StoreLogs (one fsync). hashicorp's own knob for throughput.
//   - MaxAppendEntries = 512 (hashicorp's limit is 1024): the largest
//     batch per StoreLogs and per AppendEntries, so a burst from hundreds
//     of clients can go out as one fsync and one message per follower
//     rather than eight.
//   - raft.NewLogCache(512, store) around raft-wal: the leader's
//     replication goroutines read recent entries from memory instead of
//     raft-wal's segment files.
//   - TrailingLogs, SnapshotThreshold = 2^40 and SnapshotInterval = 24 h:
//     no snapshot and no log compaction during a run, so the comparison
//     is of the write path only.
//
// Each knob has its own flag (-batch-apply, -max-append-entries,
// -log-cache, -no-snapshots) that overrides the preset; a departure shows
// in the report's mode, e.g. "tuned-maxappend64".
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
// what the leader's match index tracks). CPU per write (cpu_us_per_op) is
// this one process, so all three nodes and the load generator, over the
// measurement window, as for raftbench's embedded cluster.
package main
