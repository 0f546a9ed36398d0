// Package node is raftpipe's runtime: a Node is one member of a cluster,
// the deterministic core (package raft) with everything it leaves out
// around it: the WAL (package wal), the peer transport (raft/transport),
// the Pebble state machine (raft/kv), the client server and the admin
// HTTP handler. Start opens or creates the data directory, recovers, and
// serves; Stop ends every goroutine the node started. cmd/raftnode is a
// Node plus flags; bench/cluster embeds a whole cluster in one process.
//
//	n, err := node.Start(node.Config{ID: 1, ClusterID: 7, DataDir: dir,
//		PeerAddr: ":7001", ClientAddr: ":7002", Members: members, Bootstrap: true})
//	defer n.Stop()
//	idx, err := n.Put(ctx, key, value) // or n.Do, or the client protocol
//
// # Goroutines and ownership
//
// One goroutine owns each mutable structure (docs/runtime.md has the table):
//
//   - the loop (loop.go) owns the RawNode, the address book and membership,
//     snapshot bookkeeping and pending ReadIndex batches. It follows the
//     core's call contract in raft/doc.go, and handleReady's comments cite
//     its step numbers (3a send, 3b persist, 3c apply, 3d reads).
//   - the apply goroutine (apply.go) owns applying committed entries to
//     Pebble and answering waiters; the waiter map is guarded by a mutex
//     grouped with it, because the loop registers waiters.
//   - the WAL's flush loop owns the active segment; its completion
//     callbacks only record the durable position and wake the loop.
//   - the transport owns its connections and hands messages to the loop's
//     bounded inbox (overflow is dropped: Raft tolerates lost messages).
//   - the client server runs one reader and one writer per connection and
//     calls Submit; snapshot transfers run one goroutine each.
//
// Everything else reaches the loop through bounded channels (proposals,
// reads, rare events); nothing but the loop touches the RawNode.
//
// # One write path
//
// Every client write, whether from a client connection or Node.Do (Put
// wraps it), enters through Submit and takes one path: queued to the loop,
// proposed in a batch with everything else queued that turn (one Propose,
// one WAL write, one fsync), sent to followers before the local fsync ends,
// acknowledged to the core (AckPersisted) only once durable, applied in one
// Pebble batch per Ready, and answered by the apply goroutine when the
// entry at the waiter's (index, term) applies. An entry overwritten by
// another leader, or a write whose fate the node cannot learn (caller's
// context expired, node stopped, truncation), is answered not-leader or
// ErrUnknownOutcome, never as a failure that might have committed.
// Membership changes (AddMember, RemoveMember) are proposed on the loop as
// a rare event and wait for their entry the same way.
//
// # The file-system seam
//
// Config.FS (Pebble's vfs.FS) is the one file system every durable write
// goes through: WAL segments and directory syncs, Pebble and its CURRENT
// switch, snapshot staging and the install file, the data directory's own
// creation. Production code has no test hooks: the crash tests
// (crash_test.go) pass internal/crashfs and restart a node from a crash
// image taken at every sync and rename.
//
// # Snapshot install is ordered for crashes
//
// A follower stages a received snapshot (synced) before the core sees it,
// and installs it only when the core emits Ready.Snapshot, in an order
// whose every prefix recovers, since the log's marker is durable no later
// than the state it describes (installSnapshot in snapshot.go):
//
//  1. apply barrier; the staged file is renamed to snapshot.install and
//     the directory synced;
//  2. wal.Reset: the log continues after the snapshot, its membership at
//     the base, in one durable record;
//  3. kv.Restore (atomic by itself);
//  4. snapshot.install is removed.
//
// At start-up a state machine behind the log's base can only be a crash
// between 2 and 3, and finishInstall restores snapshot.install; a crash
// before 2 leaves the old log and state, and the leader resends.
//
// # Reading order
//
// docs/runtime.md (the design and the decisions behind it), then node.go
// (Node, Start, recovery), loop.go (the loop and handleReady), api.go
// (Submit and the embedded API), apply.go (waiters and the apply
// goroutine), snapshot.go (send, stage, install, finishInstall),
// storage.go (the WAL as the core's Storage), members.go (membership and
// addresses), config.go (every bound, with the measurement that chose it),
// server.go (client protocol), http.go, adminauth.go and backup.go (the
// admin port), seed.go (restore from a backup), metrics.go and stages.go
// (/metrics and per-stage write latency).
package node
