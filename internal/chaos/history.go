package chaos

import (
	"fmt"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// DefaultMaxHistoryOps bounds a History made by NewHistory. Checking is
// NP-hard in the concurrency of a history; a chaos run that records more
// operations than this is better split into shorter runs.
const DefaultMaxHistoryOps = 200_000

// opState is where one recorded operation stands.
type opState uint8

const (
	// opPending: invoked, not yet returned. Treated as indeterminate if
	// the history is checked before it returns.
	opPending opState = iota
	// opReturned: the client saw a definite response.
	opReturned
	// opIndeterminate: the client gave up without learning the outcome.
	opIndeterminate
	// opFailed: the operation definitely had no effect (refused by a
	// non-leader, shed by a busy node); it is left out of the check.
	opFailed
)

// record is one operation in a History.
type record struct {
	// client is the porcupine ClientId (the visualization's lane).
	client int
	// input is what was asked.
	input KVInput
	// output is what was observed (meaningful when state == opReturned).
	output KVOutput
	// call and ret are nanoseconds since the History started.
	call, ret int64
	// state says whether output and ret are meaningful.
	state opState
}

// History records client operations against the cluster for a
// linearizability check. It is safe for concurrent use by many clients.
//
// Timestamps come from a monotonic clock and are made strictly increasing
// under the History's lock, so the order of calls into the History is the
// real-time order the checker sees: a client must call Invoke before it
// sends a request and Return after it receives the response.
type History struct {
	// start is the zero of the timestamps; it carries a monotonic reading.
	start time.Time
	// maxOps bounds len(mu.ops).
	maxOps int

	// mu guards the recorded operations and the clock's last value.
	mu struct {
		sync.Mutex
		// ops is indexed by the id Invoke returned.
		ops []record
		// last is the last timestamp handed out.
		// Invariant: timestamps are strictly increasing.
		last int64
	}
}

// NewHistory returns an empty history bounded by DefaultMaxHistoryOps.
func NewHistory() *History { return NewHistoryLimit(DefaultMaxHistoryOps) }

// NewHistoryLimit returns an empty history that holds at most maxOps
// operations; Invoke panics beyond it (the test is too long to check).
func NewHistoryLimit(maxOps int) *History {
	if maxOps <= 0 {
		panic(fmt.Sprintf("chaos: REQUIRES maxOps > 0, got %d", maxOps))
	}
	return &History{start: time.Now(), maxOps: maxOps}
}

// nowLocked returns the next timestamp. REQUIRES: h.mu held.
func (h *History) nowLocked() int64 {
	t := int64(time.Since(h.start))
	if t <= h.mu.last {
		t = h.mu.last + 1
	}
	h.mu.last = t
	return t
}

// Invoke records that clientID is about to issue input and returns the
// operation's id for Return or Indeterminate.
//
// After an operation of a client ends Indeterminate, the request may still
// be in flight, so the client should continue under a fresh clientID (the
// checker does not care, but the visualization draws one lane per client
// and expects its operations not to overlap).
func (h *History) Invoke(clientID int, input KVInput) int {
	if input.Op < OpGet || input.Op > OpDelete {
		panic(fmt.Sprintf("chaos: REQUIRES a valid OpKind, got %d", input.Op))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.mu.ops) >= h.maxOps {
		panic(fmt.Sprintf("chaos: invariant violated: history exceeds maxOps %d", h.maxOps))
	}
	h.mu.ops = append(h.mu.ops, record{client: clientID, input: input, call: h.nowLocked()})
	return len(h.mu.ops) - 1
}

// Return records the definite response to operation id. Its Unknown field
// must be false: use Indeterminate for an unknown outcome.
func (h *History) Return(id int, output KVOutput) {
	if output.Unknown {
		panic("chaos: REQUIRES Return with a known outcome; use Indeterminate")
	}
	h.finish(id, output, opReturned)
}

// Indeterminate records that operation id ended without a known outcome:
// it may or may not have taken effect, now or at any later time.
func (h *History) Indeterminate(id int) {
	h.finish(id, KVOutput{Unknown: true}, opIndeterminate)
}

// Fail records that operation id definitely had no effect, as when a node
// answers "not leader" or "busy" without proposing it. It is left out of
// the history: an operation with no effect is the same as none. Use
// Indeterminate whenever there is doubt.
func (h *History) Fail(id int) {
	h.finish(id, KVOutput{}, opFailed)
}

// finish closes operation id exactly once.
func (h *History) finish(id int, out KVOutput, st opState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id < 0 || id >= len(h.mu.ops) {
		panic(fmt.Sprintf("chaos: REQUIRES an id from Invoke, got %d of %d", id, len(h.mu.ops)))
	}
	r := &h.mu.ops[id]
	if r.state != opPending {
		panic(fmt.Sprintf("chaos: invariant violated: operation %d finished twice", id))
	}
	r.output, r.state = out, st
	if st == opReturned {
		r.ret = h.nowLocked()
	}
}

// Len is the number of operations invoked so far.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.mu.ops)
}

// Operations returns the history in porcupine's form. Failed operations
// are left out. Operations that
// ended Indeterminate, or are still pending, get Output{Unknown: true}
// and a return time after every recorded event (porcupine's "infinity"),
// so they may be linearized anywhere after their call, including after
// everything else, which is the same as not at all. Reads with an unknown
// outcome constrain nothing and are left out, which keeps the check fast.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	end := h.nowLocked()
	out := make([]porcupine.Operation, 0, len(h.mu.ops))
	for _, r := range h.mu.ops {
		if r.state == opFailed {
			continue
		}
		op := porcupine.Operation{ClientId: r.client, Input: r.input, Call: r.call, Output: r.output, Return: r.ret}
		if r.state != opReturned {
			if r.input.Op == OpGet {
				continue
			}
			op.Output, op.Return = KVOutput{Unknown: true}, end
		}
		out = append(out, op)
	}
	return out
}
