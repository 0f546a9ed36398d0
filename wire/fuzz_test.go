package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fuzzOptions keeps MaxFrameBytes small so the fuzzer reaches the limit
// checks with short inputs, and a low threshold so round trips compress.
func fuzzOptions(c Compression) Options {
	o := DefaultOptions()
	o.MaxFrameBytes = 1 << 16
	o.Compression = c
	o.CompressThresholdBytes = 32
	return o
}

// mustBeTyped fails if err is neither nil nor one of the package's sentinels.
func mustBeTyped(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && !typedErr(err) {
		t.Fatalf("%s returned an untyped error: %v", what, err)
	}
}

// checkPayload decodes payload by type t; if that succeeds, re-encoding the
// decoded value must reproduce payload exactly (the encoding is canonical:
// fixed-width fields, strict bools, no trailing bytes).
func checkPayload(t *testing.T, mt MsgType, payload []byte) {
	t.Helper()
	var re []byte
	switch mt {
	case MsgHandshake:
		var h Handshake
		err := DecodeHandshake(payload, &h)
		mustBeTyped(t, "DecodeHandshake", err)
		if err != nil {
			return
		}
		re = AppendHandshake(nil, &h)
	case MsgClientRequest:
		var r ClientRequest
		err := DecodeClientRequest(payload, &r)
		mustBeTyped(t, "DecodeClientRequest", err)
		if err != nil {
			return
		}
		re, err = AppendClientRequest(nil, &r, &Options{MaxFrameBytes: MaxFrameBytesLimit})
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
	case MsgClientResponse:
		var r ClientResponse
		err := DecodeClientResponse(payload, &r)
		mustBeTyped(t, "DecodeClientResponse", err)
		if err != nil {
			return
		}
		re, err = AppendClientResponse(nil, &r, &Options{MaxFrameBytes: MaxFrameBytesLimit})
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
	default:
		var m Message
		err := DecodeMessage(mt, payload, &m)
		mustBeTyped(t, "DecodeMessage", err)
		if err != nil {
			return
		}
		if m.Type != mt {
			t.Fatalf("decoded type %v, want %v", m.Type, mt)
		}
		re, err = AppendMessage(nil, &m, &Options{MaxFrameBytes: MaxFrameBytesLimit})
		if err != nil {
			t.Fatalf("re-encode %v: %v", mt, err)
		}
	}
	if !bytes.Equal(re[FrameHeaderSize:], payload) {
		t.Fatalf("%v: decode then encode changed the payload:\n in %x\nout %x", mt, payload, re[FrameHeaderSize:])
	}
}

// seedFrames returns valid encodings of every sample, uncompressed and
// compressed, as seeds for the frame-level fuzzers.
func seedFrames() [][]byte {
	var out [][]byte
	for _, c := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		o := fuzzOptions(c)
		for _, m := range sampleMessages() {
			b, _ := AppendMessage(nil, &m, &o)
			out = append(out, b)
		}
		req, resp := sampleClientRequest(), sampleClientResponse()
		b, _ := AppendClientRequest(nil, &req, &o)
		out = append(out, b)
		b, _ = AppendClientResponse(nil, &resp, &o)
		out = append(out, b)
	}
	h := sampleHandshake()
	out = append(out, AppendHandshake(nil, &h))
	return out
}

