package chaos

import (
	"errors"
	"testing"

	"github.com/anishathalye/porcupine"
	"github.com/raftpipe/raftpipe/wire"
)

func TestWireInput(t *testing.T) {
	for _, tc := range []struct {
		req  wire.ClientRequest
		want KVInput
		ok   bool
	}{
		{wire.ClientRequest{Op: wire.OpGet, Key: []byte("k")}, get("k"), true},
		{wire.ClientRequest{Op: wire.OpGet, Key: []byte("k"), Flags: wire.FlagStale}, KVInput{}, false},
		{wire.ClientRequest{Op: wire.OpPut, Key: []byte("k"), Value: []byte("v")}, put("k", "v"), true},
		{wire.ClientRequest{Op: wire.OpDelete, Key: []byte("k")}, del("k"), true},
		{wire.ClientRequest{Op: wire.OpCAS, Key: []byte("k"), Expect: []byte("a"), Value: []byte("b")}, cas("k", "a", "b"), true},
		{wire.ClientRequest{Op: wire.OpCAS, Key: []byte("k"), Value: []byte("b"), Flags: wire.FlagExpectAbsent}, casAbsent("k", "b"), true},
		{wire.ClientRequest{Op: wire.OpNoop}, KVInput{}, false},
	} {
		got, ok := WireInput(&tc.req)
		if got != tc.want || ok != tc.ok {
			t.Errorf("WireInput(%+v) = %+v, %v; want %+v, %v", tc.req, got, ok, tc.want, tc.ok)
		}
	}
}

func TestWireOutput(t *testing.T) {
	for _, tc := range []struct {
		in      KVInput
		resp    wire.ClientResponse
		want    KVOutput
		outcome Outcome
		err     error
	}{
		{get("k"), wire.ClientResponse{Status: wire.StatusOK, Value: []byte("v")}, found("v"), OutcomeDefinite, nil},
		{get("k"), wire.ClientResponse{Status: wire.StatusNotFound}, absent, OutcomeDefinite, nil},
		{put("k", "v"), wire.ClientResponse{Status: wire.StatusOK}, ack, OutcomeDefinite, nil},
		{cas("k", "a", "b"), wire.ClientResponse{Status: wire.StatusOK}, swapped, OutcomeDefinite, nil},
		{cas("k", "a", "b"), wire.ClientResponse{Status: wire.StatusCASFailed, Value: []byte("z")},
			KVOutput{Observed: true, Value: "z"}, OutcomeDefinite, nil},
		{put("k", "v"), wire.ClientResponse{Status: wire.StatusNotLeader}, KVOutput{}, OutcomeNoEffect, nil},
		{put("k", "v"), wire.ClientResponse{Status: wire.StatusBusy}, KVOutput{}, OutcomeNoEffect, nil},
		{put("k", "v"), wire.ClientResponse{Status: wire.StatusUnknown}, KVOutput{Unknown: true}, OutcomeUnknown, nil},
		{del("k"), wire.ClientResponse{Status: wire.StatusError}, KVOutput{Unknown: true}, OutcomeUnknown, nil},
		{put("k", "v"), wire.ClientResponse{Status: wire.StatusCASFailed}, KVOutput{}, 0, ErrUnexpectedResponse},
		{put("k", "v"), wire.ClientResponse{Status: wire.StatusNotFound}, KVOutput{}, 0, ErrUnexpectedResponse},
	} {
		got, outcome, err := WireOutput(tc.in, &tc.resp)
		if got != tc.want || outcome != tc.outcome || !errors.Is(err, tc.err) {
			t.Errorf("WireOutput(%+v, status %d) = %+v, %v, %v; want %+v, %v, %v",
				tc.in, tc.resp.Status, got, outcome, err, tc.want, tc.outcome, tc.err)
		}
	}
}

func TestRecordWire(t *testing.T) {
	h := NewHistory()
	record := func(in KVInput, resp *wire.ClientResponse) error {
		return h.RecordWire(h.Invoke(0, in), in, resp)
	}
	for _, step := range []struct {
		in   KVInput
		resp *wire.ClientResponse
	}{
		{put("x", "1"), &wire.ClientResponse{Status: wire.StatusOK}},
		{put("x", "2"), &wire.ClientResponse{Status: wire.StatusNotLeader}}, // no effect: omitted
		{put("x", "3"), nil}, // no answer: indeterminate
		{get("x"), &wire.ClientResponse{Status: wire.StatusOK, Value: []byte("1")}},
	} {
		if err := record(step.in, step.resp); err != nil {
			t.Fatal(err)
		}
	}
	if err := record(put("x", "4"), &wire.ClientResponse{Status: wire.StatusCASFailed}); !errors.Is(err, ErrUnexpectedResponse) {
		t.Fatalf("err = %v, want ErrUnexpectedResponse", err)
	}
	ops := h.Operations()
	if len(ops) != 4 {
		t.Fatalf("got %d operations, want 4 (the refused put left out): %+v", len(ops), ops)
	}
	if res, err := CheckOperations(ops, CheckConfig{VisualizationDir: t.TempDir()}); res != porcupine.Ok {
		t.Fatalf("check = %v, %v", res, err)
	}
	// A refused put that was in fact applied is caught, because Fail
	// removed it from the history.
	if err := record(get("x"), &wire.ClientResponse{Status: wire.StatusOK, Value: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	if res, _ := CheckOperations(h.Operations(), CheckConfig{VisualizationDir: t.TempDir()}); res != porcupine.Illegal {
		t.Fatalf("check = %v; a read of a refused write must be Illegal", res)
	}
}
