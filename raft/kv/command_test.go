package kv

import (
	"bytes"
	"errors"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

func TestCommandRoundTrip(t *testing.T) {
	reqs := []wire.ClientRequest{
		{Op: wire.OpPut, Key: []byte("k"), Value: []byte("v")},
		{Op: wire.OpPut, Key: []byte("k")},
		{Op: wire.OpPut},
		{Op: wire.OpDelete, Key: []byte("gone")},
		{Op: wire.OpCAS, Key: []byte("k"), Value: []byte("new"), Expect: []byte("old")},
		{Op: wire.OpCAS, Flags: wire.FlagExpectAbsent, Key: []byte("k"), Value: []byte("first")},
		{Op: wire.OpGet, Flags: wire.FlagStale, Key: []byte("k")},
		{Op: wire.OpNoop},
		{Op: wire.OpPut, Key: bytes.Repeat([]byte("k"), MaxKeyBytes), Value: bytes.Repeat([]byte("v"), MaxValueBytes)},
	}
	for i := range reqs {
		in := &reqs[i]
		if err := ValidateRequest(in); err != nil {
			t.Fatalf("req %d: ValidateRequest: %v", i, err)
		}
		b := EncodeCommand([]byte("prefix"), in)
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("req %d: EncodeCommand did not append", i)
		}
		b = b[len("prefix"):]
		if len(b) != CommandBytes(in) {
			t.Fatalf("req %d: CommandBytes %d, encoded %d", i, CommandBytes(in), len(b))
		}
		var out wire.ClientRequest
		out.ID = 99
		if err := DecodeCommand(b, &out); err != nil {
			t.Fatalf("req %d: DecodeCommand: %v", i, err)
		}
		if out.ID != 0 || out.Op != in.Op || out.Flags != in.Flags ||
			!bytes.Equal(out.Key, in.Key) || !bytes.Equal(out.Value, in.Value) || !bytes.Equal(out.Expect, in.Expect) {
			t.Fatalf("req %d: round trip gave %+v, want %+v", i, out, *in)
		}
	}
}

func TestDecodeCommandRejects(t *testing.T) {
	enc := func(r wire.ClientRequest) []byte { return EncodeCommand(nil, &r) }
	good := enc(wire.ClientRequest{Op: wire.OpPut, Key: []byte("k"), Value: []byte("v")})
	cases := map[string][]byte{
		"empty":              nil,
		"short header":       {commandVersion1, byte(wire.OpPut)},
		"bad version":        append([]byte{2}, good[1:]...),
		"op zero":            {commandVersion1, 0, 0, 0, 0, 0},
		"op too big":         {commandVersion1, byte(wire.OpNoop) + 1, 0, 0, 0, 0},
		"unknown flag":       {commandVersion1, byte(wire.OpNoop), 0x80, 0, 0, 0},
		"truncated":          good[:len(good)-1],
		"trailing byte":      append(append([]byte{}, good...), 0),
		"overlong varint":    {commandVersion1, byte(wire.OpNoop), 0, 0x80, 0x00, 0, 0},
		"unterminated len":   {commandVersion1, byte(wire.OpPut), 0, 0xff},
		"key over limit":     enc(wire.ClientRequest{Op: wire.OpPut, Key: make([]byte, MaxKeyBytes+1)}),
		"value over limit":   enc(wire.ClientRequest{Op: wire.OpPut, Value: make([]byte, MaxValueBytes+1)}),
		"put with expect":    enc(wire.ClientRequest{Op: wire.OpPut, Expect: []byte("x")}),
		"delete with value":  enc(wire.ClientRequest{Op: wire.OpDelete, Value: []byte("x")}),
		"noop with key":      enc(wire.ClientRequest{Op: wire.OpNoop, Key: []byte("x")}),
		"put with stale":     enc(wire.ClientRequest{Op: wire.OpPut, Flags: wire.FlagStale}),
		"absent with expect": enc(wire.ClientRequest{Op: wire.OpCAS, Flags: wire.FlagExpectAbsent, Expect: []byte("x")}),
		"get with value":     enc(wire.ClientRequest{Op: wire.OpGet, Value: []byte("x")}),
	}
	for name, b := range cases {
		var r wire.ClientRequest
		if err := DecodeCommand(b, &r); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: DecodeCommand(%x) = %v, want ErrBadCommand", name, b, err)
		}
	}
	if err := ValidateRequest(&wire.ClientRequest{Op: wire.OpPut, Key: make([]byte, MaxKeyBytes+1)}); !errors.Is(err, ErrBadCommand) {
		t.Errorf("ValidateRequest accepted an oversized key: %v", err)
	}
}

// FuzzDecodeCommand checks that DecodeCommand never panics, never returns a
// field over its limit, and that every command it accepts has exactly one
// encoding: EncodeCommand gives back the input bytes.
func FuzzDecodeCommand(f *testing.F) {
	f.Add(EncodeCommand(nil, &wire.ClientRequest{Op: wire.OpPut, Key: []byte("key"), Value: []byte("value")}))
	f.Add(EncodeCommand(nil, &wire.ClientRequest{Op: wire.OpCAS, Key: []byte("k"), Value: []byte("b"), Expect: []byte("a")}))
	f.Add([]byte{commandVersion1, byte(wire.OpNoop), 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r wire.ClientRequest
		if err := DecodeCommand(b, &r); err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error %v does not wrap ErrBadCommand", err)
			}
			return
		}
		if len(r.Key) > MaxKeyBytes || len(r.Value) > MaxValueBytes || len(r.Expect) > MaxValueBytes {
			t.Fatalf("accepted oversized fields")
		}
		if err := ValidateRequest(&r); err != nil {
			t.Fatalf("decoded request fails ValidateRequest: %v", err)
		}
		if again := EncodeCommand(nil, &r); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gave %x", b, again)
		}
	})
}