func FuzzParseFrame(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Also parse a copy with the first frame's CRC made valid: without
		// that, almost every mutation of a payload stops at ErrChecksum and
		// the decompressors and payload decoders are never reached.
		for _, data := range [][]byte{data, fixFirstCRC(data)} {
			o := fuzzOptions(CompressionNone)
			fr, rest, err := ParseFrame(data, &o)
			mustBeTyped(t, "ParseFrame", err)
			if err != nil {
				if len(rest) != len(data) {
					t.Fatal("ParseFrame consumed input on error")
				}
				continue
			}
			if len(fr.Payload) > o.MaxFrameBytes {
				t.Fatalf("payload %d bytes over limit %d", len(fr.Payload), o.MaxFrameBytes)
			}
			if len(rest) > len(data)-FrameHeaderSize {
				t.Fatal("rest longer than input minus a header")
			}
			checkPayload(t, fr.Type, fr.Payload)
			// Property: re-framing the payload with each codec parses back
			// to the same type and payload.
			for _, c := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
				o := fuzzOptions(c)
				re := appendRawFrame(nil, fr.Type, fr.Payload, &o)
				fr2, rest2, err := ParseFrame(re, &o)
				if err != nil || len(rest2) != 0 || fr2.Type != fr.Type || !bytes.Equal(fr2.Payload, fr.Payload) {
					t.Fatalf("re-framed payload (%v) did not round-trip: %v", c, err)
				}
			}
		}
	})
}

// fixFirstCRC returns a copy of data in which the first frame's header CRC
// matches its payload, if the header's length fits in data; else data.
func fixFirstCRC(data []byte) []byte {
	if len(data) < FrameHeaderSize {
		return data
	}
	n := binary.LittleEndian.Uint32(data[offLength:])
	if uint64(n) > uint64(len(data)-FrameHeaderSize) {
		return data
	}
	out := bytes.Clone(data)
	binary.LittleEndian.PutUint32(out[offCRC:], crc32.Checksum(out[FrameHeaderSize:FrameHeaderSize+int(n)], castagnoli))
	return out
}

// appendRawFrame frames an arbitrary payload of type t with o's compression.
func appendRawFrame(dst []byte, t MsgType, payload []byte, o *Options) []byte {
	dst, start := beginFrame(dst, len(payload))
	copy(dst[start+FrameHeaderSize:], payload)
	return finishFrame(dst, start, t, o)
}

func FuzzReader(f *testing.F) {
	seeds := seedFrames()
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add(bytes.Join(seeds[:5], nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		data = fixFirstCRC(data) // reach past the CRC; see FuzzParseFrame
		o := fuzzOptions(CompressionNone)
		r := NewReader(bytes.NewReader(data), o)
		rest := data
		buf := make([]byte, 0, 64)
		for i := 0; ; i++ {
			fr, err := r.Next(buf)
			want, wantRest, werr := ParseFrame(rest, &o)
			if err == io.EOF {
				if len(rest) != 0 {
					t.Fatalf("io.EOF with %d bytes unread", len(rest))
				}
				return
			}
			if err != nil {
				mustBeTyped(t, "Reader.Next", err)
				if errors.Is(err, ErrTruncated) != errors.Is(werr, ErrTruncated) || werr == nil {
					t.Fatalf("frame %d: Reader says %v, ParseFrame says %v", i, err, werr)
				}
				if errors.Is(err, ErrTruncated) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("truncation error does not wrap io.ErrUnexpectedEOF: %v", err)
				}
				return
			}
			if werr != nil || fr.Type != want.Type || fr.Flags != want.Flags || !bytes.Equal(fr.Payload, want.Payload) {
				t.Fatalf("frame %d: Reader and ParseFrame disagree (ParseFrame error %v)", i, werr)
			}
			checkPayload(t, fr.Type, fr.Payload)
			rest = wantRest
		}
	})
}

// payloadSeeds returns the payloads of every sample message of type t.
func payloadSeeds(keep func(MsgType) bool) [][]byte {
	var out [][]byte
	for _, s := range seedFrames() {
		if s[offFlags] == 0 && keep(MsgType(s[offType])) {
			out = append(out, s[FrameHeaderSize:])
		}
	}
	return out
}

func FuzzDecodeMessage(f *testing.F) {
	for _, s := range seedFrames() {
		if mt := MsgType(s[offType]); s[offFlags] == 0 && isRaftType(mt) {
			f.Add(uint8(mt), s[FrameHeaderSize:])
		}
	}
	f.Fuzz(func(t *testing.T, mt uint8, payload []byte) {
		if !isRaftType(MsgType(mt)) {
			var m Message
			if err := DecodeMessage(MsgType(mt), payload, &m); !errors.Is(err, ErrUnknownType) {
				t.Fatalf("type %d: got %v, want ErrUnknownType", mt, err)
			}
			return
		}
		checkPayload(t, MsgType(mt), payload)
	})
}

