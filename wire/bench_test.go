package wire

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/valyala/bytebufferpool"
)

// benchShapes are the fixed benchmark shapes: small entries (KV writes) and
// page-sized entries.
var benchShapes = []struct{ entries, size int }{{64, 128}, {16, 4096}}

// benchMessage returns an AppendEntries batch of n entries of size bytes of
// textish data (JSON-like KV commands with structured keys: compressible
// the way realistic payloads are, about 3-5x with S2), and the total entry
// data bytes for b.SetBytes.
func benchMessage(n, size int) (Message, int64) {
	ents := make([]Entry, n)
	for i := range ents {
		ents[i] = Entry{Term: 7, Index: uint64(1_000_000 + i), Type: EntryNormal, Data: textish(size, i)}
	}
	return Message{Type: MsgApp, Group: 0, From: 1, To: 2, Term: 7, LogTerm: 7, Index: 999_999, Commit: 999_990, Entries: ents}, int64(n * size)
}

func benchCases(f func(b *testing.B, m *Message, o *Options)) func(b *testing.B) {
	return func(b *testing.B) {
		for _, s := range benchShapes {
			for _, c := range []Compression{CompressionNone, CompressionS2} {
				name := fmt.Sprintf("entries=%d/size=%d", s.entries, s.size)
				if c != CompressionNone {
					name += "/compress=" + c.String()
				}
				b.Run(name, func(b *testing.B) {
					m, n := benchMessage(s.entries, s.size)
					o := DefaultOptions()
					o.Compression = c
					// Compress every batch in these shapes (both are >= 8 KiB
					// anyway, so the default threshold would too).
					b.SetBytes(n)
					b.ReportAllocs()
					f(b, &m, &o)
				})
			}
		}
	}
}

// BenchmarkEncodeAppend encodes one AppendEntries frame into a pooled
// buffer. Guards the zero-allocation encode path: allocs/op must be 0.
func BenchmarkEncodeAppend(b *testing.B) {
	benchCases(func(b *testing.B, m *Message, o *Options) {
		buf := bytebufferpool.Get()
		defer bytebufferpool.Put(buf)
		var err error
		for b.Loop() {
			if buf.B, err = AppendMessage(buf.B[:0], m, o); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(buf.B)), "frame-bytes")
	})(b)
}

// BenchmarkDecodeAppend parses and decodes one AppendEntries frame already
// in memory, reusing the Message (and so its Entries capacity). Entries
// alias the frame, so uncompressed decoding allocates nothing; compressed
// decoding allocates the decompressed payload (1 alloc/op).
func BenchmarkDecodeAppend(b *testing.B) {
	benchCases(func(b *testing.B, m *Message, o *Options) {
		frame, err := AppendMessage(nil, m, o)
		if err != nil {
			b.Fatal(err)
		}
		var got Message
		for b.Loop() {
			f, _, err := ParseFrame(frame, o)
			if err != nil {
				b.Fatal(err)
			}
			if err := DecodeMessage(f.Type, f.Payload, &got); err != nil {
				b.Fatal(err)
			}
		}
		if len(got.Entries) != len(m.Entries) {
			b.Fatalf("decoded %d entries", len(got.Entries))
		}
	})(b)
}

// BenchmarkReaderNext reads frames from a stream into a reused payload
// buffer and decodes them: the transport's receive path. With a reused
// buffer it allocates nothing, compressed or not.
func BenchmarkReaderNext(b *testing.B) {
	benchCases(func(b *testing.B, m *Message, o *Options) {
		frame, err := AppendMessage(nil, m, o)
		if err != nil {
			b.Fatal(err)
		}
		const framesPerStream = 64
		stream := bytes.Repeat(frame, framesPerStream)
		src := bytes.NewReader(stream)
		r := NewReader(src, *o)
		var payload []byte
		var got Message
		i := 0
		for b.Loop() {
			if i == framesPerStream {
				src.Reset(stream)
				i = 0
			}
			f, err := r.Next(payload[:0])
			if err != nil {
				b.Fatal(err)
			}
			payload = f.Payload
			if err := DecodeMessage(f.Type, f.Payload, &got); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})(b)
}

// BenchmarkEncodeSmall measures the per-frame overhead on the messages that
// dominate frame counts: heartbeats and acks.
func BenchmarkEncodeSmall(b *testing.B) {
	for _, m := range []Message{
		{Type: MsgAppResp, From: 2, To: 1, Term: 7, Index: 123456},
		{Type: MsgHeartbeat, From: 1, To: 2, Term: 7, Commit: 123456},
	} {
		b.Run(m.Type.String(), func(b *testing.B) {
			buf := bytebufferpool.Get()
			defer bytebufferpool.Put(buf)
			b.ReportAllocs()
			for b.Loop() {
				buf.B, _ = AppendMessage(buf.B[:0], &m, nil)
			}
		})
	}
}

// ExampleAppendMessage encodes two frames into one pooled buffer, as a
// transport does before one write().
func ExampleAppendMessage() {
	buf := bytebufferpool.Get()
	defer bytebufferpool.Put(buf)
	o := DefaultOptions()
	o.Compression = Negotiate(SupportedFeatures(), FeatureS2, CompressionS2)
	var err error
	buf.B, err = AppendMessage(buf.B[:0], &Message{Type: MsgHeartbeat, From: 1, To: 2, Term: 3, Commit: 10}, &o)
	if err != nil {
		panic(err)
	}
	buf.B, err = AppendMessage(buf.B, &Message{Type: MsgTimeoutNow, From: 1, To: 2, Term: 3}, &o)
	if err != nil {
		panic(err)
	}
	r := NewReader(bytes.NewReader(buf.B), o)
	for {
		f, err := r.Next(nil)
		if err != nil {
			break
		}
		var m Message
		if err := DecodeMessage(f.Type, f.Payload, &m); err != nil {
			panic(err)
		}
		fmt.Println(m.Type, m.Term)
	}
	// Output:
	// Heartbeat 3
	// TimeoutNow 3
}
