package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
)

// normalize maps empty byte slices to nil, which is how the decoders return
// them, so that reflect.DeepEqual compares meaning rather than nil-ness.
func normalize(m Message) Message {
	nb := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	m.Context = nb(m.Context)
	m.SnapData = nb(m.SnapData)
	if len(m.Entries) == 0 {
		m.Entries = nil
	} else {
		ents := make([]Entry, len(m.Entries))
		for i, e := range m.Entries {
			e.Data = nb(e.Data)
			ents[i] = e
		}
		m.Entries = ents
	}
	if len(m.Snapshot.Conf.Voters) == 0 {
		m.Snapshot.Conf.Voters = nil
	}
	if len(m.Snapshot.Conf.Learners) == 0 {
		m.Snapshot.Conf.Learners = nil
	}
	return m
}

// codecOptions returns options for each codec with a threshold low enough
// that every test payload of a few hundred bytes is a compression candidate.
func codecOptions() map[string]Options {
	out := map[string]Options{}
	for _, c := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		o := DefaultOptions()
		o.Compression = c
		o.CompressThresholdBytes = 64
		out[c.String()] = o
	}
	return out
}

// decodeFrames reads every frame from b both with ParseFrame and with a
// Reader, checks they agree, and returns the frames.
func decodeFrames(t *testing.T, b []byte, o Options) []Frame {
	t.Helper()
	var parsed []Frame
	for rest := b; len(rest) > 0; {
		f, r, err := ParseFrame(rest, &o)
		if err != nil {
			t.Fatalf("ParseFrame: %v", err)
		}
		parsed = append(parsed, f)
		rest = r
	}
	rd := NewReader(bytes.NewReader(b), o)
	for i := range parsed {
		f, err := rd.Next(nil)
		if err != nil {
			t.Fatalf("Reader.Next frame %d: %v", i, err)
		}
		if f.Type != parsed[i].Type || f.Flags != parsed[i].Flags || !bytes.Equal(f.Payload, parsed[i].Payload) {
			t.Fatalf("frame %d: Reader and ParseFrame disagree", i)
		}
	}
	if _, err := rd.Next(nil); err == nil || !errors.Is(err, io.EOF) {
		t.Fatalf("after last frame: got %v, want io.EOF", err)
	}
	return parsed
}

func TestMessageRoundTrip(t *testing.T) {
	big := make([]Entry, 64)
	for i := range big {
		big[i] = Entry{Term: 9, Index: uint64(1000 + i), Data: textish(700, i)}
	}
	empty := Message{Type: MsgApp, Group: 1, From: 1, To: 2, Term: 3, LogTerm: 3, Index: 10, Commit: 10}
	zeroes := []Message{}
	for _, m := range sampleMessages() {
		zeroes = append(zeroes, Message{Type: m.Type})
	}
	cases := map[string][]Message{
		"samples":     sampleMessages(),
		"zero-fields": zeroes,
		"empty-batch": {empty},
		"big-batch":   {{Type: MsgApp, Group: 1, From: 1, To: 2, Term: 9, LogTerm: 9, Index: 999, Commit: 998, Entries: big}},
		"empty-data-entries": {{Type: MsgApp, Term: 1, Entries: []Entry{
			{Term: 1, Index: 1}, {Term: 1, Index: 2, Data: []byte{}}, {Term: 1, Index: 3, Data: []byte{0}}}}},
		"max-uint64": {{Type: MsgAppResp, Group: ^uint64(0), From: ^uint64(0), To: ^uint64(0), Term: ^uint64(0), Index: ^uint64(0), RejectHint: ^uint64(0), HintTerm: ^uint64(0)}},
	}
	for codec, o := range codecOptions() {
		for name, msgs := range cases {
			t.Run(codec+"/"+name, func(t *testing.T) {
				var buf []byte
				for i := range msgs {
					var err error
					if buf, err = AppendMessage(buf, &msgs[i], &o); err != nil {
						t.Fatalf("AppendMessage(%v): %v", msgs[i].Type, err)
					}
				}
				frames := decodeFrames(t, buf, o)
				if len(frames) != len(msgs) {
					t.Fatalf("got %d frames, want %d", len(frames), len(msgs))
				}
				var got Message // reused across frames to exercise Entries reuse
				for i, f := range frames {
					if f.Type != msgs[i].Type {
						t.Fatalf("frame %d type %v, want %v", i, f.Type, msgs[i].Type)
					}
					if err := DecodeMessage(f.Type, f.Payload, &got); err != nil {
						t.Fatalf("DecodeMessage(%v): %v", f.Type, err)
					}
					if want := normalize(msgs[i]); !reflect.DeepEqual(normalize(got), want) {
						t.Fatalf("%v round trip:\n got %+v\nwant %+v", f.Type, got, want)
					}
				}
			})
		}
	}
}