func FuzzDecodeHandshake(f *testing.F) {
	for _, p := range payloadSeeds(func(t MsgType) bool { return t == MsgHandshake }) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload []byte) { checkPayload(t, MsgHandshake, payload) })
}

func FuzzDecodeClientRequest(f *testing.F) {
	for _, p := range payloadSeeds(func(t MsgType) bool { return t == MsgClientRequest }) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload []byte) { checkPayload(t, MsgClientRequest, payload) })
}

func FuzzDecodeClientResponse(f *testing.F) {
	for _, p := range payloadSeeds(func(t MsgType) bool { return t == MsgClientResponse }) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload []byte) { checkPayload(t, MsgClientResponse, payload) })
}

func FuzzDecodeConfChange(f *testing.F) {
	cc := sampleConfChange()
	f.Add(AppendConfChange(nil, &cc))
	f.Add(AppendConfChange(nil, &ConfChange{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var cc ConfChange
		err := DecodeConfChange(b, &cc)
		mustBeTyped(t, "DecodeConfChange", err)
		if err != nil {
			return
		}
		if re := AppendConfChange(nil, &cc); !bytes.Equal(re, b) {
			t.Fatalf("decode then encode changed the bytes:\n in %x\nout %x", b, re)
		}
	})
}

// TestFuzzSeeds writes the seed corpora under testdata/fuzz with -update,
// in the format go test reads, so that plain `go test` replays them and a
// fuzzing run starts from valid encodings. Without -update it checks that
// every corpus directory exists.
func TestFuzzSeeds(t *testing.T) {
	type seed struct {
		fuzz string
		args []any
	}
	var seeds []seed
	for _, s := range seedFrames() {
		seeds = append(seeds, seed{"FuzzParseFrame", []any{s}}, seed{"FuzzReader", []any{s}})
		mt := MsgType(s[offType])
		if s[offFlags] != 0 {
			continue
		}
		p := s[FrameHeaderSize:]
		switch {
		case isRaftType(mt):
			seeds = append(seeds, seed{"FuzzDecodeMessage", []any{uint8(mt), p}})
		case mt == MsgHandshake:
			seeds = append(seeds, seed{"FuzzDecodeHandshake", []any{p}})
		case mt == MsgClientRequest:
			seeds = append(seeds, seed{"FuzzDecodeClientRequest", []any{p}})
		case mt == MsgClientResponse:
			seeds = append(seeds, seed{"FuzzDecodeClientResponse", []any{p}})
		}
	}
	all := seedFrames()
	seeds = append(seeds, seed{"FuzzReader", []any{bytes.Join(all[:5], nil)}})
	cc := sampleConfChange()
	seeds = append(seeds, seed{"FuzzDecodeConfChange", []any{AppendConfChange(nil, &cc)}})
	sm := sampleShardMap()
	smb, err := AppendShardMap(nil, &sm)
	if err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, seed{"FuzzDecodeShardMap", []any{smb}})

	names := map[string]int{}
	for _, s := range seeds {
		dir := filepath.Join("testdata", "fuzz", s.fuzz)
		names[s.fuzz]++
		if !*update {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.WriteString("go test fuzz v1\n")
		for _, a := range s.args {
			switch v := a.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
			case uint8:
				fmt.Fprintf(&b, "byte(%s)\n", strconv.QuoteRune(rune(v)))
			default:
				t.Fatalf("unsupported seed type %T", a)
			}
		}
		path := filepath.Join(dir, fmt.Sprintf("seed-%02d", names[s.fuzz]))
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name := range names {
		ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", name))
		if err != nil || len(ents) == 0 {
			t.Errorf("seed corpus for %s missing (run go test ./wire -run TestFuzzSeeds -update): %v", name, err)
		}
	}
}
