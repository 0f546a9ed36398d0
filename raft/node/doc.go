// Package node is raftpipe's runtime: a Node is one member of a cluster,
// the deterministic core (package raft) with everything it leaves out
// around it: the WAL (package wal), the peer transport (raft/transport),
// the state machine (raft/sm's interface; raft/kv by default), the client
// server and the admin HTTP handler. Start opens or creates the data
// directory, recovers, and serves; Stop ends every goroutine the node
// started. cmd/raftnode is a Node plus flags; bench/cluster embeds a whole
// cluster in one process.
//
//	n, err := node.Start(node.Config{ID: 1, ClusterID: 7, DataDir: dir,
//		PeerAddr: ":7001", ClientAddr: ":7002", Members: members, Bootstrap: true})
//	defer n.Stop()
//	idx, err := n.Put(ctx, key, value) // or n.Do, or the client protocol
//
// # Host and replicas
//
// A Node is the host: one per process, it owns what every Raft group on
// it shares, the WAL, the transport, the client server, the admin handler
// and the counters (node.go). Each group is a replica (replica.go): the
// RawNode, its storage adapter over a logView (the WAL methods a replica
// may call, and no others), the applier and the state machine, the
// waiters, and the loop that owns them. The transport's handlers route
// every message and snapshot by its Group to that group's replica, and
// drop, count and log one for a group the host lacks (route.go); every
// message a replica sends carries its group.
//
// # Many groups
//
// Config.Groups = G shards keys over G groups by wire.GroupOf (a static
// shard map; every group has the same members). The host has G replicas:
// replica g logs through wal.Group(g), so all groups share the WAL's
// writer and each fsync, and (for G > 1) applies to kv.Engine.Group(g),
// one Pebble database for all (groups.go). Submit answers OpShardMap
// itself and routes everything else by key; Do, Put and Get go through it
// (facade.go). G is recorded in DataDir/GROUPS when the directory is
// created and a different G is refused (ErrGroupsMismatch). One host
// ticker ticks only the replicas that are not quiesced, which catch up
// with RawNode.TickQuiesced before their next input; a lost peer
// connection is reported to every group (ticker.go). A leader that is not
// its group's preferred voter (position g mod N in ID order) hands
// leadership to it once that voter is caught up (balance.go). The
// administrative calls (Status, AddMember, TransferLeadership, ...) act
// on group 0. docs/runtime.md, "Many groups", has the diagrams.
//
// # The state machine knows no membership
//
// The runtime applies committed entries to an sm.StateMachine and asks it
// for reads by key, flushes, snapshots and restores. Membership is the
// runtime's: the WAL stores it with the log's base (wal.Base) and the
// conf-change entries after the base record every change, so start-up
// rebuilds it from the log (recoverMembers), and snapshots are framed by
// the runtime as (index, term, membership) in front of the state
// machine's own bytes (snapframe.go).
//
// # Goroutines and ownership
//
// One goroutine owns each mutable structure (docs/runtime.md has the table):
//
//   - each replica's loop (loop.go) owns the RawNode, the address book
//     and membership, snapshot bookkeeping and pending ReadIndex batches.
//     It follows the core's call contract in raft/doc.go, and
//     handleReady's comments cite its step numbers (3a send, 3b persist,
//     3c apply, 3d reads).
//   - each replica's apply goroutine (apply.go) owns applying committed
//     entries to the state machine and answering waiters; the waiter map
//     is guarded by a mutex grouped with it, because the loop registers
//     waiters. The membership history, which snapshot senders read, has
//     a mutex of its own.
//   - the WAL's flush loop owns the active segment; its completion
//     callbacks only record the durable position and wake the loop.
//   - the transport owns its connections and hands messages, through the
//     host's router, to a replica loop's bounded inbox (overflow is
//     dropped: Raft tolerates lost messages).
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
// state-machine Apply (one Pebble batch, for kv) per Ready, and answered by the apply goroutine when the
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
// goes through: WAL segments and directory syncs, the state machine (Pebble
// and its CURRENT switch, for kv), snapshot staging and the install file, the data directory's own
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
//     the base (from the snapshot's frame), in one durable record;
//  3. the state machine's Restore from the bytes after the frame (atomic
//     by itself);
//  4. snapshot.install is removed.
//
// At start-up a state machine behind the log's base can only be a crash
// between 2 and 3, and finishInstall restores snapshot.install; a crash
// before 2 leaves the old log and state, and the leader resends.
//
// # Reading order
//
// docs/runtime.md (the design and the decisions behind it), raft/sm (the
// state-machine seam), then node.go (Node, the host: Start, Stop, the
// shared parts), replica.go (a group's replica: recovery, membership at
// start-up, bootstrap), route.go (messages and snapshots routed by group),
// groups.go (the group count, per-group state machines and queue sizes),
// ticker.go (the host ticker, quiescence catch-up, lost peers), balance.go
// (leader spreading), facade.go (routing by key, the shard map, and the
// administrative calls on group 0), loop.go (the loop and
// handleReady), api.go (submit and the embedded API), apply.go (waiters
// and the apply goroutine), snapshot.go (send, stage, install,
// finishInstall), snapframe.go (the runtime's snapshot frame and the
// membership history), storage.go (logView and the core's Storage),
// members.go (membership and addresses), config.go (every bound, with the measurement that chose it),
// server.go (client protocol), http.go, adminauth.go and backup.go (the
// admin port), seed.go (restore from a backup), metrics.go and stages.go
// (/metrics and per-stage write latency).
package node