func TestCompressionIsUsedAndSkipped(t *testing.T) {
	ents := []Entry{{Term: 1, Index: 1, Data: textish(8192, 1)}}
	m := Message{Type: MsgApp, Entries: ents}
	random := make([]byte, 8192)
	for i := range random { // xorshift noise: incompressible
		x := uint32(i*2654435761 + 1)
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		random[i] = byte(x)
	}
	noise := Message{Type: MsgApp, Entries: []Entry{{Term: 1, Index: 1, Data: random}}}
	for _, c := range []Compression{CompressionS2, CompressionZstd} {
		o := DefaultOptions()
		o.Compression = c
		b, err := AppendMessage(nil, &m, &o)
		if err != nil {
			t.Fatal(err)
		}
		if got := Compression(b[offFlags] & flagCodecMask); got != c {
			t.Errorf("%v: compressible 8 KiB payload sent with codec %v", c, got)
		}
		if len(b) >= MessageSize(&m) {
			t.Errorf("%v: compressed frame %d bytes, raw %d", c, len(b), MessageSize(&m))
		}
		b, err = AppendMessage(nil, &noise, &o)
		if err != nil {
			t.Fatal(err)
		}
		if got := Compression(b[offFlags] & flagCodecMask); got != CompressionNone || len(b) != MessageSize(&noise) {
			t.Errorf("%v: incompressible payload sent with codec %v, %d bytes (raw %d)", c, got, len(b), MessageSize(&noise))
		}
		// Below the threshold nothing is compressed.
		o.CompressThresholdBytes = MessageSize(&m)
		b, _ = AppendMessage(nil, &m, &o)
		if b[offFlags] != 0 {
			t.Errorf("%v: payload below threshold was compressed", c)
		}
	}
}

func TestClientAndHandshakeRoundTrip(t *testing.T) {
	reqs := []ClientRequest{sampleClientRequest(), {}, {ID: 1, Op: OpPut, Key: []byte("k"), Value: textish(5000, 3)}}
	resps := []ClientResponse{sampleClientResponse(), {}, {ID: 2, Status: StatusOK, Value: textish(5000, 4), Index: 7}}
	for codec, o := range codecOptions() {
		t.Run(codec, func(t *testing.T) {
			h := sampleHandshake()
			buf := AppendHandshake(nil, &h)
			for i := range reqs {
				var err error
				if buf, err = AppendClientRequest(buf, &reqs[i], &o); err != nil {
					t.Fatal(err)
				}
			}
			for i := range resps {
				var err error
				if buf, err = AppendClientResponse(buf, &resps[i], &o); err != nil {
					t.Fatal(err)
				}
			}
			frames := decodeFrames(t, buf, o)
			if len(frames) != 1+len(reqs)+len(resps) {
				t.Fatalf("got %d frames", len(frames))
			}
			var gh Handshake
			if frames[0].Type != MsgHandshake || DecodeHandshake(frames[0].Payload, &gh) != nil || gh != h {
				t.Fatalf("handshake: type %v, got %+v want %+v", frames[0].Type, gh, h)
			}
			for i, want := range reqs {
				f := frames[1+i]
				var got ClientRequest
				if f.Type != MsgClientRequest {
					t.Fatalf("request %d: frame type %v", i, f.Type)
				}
				if err := DecodeClientRequest(f.Payload, &got); err != nil {
					t.Fatal(err)
				}
				if got.ID != want.ID || got.Op != want.Op || got.Flags != want.Flags ||
					!bytes.Equal(got.Key, want.Key) || !bytes.Equal(got.Value, want.Value) || !bytes.Equal(got.Expect, want.Expect) {
					t.Fatalf("request %d: got %+v want %+v", i, got, want)
				}
			}
			for i, want := range resps {
				f := frames[1+len(reqs)+i]
				var got ClientResponse
				if f.Type != MsgClientResponse {
					t.Fatalf("response %d: frame type %v", i, f.Type)
				}
				if err := DecodeClientResponse(f.Payload, &got); err != nil {
					t.Fatal(err)
				}
				if got.ID != want.ID || got.Status != want.Status || got.Index != want.Index || got.LeaderHint != want.LeaderHint ||
					got.Err != want.Err || !bytes.Equal(got.Value, want.Value) {
					t.Fatalf("response %d: got %+v want %+v", i, got, want)
				}
			}
		})
	}
}

