package transport

import (
	"errors"
	"fmt"
	"io"

	"github.com/raftpipe/raftpipe/wire"
)

// Slab sizes for frameReader.
const (
	// peerSlabBytes is the slab size on connections that carry messages:
	// one read syscall can fetch this much, and the payloads of many small
	// frames share one allocation.
	peerSlabBytes = 512 << 10
	// snapSlabBytes is the slab size on inbound snapshot connections: it
	// holds about two default snapshot chunks.
	snapSlabBytes = 2*DefaultSnapshotChunkBytes + snapFrameOverheadBytes
	// watchSlabBytes is the slab size on connections that expect at most a
	// handshake and one short answer.
	watchSlabBytes = 4 << 10
	// minReadBytes is the free space below which a slab is replaced rather
	// than read into, so that reads never shrink to a few bytes.
	minReadBytes = 4 << 10
)

// frameReader reads frames from a connection straight into slabs and parses
// them in place with wire.ParseFrame. Frame payloads alias the slab, and a
// slab is never written again below what has been read into it, so every
// payload it returns belongs to the caller for good: no copy, no per-frame
// allocation. When a slab fills, the unparsed tail moves to a new slab (at
// least twice the tail, so a frame larger than a slab costs O(size)) and
// the old one is left to the GC, which frees it once no payload in it is
// referenced any more. The cost of this: one retained payload keeps its
// whole slab alive.
//
// Rejected alternative: wire.Reader, which reads through a 64 KiB bufio
// buffer and copies each payload out of it into a fresh allocation; for
// 64 KiB frames that copy, the zeroing of a page-rounded allocation, and
// reads capped at 64 KiB showed up as a third of the receiver's CPU.
//
// Memory stays bounded: wire.ParseFrame rejects a header whose length
// exceeds Options.MaxFrameBytes before the tail can grow past it, and the
// tail grows only as bytes actually arrive (wire.Reader, by contrast,
// allocates a header's full length before the payload arrives, so a client
// sending headers alone could make each connection hold MaxFrameBytes).
type frameReader struct {
	// r is the connection.
	r io.Reader
	// opts bound frame sizes.
	opts *wire.Options
	// slabBytes is the size of a fresh slab.
	slabBytes int
	// slab holds received bytes. Invariant: 0 <= start <= end <= len(slab).
	slab []byte
	// start is where the first unparsed frame begins; everything before it
	// has been handed out as payloads and is never written again.
	start int
	// end is where the next read goes; slab[start:end] is the unparsed tail.
	end int
	// err is the first read or parse error; returned from then on.
	err error
	// readErr is a read error that arrived with data; it is reported once
	// the data before it has been parsed.
	readErr error
}

// newFrameReader returns a reader of frames on r with slabs of slabBytes.
func newFrameReader(r io.Reader, opts *wire.Options, slabBytes int) *frameReader {
	return &frameReader{r: r, opts: opts, slabBytes: slabBytes}
}

// next returns the next frame. Its payload is the caller's to keep. At a
// clean end of stream it returns io.EOF; a stream ending inside a frame
// returns an error wrapping wire.ErrTruncated and io.ErrUnexpectedEOF.
func (fr *frameReader) next() (wire.Frame, error) {
	if fr.err != nil {
		return wire.Frame{}, fr.err
	}
	for {
		if fr.end > fr.start {
			f, rest, err := wire.ParseFrame(fr.slab[fr.start:fr.end], fr.opts)
			if err == nil {
				fr.start = fr.end - len(rest)
				return f, nil
			}
			if !errors.Is(err, wire.ErrTruncated) {
				fr.err = err
				return wire.Frame{}, err
			}
		}
		if fr.readErr != nil {
			fr.err = fr.readErr
			if fr.readErr == io.EOF && fr.end > fr.start {
				fr.err = fmt.Errorf("transport: stream ended %d bytes into a frame: %w: %w",
					fr.end-fr.start, wire.ErrTruncated, io.ErrUnexpectedEOF)
			}
			return wire.Frame{}, fr.err
		}
		// Move to a new slab when this one is full, or nearly full with
		// parsed frames in front of the tail (moving the tail then frees
		// room). A tail that starts the slab is one partial frame; it moves
		// only when it fills the slab.
		if free := len(fr.slab) - fr.end; free == 0 || (free < minReadBytes && fr.start > 0) {
			fr.newSlab()
		}
		n, err := fr.r.Read(fr.slab[fr.end:])
		fr.end += n
		if err != nil {
			fr.readErr = err
		}
	}
}

// newSlab moves the unparsed tail into a fresh slab: twice the tail, so a
// big frame costs O(size) in copies, but never more than the largest legal
// frame (the tail is a prefix of one frame that wire.ParseFrame has not
// rejected, so that is enough), and at least slabBytes.
func (fr *frameReader) newSlab() {
	tail := fr.slab[fr.start:fr.end]
	maxFrame := wire.FrameHeaderSize + fr.opts.MaxFrameBytes
	size := max(fr.slabBytes, min(2*len(tail), maxFrame), len(tail)+1)
	slab := make([]byte, size)
	fr.end = copy(slab, tail)
	fr.start = 0
	fr.slab = slab
}
