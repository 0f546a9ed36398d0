package client

import (
	"sync"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// call is one operation's waiting slot: the reader fills in the response
// fields and signals done. Calls are pooled, so a steady stream of requests
// allocates no channels or timers.
//
// Ownership: the caller owns a call except while it is in a conn's pending
// map; whoever removes it from the map (reader, fail, or the caller via
// withdraw) decides whether done is signalled. Invariant: a call returned to
// the pool has nothing in done and a stopped timer.
type call struct {
	// done carries nil (response fields are set) or a *connError. Capacity
	// 1, so the signaller never blocks.
	done chan error
	// timer bounds an attempt (when the context has no deadline) and times
	// retry backoff. Reused with Reset; Go 1.23 timer semantics mean a
	// stopped timer delivers nothing stale.
	timer *time.Timer
	// id is the request ID on the connection the call is pending on.
	id uint64
	// batch is the write-buffer batch the request was encoded into; see
	// conn.mu.batch.
	batch uint64
	// wantValue says the caller needs Value; only then is it copied out of
	// the reader's frame buffer (which the next frame overwrites).
	wantValue bool

	// Response fields, written by the reader before it signals done.

	// status is the node's answer.
	status wire.Status
	// index is the applied or read index.
	index uint64
	// value is a private copy of the response value, when wantValue.
	value []byte
	// hint is the leader's client address on StatusNotLeader.
	hint string
	// errMsg is the node's text for StatusBadRequest and StatusError.
	errMsg string
}

var callPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &call{done: make(chan error, 1), timer: t}
}}

// getCall returns a reset call from the pool.
func getCall(wantValue bool) *call {
	cl := callPool.Get().(*call)
	cl.wantValue = wantValue
	return cl
}

// putCall returns cl to the pool. REQUIRES: cl is in no pending map and its
// done channel is empty.
func putCall(cl *call) {
	select {
	case <-cl.done:
		panic("client: invariant violated: call returned to the pool with a signal in done")
	default:
	}
	cl.timer.Stop()
	*cl = call{done: cl.done, timer: cl.timer}
	callPool.Put(cl)
}

// setResponse copies what the caller needs out of r, whose Value aliases the
// reader's frame buffer.
func (cl *call) setResponse(r *wire.ClientResponse) {
	cl.status = r.Status
	cl.index = r.Index
	cl.hint = r.LeaderHint
	cl.errMsg = r.Err
	if cl.wantValue {
		cl.value = append([]byte{}, r.Value...)
	}
}