func TestConfChangeRoundTrip(t *testing.T) {
	for _, cc := range []ConfChange{sampleConfChange(), {}, {Type: ConfRemove, NodeID: ^uint64(0)}} {
		prefix := []byte("prefix")
		b := AppendConfChange(prefix, &cc)
		if !bytes.Equal(b[:len(prefix)], prefix) {
			t.Fatal("AppendConfChange clobbered dst")
		}
		var got ConfChange
		if err := DecodeConfChange(b[len(prefix):], &got); err != nil {
			t.Fatal(err)
		}
		if got.Type != cc.Type || got.NodeID != cc.NodeID || !bytes.Equal(got.Context, cc.Context) {
			t.Fatalf("got %+v want %+v", got, cc)
		}
	}
}

// TestMaxSizeBatch checks the MaxFrameBytes boundary exactly: a batch whose
// payload is MaxFrameBytes encodes and decodes; one byte more is refused by
// the encoder, and a frame claiming it is refused by the decoder.
func TestMaxSizeBatch(t *testing.T) {
	const maxBytes = 1 << 16
	for codec, o := range codecOptions() {
		t.Run(codec, func(t *testing.T) {
			o.MaxFrameBytes = maxBytes
			fixed := msgCommonBytes + 3*8 + 4
			n := 16
			per := (maxBytes-fixed)/n - entryHeaderBytes
			ents := make([]Entry, n)
			for i := range ents {
				ents[i] = Entry{Term: 2, Index: uint64(i + 1), Data: textish(per, i)}
			}
			// Pad the last entry so the payload is exactly maxBytes.
			m := Message{Type: MsgApp, Entries: ents}
			short := maxBytes - (MessageSize(&m) - FrameHeaderSize)
			ents[n-1].Data = append(ents[n-1].Data, textish(short, 99)...)
			if got := MessageSize(&m) - FrameHeaderSize; got != maxBytes {
				t.Fatalf("test setup: payload %d bytes, want %d", got, maxBytes)
			}
			b, err := AppendMessage(nil, &m, &o)
			if err != nil {
				t.Fatalf("payload of exactly MaxFrameBytes: %v", err)
			}
			f, _, err := ParseFrame(b, &o)
			if err != nil {
				t.Fatal(err)
			}
			var got Message
			if err := DecodeMessage(f.Type, f.Payload, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(m)) {
				t.Fatal("max-size batch did not round-trip")
			}
			m.Entries[0].Data = append(m.Entries[0].Data, 'x')
			if _, err := AppendMessage(nil, &m, &o); !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("payload of MaxFrameBytes+1: got %v, want ErrFrameTooLarge", err)
			}
		})
	}
}

func TestDecodeReusesEntries(t *testing.T) {
	m := sampleMessages()[0]
	b, _ := AppendMessage(nil, &m, nil)
	f, _, err := ParseFrame(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := Message{Entries: make([]Entry, 0, 8)}
	backing := &got.Entries[:1][0]
	if err := DecodeMessage(f.Type, f.Payload, &got); err != nil {
		t.Fatal(err)
	}
	if &got.Entries[0] != backing {
		t.Fatal("DecodeMessage did not reuse cap(m.Entries)")
	}
	// Decoding a smaller batch must not keep references to the old payload.
	small := Message{Type: MsgApp, Entries: m.Entries[:1]}
	b2, _ := AppendMessage(nil, &small, nil)
	f2, _, _ := ParseFrame(b2, nil)
	if err := DecodeMessage(f2.Type, f2.Payload, &got); err != nil {
		t.Fatal(err)
	}
	if full := got.Entries[:3]; full[1].Data != nil || full[2].Data != nil {
		t.Fatal("stale entries beyond the new length still reference the old payload")
	}
}

func TestNegotiate(t *testing.T) {
	all := FeatureS2 | FeatureZstd
	cases := []struct {
		local, remote Features
		pref, want    Compression
	}{
		{all, all, CompressionS2, CompressionS2},
		{all, all, CompressionZstd, CompressionZstd},
		{all, all, CompressionNone, CompressionNone},
		{all, FeatureS2, CompressionZstd, CompressionS2},
		{all, FeatureZstd, CompressionS2, CompressionZstd},
		{FeatureS2, FeatureZstd, CompressionS2, CompressionNone},
		{all, 0, CompressionS2, CompressionNone},
	}
	for _, c := range cases {
		if got := Negotiate(c.local, c.remote, c.pref); got != c.want {
			t.Errorf("Negotiate(%b, %b, %v) = %v, want %v", c.local, c.remote, c.pref, got, c.want)
		}
	}
}

func TestInvalidOptionsPanic(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !bytes.Contains([]byte(fmt.Sprint(r)), []byte("MaxFrameBytes")) {
			t.Fatalf("zero Options: recovered %v, want a panic naming MaxFrameBytes", r)
		}
	}()
	var zero Options
	AppendMessage(nil, &Message{Type: MsgTimeoutNow}, &zero)
}
