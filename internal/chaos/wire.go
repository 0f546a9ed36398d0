package chaos

import (
	"errors"
	"fmt"

	"github.com/raftpipe/raftpipe/wire"
)

// ErrUnexpectedResponse is returned when a client response cannot be the
// answer to its request (say, StatusCASFailed to a put): a server bug
// that a chaos test should report, not record.
var ErrUnexpectedResponse = errors.New("chaos: response does not fit its request")

// Outcome classifies a client response for the History.
type Outcome uint8

const (
	// OutcomeDefinite: the operation took effect (or, for a read or a
	// failed CAS, observed the state) as the output says. Record with
	// History.Return.
	OutcomeDefinite Outcome = iota + 1
	// OutcomeNoEffect: the node refused the request before proposing it
	// (not leader, busy, bad request). Record with History.Fail.
	OutcomeNoEffect
	// OutcomeUnknown: the operation may or may not take effect. Record
	// with History.Indeterminate.
	OutcomeUnknown
)

// WireInput maps a client request to a model input. ok is false for
// requests the model does not check: OpNoop, and gets with FlagStale
// (which promise no linearizability).
func WireInput(req *wire.ClientRequest) (in KVInput, ok bool) {
	in = KVInput{Key: string(req.Key), Value: string(req.Value), Expect: string(req.Expect)}
	switch req.Op {
	case wire.OpGet:
		if req.Flags&wire.FlagStale != 0 {
			return KVInput{}, false
		}
		in.Op = OpGet
	case wire.OpPut:
		in.Op = OpPut
	case wire.OpDelete:
		in.Op = OpDelete
	case wire.OpCAS:
		in.Op = OpCAS
		in.ExpectAbsent = req.Flags&wire.FlagExpectAbsent != 0
	default:
		return KVInput{}, false
	}
	return in, true
}

// WireOutput maps the response to a request with input in.
func WireOutput(in KVInput, resp *wire.ClientResponse) (KVOutput, Outcome, error) {
	switch resp.Status {
	case wire.StatusNotLeader, wire.StatusBusy, wire.StatusBadRequest:
		return KVOutput{}, OutcomeNoEffect, nil
	case wire.StatusUnknown, wire.StatusError:
		return KVOutput{Unknown: true}, OutcomeUnknown, nil
	case wire.StatusOK:
		switch in.Op {
		case OpGet:
			return KVOutput{Found: true, Value: string(resp.Value)}, OutcomeDefinite, nil
		case OpCAS:
			return KVOutput{Swapped: true}, OutcomeDefinite, nil
		default:
			return KVOutput{}, OutcomeDefinite, nil
		}
	case wire.StatusNotFound:
		if in.Op == OpGet {
			return KVOutput{Found: false}, OutcomeDefinite, nil
		}
	case wire.StatusCASFailed:
		if in.Op == OpCAS {
			return KVOutput{Swapped: false, Observed: true, Value: string(resp.Value)}, OutcomeDefinite, nil
		}
	}
	return KVOutput{}, 0, fmt.Errorf("%w: status %d to %v of %q", ErrUnexpectedResponse, resp.Status, in.Op, in.Key)
}

// RecordWire finishes operation id (invoked with input in) from a client
// response; a nil resp means no answer arrived (timeout, broken
// connection) and records Indeterminate. On ErrUnexpectedResponse the
// operation is recorded Indeterminate too, so the history stays complete,
// and the error is returned for the test to fail on.
func (h *History) RecordWire(id int, in KVInput, resp *wire.ClientResponse) error {
	if resp == nil {
		h.Indeterminate(id)
		return nil
	}
	out, outcome, err := WireOutput(in, resp)
	switch {
	case err != nil:
		h.Indeterminate(id)
		return err
	case outcome == OutcomeDefinite:
		h.Return(id, out)
	case outcome == OutcomeNoEffect:
		h.Fail(id)
	default:
		h.Indeterminate(id)
	}
	return nil
}
