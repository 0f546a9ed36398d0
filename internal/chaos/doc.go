// Package chaos is the test-support harness for fault injection and
// linearizability checking. It holds the reusable pieces, and, in its
// tests, the cluster-level chaos tests that start real nodes (see
// "Cluster chaos tests" below).
//
// # What it is for
//
// A Raft cluster is correct when clients cannot tell it from a single
// copy of the store, whatever the network does. A chaos test therefore
// (1) runs a cluster whose peer links go through fault-injecting proxies,
// (2) drives concurrent clients while it partitions, delays, slows and
// severs links, (3) records every client operation in a History, and
// (4) checks the History for linearizability with porcupine.
//
// # Fault vocabulary
//
// A Proxy sits on one peer link, on loopback only: it listens on
// 127.0.0.1:0 and forwards each accepted connection to a 127.0.0.1 target
// (anything else is refused with ErrNotLoopback). Faults are set per
// Direction (Forward is dialer->target, Backward is target->dialer, Both)
// and may change at any time:
//
//   - pass: bytes flow unchanged (Pass, Heal).
//   - drop: a blackhole. Connections stay open, bytes are discarded. TCP
//     never delivers a stream with a hole, so a connection that lost bytes
//     is closed as soon as its direction forwards again; the peers see a
//     silent partition followed by a reset, and must reconnect.
//   - stall: bytes are held, not lost (bounded by MaxBufferedBytes, then
//     backpressure); they arrive late but intact when the stall ends.
//   - delay: fixed plus jitter latency per chunk, order preserved; the
//     jitter comes from the proxy's seeded source.
//   - slow: a bandwidth limit in bytes per second.
//   - sever: every current connection is closed and new ones are closed on
//     accept, until Heal: a crashed link or a restarted peer.
//
// A delayed, stalled or slowed direction holds at most MaxBufferedBytes
// per connection; beyond that the proxy stops reading, so the sender feels
// TCP backpressure exactly as it would on a congested link.
//
// A Network is a full mesh: one Proxy per directed pair, so node i dials
// Addr(i, j) to reach node j. Its operations compose (each adds faults,
// Heal removes all): Partition(groupA, groupB) cuts every link between the
// groups both ways; PartitionOneWay(from, to) cuts bytes from->to only,
// whichever side dialled; Isolate(node); Sever(node) resets every link of
// a node (a host crash); Flap(a, b, period) alternates partition and heal;
// Heal. NetworkConfig.Mode chooses whether a partition
// drops (default) or stalls. For faults on one link, use Network.Proxy.
//
// # Recording histories
//
// A History is shared by all clients of a run. Each client calls
// Invoke(clientID, input) just before sending a request and then exactly
// one of Return(id, output) on a definite answer, Fail(id) when the
// operation certainly had no effect (a node refused it before proposing:
// not leader, busy), or Indeterminate(id) when it cannot know whether the
// operation took effect (timeout, broken connection, StatusUnknown).
// RecordWire does this classification for a wire.ClientResponse, and
// WireInput maps a wire.ClientRequest to a KVInput. Timestamps come
// from a monotonic clock and are strictly increasing under the History's
// lock, so the order of calls into the History is the real-time order.
//
// An indeterminate write is recorded the porcupine way: output
// KVOutput{Unknown: true}, which the model accepts whatever the state, and
// a return time after every other event, so the checker may place it
// anywhere after its call, including after everything else, which is the
// same as never. Indeterminate reads constrain nothing and are omitted.
// After an indeterminate operation a client should continue under a fresh
// clientID, since its old request may still be in flight.
//
// # Checking and reporting
//
// KVModel specifies get, put, delete and compare-and-swap (with an
// expect-absent form; a failed CAS may report the current value, which is
// then checked too) on string keys, matching raft/kv's semantics, and is
// partitioned by key so each key is checked alone. Writers should use
// unique values so that a stale read cannot hide behind a repeated one.
// Check(h, timeout) returns porcupine's verdict. On a violation the error
// is a *CheckError wrapping ErrNotLinearizable; porcupine's HTML
// visualization (partial linearizations and where each fails) has been
// written to a file whose path the error names (VisualizationPath(err)).
// CheckOperations takes a CheckConfig with the run's Seed and an output
// directory; a failing chaos test should report both, e.g.
//
//	_, err := chaos.CheckOperations(h.Operations(), chaos.CheckConfig{Seed: seed, Timeout: time.Minute})
//	if err != nil {
//		t.Fatalf("%v", err) // "... not linearizable (seed 42, 1234 operations); visualization: /tmp/...html"
//	}
//
// A timeout yields porcupine.Unknown and ErrCheckTimedOut: no violation
// was found in the time given, which the caller may accept or not.
//
// toy_test.go is a worked example of the whole loop on a toy replicated
// register: it shows the harness catching a stale read caused by a one-way
// partition, and passing a correct design under partition, delay and
// sever with indeterminate outcomes.
//
// # Cluster chaos tests
//
// The package's tests run real raft/node clusters (WAL and Pebble in temp
// dirs) whose peer links all go through one Network: node i's
// node.Config.ResolvePeerAddr maps peer j to Addr(i, j). Clients use
// raft/client against the nodes' client ports directly.
//
//   - cluster_helpers_test.go: the cluster, built with internal/testcluster
//     (which starts, stops and wipes nodes) plus what only chaos needs:
//     converge, per-node store digests, the highest-term leader, and
//     slowFS, a WAL file system whose Sync sleeps for a per-node,
//     changeable delay (a slow disk).
//   - workload_test.go: six logical clients doing linearizable get, put and
//     CAS on five keys with unique values. A write that ends with
//     client.ErrUnknownOutcome (or any error but the "certainly not
//     applied" ones) is recorded Indeterminate and the worker continues
//     under a fresh client ID.
//   - cluster_test.go: TestChaos, one subtest per nemesis schedule:
//     leader-kill, leader-partition (both ways or one way), split-flip
//     (5 nodes, minority/majority splits that flip), flapping-links,
//     rolling-restart, wipe-follower (restart empty, rejoin by snapshot),
//     membership-under-partition (add a 4th node as learner, promote and
//     remove it while one voter is isolated), slow-disk (injected fsync
//     delay on the leader or a follower). After each: heal, restart,
//     commit a fence entry, wait until every member applied the leader's
//     commit index, read every key through the leader (recorded), require
//     every node's local value to match, stop the nodes and require
//     identical store digests (applied index and Store.Hash), and check
//     the whole history with porcupine.
//   - process_test.go: TestChaosProcess (with -chaos.process) does the same
//     with cmd/raftnode processes under SIGKILL and SIGSTOP/SIGCONT.
//   - negative_test.go: the negative control; a stale follower read
//     recorded as linearizable must be rejected.
//   - security_test.go and fuzz_test.go: wrong cluster IDs, mutual TLS,
//     oversized frames, and FuzzLiveNodePorts (arbitrary bytes to a live
//     node's peer and client ports, with and without a valid handshake;
//     the node must then still serve a put and a get). The seed corpus is
//     in testdata/fuzz/FuzzLiveNodePorts.
//   - termwrap_test.go: a peer claiming Term=MaxUint64 must not make a
//     node's term wrap (a bug FuzzLiveNodePorts found, now fixed).
//
// Flags: -chaos.seed (replay; every schedule prints its seed and the
// command to replay it), -chaos.duration (fault time per schedule,
// default 8s), -chaos.vizdir (where failing histories' HTML goes,
// default os.TempDir()), -chaos.report (append a Markdown row per
// schedule), -chaos.process. A long run:
//
//	go test ./internal/chaos -run Chaos -chaos.duration 10m -chaos.process -timeout 0 -v
//
// # Determinism
//
// The seeds make the choices of the harness repeatable (jitter samples,
// which faults a test schedules); the operating system's scheduling is
// not. A failing seed is a strong hint for reproduction, not a replay.
package chaos
