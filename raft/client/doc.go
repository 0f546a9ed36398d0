// Package client is the Go client for a raftpipe node's client port.
//
// # Use
//
//	c, err := client.New(client.Config{Addrs: []string{"10.0.0.1:7001", "10.0.0.2:7001"}, ClusterID: 1})
//	defer c.Close()
//	idx, err := c.Put(ctx, key, value)
//	v, found, err := c.Get(ctx, key)          // linearizable (leader does ReadIndex)
//	v, found, err = c.GetStale(ctx, key)      // no leadership check; may be stale
//	swapped, cur, err := c.CAS(ctx, key, expect, value, false)
//
// A Client is safe for concurrent use and is meant to be shared: concurrent
// calls are pipelined on one connection per node, which is how it gets
// throughput. Keys and values passed in may be reused as soon as the call
// returns; values returned belong to the caller.
//
// # Protocol
//
// TCP (optionally TLS) to a node's client address. Each side first sends a
// wire.Handshake {ClusterID, NodeID (0 for the client), Version, Kind:
// wire.ConnClient, Features}; a different cluster ID, protocol version or
// kind makes the client drop the connection (ErrHandshake) and try another
// address. Compression is negotiated from the Features both sides offer and
// Config.Wire.Compression. Then the client sends wire.ClientRequest frames
// and the node answers wire.ClientResponse frames with the same ID, in any
// order. Many requests are outstanding per connection, up to
// Config.MaxInflight.
//
// # Structure
//
//	caller ──encode into conn write buffer, register in pending map──┐
//	                                                                 v
//	          writer goroutine: takes the whole buffer, one write(2) per batch
//	          reader goroutine: decodes responses, looks up the ID, signals the
//	                            caller's pooled call (a reusable channel)
//
// Requests are encoded by the calling goroutine straight into the
// connection's buffer, so nothing is handed between goroutines but a wake-up;
// everything queued while a write is in progress goes out in the next one.
// The writer yields once before taking the buffer so that callers already
// runnable can add to the batch (against the test server, 256 callers went
// from 1.6 to ~38 requests per write(2)). The typed methods allocate
// nothing per call except the value a Get or failed CAS returns
// (BenchmarkClientPutZeroAlloc guards this).
// A caller holds one of MaxInflight slots from before it enqueues until its
// attempt ends, which bounds the pending map and the write buffer.
// Connections are dialled lazily, one per node address in use, by a
// goroutine of their own so a caller that gives up does not leave a
// half-open connection. Close fails every pending call and waits for all of
// these goroutines.
//
// # Groups and routing
//
// A cluster may shard its keys over several Raft groups; each node knows
// the shard map, and key k belongs to group wire.GroupOf(k, groups) (the
// empty key, and so Noop, to group 0). Before its first request the
// Client asks a node for the map (wire.OpShardMap; concurrent first
// callers share one fetch, which tries each known address once) and then
// keeps one route per group: the address that group's requests go to.
// First requests wait for that fetch at most 100 ms and then go ahead
// routed as one group, so a node that accepts connections but hangs
// costs them no more than that.
// Every request is sent to its key's route, so once the map is cached a
// key goes straight to its group's leader, and groups led by different
// nodes are served by different connections in parallel. Connections stay
// one per node address, shared by every group that node leads.
//
// The map is a routing cache, never needed for correctness: a node routes
// each request by its key itself and answers StatusNotLeader, with the
// leader of that key's group as the hint, when it does not lead that
// group. A node that predates shard maps answers OpShardMap with
// StatusBadRequest; the Client then treats the cluster as one group and
// behaves exactly as it did before groups existed. An unreadable map (a
// newer format) is treated the same way.
//
// The map is fetched again, in the background (no caller waits), when a
// call needed two StatusNotLeader answers (leaders are moving), after a
// lost connection is re-established, and after a fetch that no node
// answered; at most once per 100 ms. A map with another group count
// replaces every route; one with the same count moves only the routes of
// groups whose leader it names. ShardMap returns the routes, Leader group
// 0's confirmed leader.
//
// # Leader discovery
//
// Each group's route starts at the leader the map names, or else at the
// node that sent the map (initially, Config.Addrs[0]). A StatusNotLeader
// answer with a LeaderHint moves that group's route to the hinted address
// at once (learning it if it is not configured); without a hint the
// group's route moves to the next address after a short backoff (2 ms
// doubling to 100 ms) so an election can finish. Either way no other
// group's route changes: a node's answer for one group says nothing about
// the others. When an address cannot be reached, or a request sent to it
// got no answer, every group routed to it moves to the next address. A
// route moves once per failure seen, not once per concurrent caller.
// Leader reports the address that last answered a linearizable request of
// group 0.
//
// # Retry rules (these matter for linearizability)
//
// A call makes at most 1+Config.MaxRetries attempts. An attempt is retried
// automatically only when that cannot apply an operation twice:
//
//  1. The request certainly did not apply: the node answered StatusNotLeader
//     or StatusBusy, or the request never reached a connection (dial, TLS or
//     handshake failed; the connection failed before the writer took the
//     request; the attempt timed out before it was enqueued). Any operation
//     is retried.
//  2. The operation is idempotent: Get, GetStale, Noop and NoopKey (and
//     Do with OpGet, OpNoop or OpShardMap). These are retried also when the connection broke
//     after sending, the attempt timed out, or the node answered
//     StatusUnknown. A retried read is still linearizable: it takes effect
//     at some point within the call.
//
// A write (Put, Delete, CAS, or Do with another Op) that was sent, or
// may have been sent, and got no answer (connection broke, attempt
// timeout, the caller's context ended, Close) is NOT retried: sending it
// again could apply it twice, or apply it after a later write. It returns
// ErrUnknownOutcome wrapping the cause (errors.Is works for both, e.g.
// ErrUnknownOutcome and context.Canceled). The write may have applied, or
// may still apply later; a linearizability checker must record it as
// indeterminate. A StatusUnknown answer is reported the same way.
//
// A request counts as "may have been sent" from the moment it is encoded
// into the connection's write buffer; only a request whose connection
// failed while it was still waiting in that buffer counts as not sent.
//
// # Timeouts
//
// If the call's context has a deadline, it alone bounds the call. If not,
// each attempt (connect, waiting for an in-flight slot, and waiting for the
// answer) is bounded by Config.RequestTimeout, and a timed-out attempt ends
// with ErrTimeout (wrapped in ErrUnknownOutcome for a write that was sent).
// A context that ends makes the call return an error wrapping ctx.Err().
//
// # Errors
//
// ErrNotLeader, ErrBusy and ErrUnavailable are returned when retries run
// out; the operation was not applied. ErrBadRequest and ErrServer carry the
// node's text and are never retried. A CAS whose comparison fails is not an
// error: it returns swapped=false and the current value.
package client
