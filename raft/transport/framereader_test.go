package transport

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/raftpipe/raftpipe/wire"
)

// TestFrameReader feeds a stream of small and slab-sized frames through
// frameReader, whole and one byte per read, and checks every payload, that
// payloads stay intact after later reads (they are never overwritten), and
// the end-of-stream errors.
func TestFrameReader(t *testing.T) {
	opts := wire.DefaultOptions()
	bigSizes := []int{0, 10, 5000, 3 * peerSlabBytes, 100, watchSlabBytes - 30, 1}
	smallSizes := []int{0, 10, 5000, 100, watchSlabBytes - 30, 1, watchSlabBytes + 1}
	stream, want := frameStream(t, bigSizes)
	smallStream, smallWant := frameStream(t, smallSizes)
	for _, tc := range []struct {
		name string
		r    io.Reader
		want []*wire.Message
		slab int
	}{
		{"whole", bytes.NewReader(stream), want, peerSlabBytes},
		{"small slabs", bytes.NewReader(stream), want, watchSlabBytes},
		{"stuttering reads", &stutterReader{r: bytes.NewReader(stream)}, want, watchSlabBytes},
		{"one byte per read", iotest.OneByteReader(bytes.NewReader(smallStream)), smallWant, watchSlabBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := newFrameReader(tc.r, &opts, tc.slab)
			var got []*wire.Message
			for range tc.want {
				f, err := fr.next()
				if err != nil {
					t.Fatal(err)
				}
				m := new(wire.Message)
				if err := wire.DecodeMessage(f.Type, f.Payload, m); err != nil {
					t.Fatal(err)
				}
				got = append(got, m)
			}
			if _, err := fr.next(); err != io.EOF {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
			for i, m := range got { // checked after all reads: nothing was overwritten
				w := tc.want[i]
				if m.Index != w.Index || len(m.Entries) != len(w.Entries) ||
					(len(m.Entries) > 0 && !bytes.Equal(m.Entries[0].Data, w.Entries[0].Data)) {
					t.Fatalf("message %d differs", i)
				}
			}
		})
	}

	// Half a frame, then EOF.
	fr := newFrameReader(bytes.NewReader(stream[:len(stream)-1]), &opts, peerSlabBytes)
	var err error
	for err == nil {
		_, err = fr.next()
	}
	if !errors.Is(err, wire.ErrTruncated) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated stream: %v", err)
	}
	if _, err2 := fr.next(); err2 != err {
		t.Fatalf("error not sticky: %v then %v", err, err2)
	}

	// A header over the limit is refused before its payload arrives.
	small := opts
	small.MaxFrameBytes = 1000
	fr = newFrameReader(bytes.NewReader(stream), &small, peerSlabBytes)
	for err = nil; err == nil; _, err = fr.next() {
	}
	if !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("oversized frame: %v, want ErrFrameTooLarge", err)
	}
}

// stutterReader returns 1, 2, 3, ... 997, 1, 2, ... bytes per Read, so that
// headers and payloads are split at every possible place.
type stutterReader struct {
	r io.Reader
	n int
}

func (s *stutterReader) Read(p []byte) (int, error) {
	s.n = s.n%997 + 1
	return s.r.Read(p[:min(len(p), s.n)])
}

// frameStream encodes one MsgApp per size (an entry of that many bytes) and
// returns the concatenated frames and the messages.
func frameStream(t *testing.T, sizes []int) ([]byte, []*wire.Message) {
	t.Helper()
	var stream []byte
	var msgs []*wire.Message
	for i, size := range sizes {
		m := &wire.Message{Type: wire.MsgApp, From: 1, To: 2, Index: uint64(i)}
		if size > 0 {
			m.Entries = []wire.Entry{{Index: uint64(i), Data: bytes.Repeat([]byte{byte(i + 1)}, size)}}
		}
		msgs = append(msgs, m)
		var err error
		if stream, err = wire.AppendMessage(stream, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	return stream, msgs
}

// TestFrameReaderBigFrameMemory reads one frame of exactly MaxFrameBytes
// through tiny reads: the slab must end up no bigger than the frame allows.
func TestFrameReaderBigFrameMemory(t *testing.T) {
	opts := wire.DefaultOptions()
	opts.MaxFrameBytes = 3 << 20
	m := &wire.Message{Type: wire.MsgSnap, From: 1, To: 2}
	m.SnapData = make([]byte, opts.MaxFrameBytes-wire.MessageSize(m)+wire.FrameHeaderSize-4)
	frame, err := wire.AppendMessage(nil, m, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(frame) > wire.FrameHeaderSize+opts.MaxFrameBytes {
		t.Fatalf("test frame of %d bytes is over the limit", len(frame))
	}
	fr := newFrameReader(&stutterReader{r: bytes.NewReader(frame)}, &opts, watchSlabBytes)
	f, err := fr.next()
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Payload) != len(frame)-wire.FrameHeaderSize {
		t.Fatalf("payload %d bytes", len(f.Payload))
	}
	if max := wire.FrameHeaderSize + opts.MaxFrameBytes; len(fr.slab) > max {
		t.Fatalf("slab grew to %d bytes, largest legal frame is %d", len(fr.slab), max)
	}
}
