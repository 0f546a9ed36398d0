package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
)

// sentinels lists every exported error; typedErr checks an error wraps one.
var sentinels = []error{ErrBadMagic, ErrVersion, ErrFrameTooLarge, ErrChecksum, ErrUnknownType, ErrTruncated, ErrCorrupt, ErrCompression}

func typedErr(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// validFrame returns an encoded heartbeat frame to corrupt.
func validFrame(t *testing.T) []byte {
	t.Helper()
	m := sampleMessages()[2]
	b, err := AppendMessage(nil, &m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawFrame builds a frame by hand with the given header fields.
func rawFrame(t MsgType, flags uint8, payload []byte) []byte {
	b := make([]byte, FrameHeaderSize+len(payload))
	copy(b[FrameHeaderSize:], payload)
	putHeader(b[:FrameHeaderSize], t, flags, b[FrameHeaderSize:])
	return b
}

func TestFrameErrors(t *testing.T) {
	small := DefaultOptions()
	small.MaxFrameBytes = 1024
	cases := []struct {
		name   string
		frame  func(t *testing.T) []byte
		want   error
		wantIO bool // Reader error also wraps io.ErrUnexpectedEOF
	}{
		{"truncated-header", func(t *testing.T) []byte { return validFrame(t)[:FrameHeaderSize-1] }, ErrTruncated, true},
		{"truncated-payload", func(t *testing.T) []byte { b := validFrame(t); return b[:len(b)-1] }, ErrTruncated, true},
		{"header-only", func(t *testing.T) []byte { return validFrame(t)[:FrameHeaderSize] }, ErrTruncated, true},
		{"bad-magic", func(t *testing.T) []byte { b := validFrame(t); b[0] = 'X'; return b }, ErrBadMagic, false},
		{"bad-version", func(t *testing.T) []byte { b := validFrame(t); b[offVersion] = 2; return b }, ErrVersion, false},
		{"unknown-type", func(t *testing.T) []byte { b := validFrame(t); b[offType] = 99; return b }, ErrUnknownType, false},
		{"type-zero", func(t *testing.T) []byte { b := validFrame(t); b[offType] = 0; return b }, ErrUnknownType, false},
		{"oversized", func(t *testing.T) []byte {
			b := validFrame(t)
			binary.LittleEndian.PutUint32(b[offLength:], 1025)
			return b
		}, ErrFrameTooLarge, false},
		{"oversized-4GiB", func(t *testing.T) []byte {
			b := validFrame(t)
			binary.LittleEndian.PutUint32(b[offLength:], ^uint32(0))
			return b
		}, ErrFrameTooLarge, false},
		{"bad-crc", func(t *testing.T) []byte { b := validFrame(t); b[len(b)-1] ^= 1; return b }, ErrChecksum, false},
		{"bad-crc-header-field", func(t *testing.T) []byte { b := validFrame(t); b[offCRC] ^= 0x80; return b }, ErrChecksum, false},
		{"reserved-flag", func(t *testing.T) []byte { b := validFrame(t); b[offFlags] = 0x10; return b }, ErrCorrupt, false},
		{"reserved-byte", func(t *testing.T) []byte { b := validFrame(t); b[offReserved+1] = 1; return b }, ErrCorrupt, false},
		{"unknown-codec", func(t *testing.T) []byte { b := validFrame(t); b[offFlags] = 3; return b }, ErrCompression, false},
		{"s2-garbage", func(t *testing.T) []byte {
			return rawFrame(MsgApp, uint8(CompressionS2), []byte{0x10, 0xff, 0xff, 0xff})
		}, ErrCompression, false},
		{"s2-claims-huge", func(t *testing.T) []byte {
			return rawFrame(MsgApp, uint8(CompressionS2), binary.AppendUvarint(nil, 1<<30))
		}, ErrFrameTooLarge, false},
		{"zstd-garbage", func(t *testing.T) []byte { return rawFrame(MsgApp, uint8(CompressionZstd), []byte("not zstd")) }, ErrCompression, false},
		{"zstd-claims-huge", func(t *testing.T) []byte {
			// Magic, descriptor: single segment, 4-byte FCS; FCS = 1 GiB.
			p := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0, 0, 0, 0x40, 0, 0, 0}
			return rawFrame(MsgApp, uint8(CompressionZstd), p)
		}, ErrFrameTooLarge, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.frame(t)
			_, _, err := ParseFrame(b, &small)
			if !errors.Is(err, c.want) {
				t.Errorf("ParseFrame: got %v, want %v", err, c.want)
			}
			r := NewReader(bytes.NewReader(b), small)
			_, err = r.Next(nil)
			if !errors.Is(err, c.want) {
				t.Errorf("Reader.Next: got %v, want %v", err, c.want)
			}
			if c.wantIO && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("Reader.Next: %v does not wrap io.ErrUnexpectedEOF", err)
			}
			if _, err2 := r.Next(nil); err2 != err {
				t.Errorf("Reader error not sticky: first %v, then %v", err, err2)
			}
		})
	}
}

func TestReaderCleanEOF(t *testing.T) {
	r := NewReader(bytes.NewReader(nil), DefaultOptions())
	if _, err := r.Next(nil); err != io.EOF {
		t.Fatalf("empty stream: got %v, want io.EOF", err)
	}
}

// errAfter is a reader that fails with a non-EOF error after its bytes.
type errAfter struct {
	b   []byte
	err error
}

func (e *errAfter) Read(p []byte) (int, error) {
	if len(e.b) == 0 {
		return 0, e.err
	}
	n := copy(p, e.b)
	e.b = e.b[n:]
	return n, nil
}

func TestReaderPassesThroughIOErrors(t *testing.T) {
	boom := errors.New("connection reset")
	b := validFrame(t)
	r := NewReader(&errAfter{b: b[:20], err: boom}, DefaultOptions())
	_, err := r.Next(nil)
	if !errors.Is(err, boom) || typedErr(err) {
		t.Fatalf("got %v, want the underlying I/O error unwrapped from any sentinel", err)
	}
}

func TestPayloadErrors(t *testing.T) {
	var m Message
	hb := sampleMessages()[2]
	hbFrame, _ := AppendMessage(nil, &hb, nil)
	hbPayload := hbFrame[FrameHeaderSize:]
	app := sampleMessages()[0]
	appFrame, _ := AppendMessage(nil, &app, nil)
	appPayload := appFrame[FrameHeaderSize:]
	countOff := msgCommonBytes + 3*8

	cases := []struct {
		name string
		err  error
		want error
	}{
		{"message-short", DecodeMessage(MsgHeartbeat, hbPayload[:len(hbPayload)-1], &m), ErrCorrupt},
		{"message-trailing", DecodeMessage(MsgHeartbeat, append(bytes.Clone(hbPayload), 0), &m), ErrCorrupt},
		{"message-empty", DecodeMessage(MsgTimeoutNow, nil, &m), ErrCorrupt},
		{"message-not-raft-type", DecodeMessage(MsgClientRequest, hbPayload, &m), ErrUnknownType},
		{"message-unknown-type", DecodeMessage(200, hbPayload, &m), ErrUnknownType},
		{"entry-count-too-big", func() error {
			p := bytes.Clone(appPayload)
			binary.LittleEndian.PutUint32(p[countOff:], 1<<30)
			return DecodeMessage(MsgApp, p, &m)
		}(), ErrCorrupt},
		{"entry-len-too-big", func() error {
			p := bytes.Clone(appPayload)
			binary.LittleEndian.PutUint32(p[countOff+4+17:], 1<<20)
			return DecodeMessage(MsgApp, p, &m)
		}(), ErrCorrupt},
		{"bool-not-0-1", func() error {
			b, _ := AppendMessage(nil, &Message{Type: MsgVoteResp}, nil)
			p := b[FrameHeaderSize:]
			p[len(p)-1] = 2
			return DecodeMessage(MsgVoteResp, p, &m)
		}(), ErrCorrupt},
		{"handshake-short", DecodeHandshake(make([]byte, handshakePayloadBytes-1), &Handshake{}), ErrCorrupt},
		{"handshake-long", DecodeHandshake(make([]byte, handshakePayloadBytes+1), &Handshake{}), ErrCorrupt},
		{"request-key-overflow", DecodeClientRequest(append(make([]byte, 10), 0xff, 0xff, 0xff, 0xff), &ClientRequest{}), ErrCorrupt},
		{"response-short", DecodeClientResponse(make([]byte, 17), &ClientResponse{}), ErrCorrupt},
		{"confchange-version", DecodeConfChange([]byte{9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, &ConfChange{}), ErrVersion},
		{"confchange-empty", DecodeConfChange(nil, &ConfChange{}), ErrCorrupt},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.err, c.want)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	o := DefaultOptions()
	o.MaxFrameBytes = 100
	dst := []byte("keep")
	for _, c := range []struct {
		name string
		f    func() ([]byte, error)
		want error
	}{
		{"message-unknown-type", func() ([]byte, error) { return AppendMessage(dst, &Message{Type: MsgHandshake}, &o) }, ErrUnknownType},
		{"message-too-large", func() ([]byte, error) {
			return AppendMessage(dst, &Message{Type: MsgHeartbeat, Context: make([]byte, 100)}, &o)
		}, ErrFrameTooLarge},
		{"request-too-large", func() ([]byte, error) {
			return AppendClientRequest(dst, &ClientRequest{Value: make([]byte, 100)}, &o)
		}, ErrFrameTooLarge},
		{"response-too-large", func() ([]byte, error) {
			return AppendClientResponse(dst, &ClientResponse{Err: string(make([]byte, 100))}, &o)
		}, ErrFrameTooLarge},
	} {
		got, err := c.f()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		if string(got) != "keep" {
			t.Errorf("%s: dst changed on error: %q", c.name, got)
		}
	}
}

// ExampleParseFrame shows branching on a typed error.
func ExampleParseFrame() {
	b := AppendHandshake(nil, &Handshake{ClusterID: 1, NodeID: 2, Version: ProtocolVersion, Kind: ConnPeer})
	b[offVersion] = 9 // a peer from the future
	_, _, err := ParseFrame(b, nil)
	fmt.Println(errors.Is(err, ErrVersion))
	// Output: true
}
