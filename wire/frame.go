package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// Frame header layout. Part of the versioned format (see the package doc).
const (
	// FrameHeaderSize is the fixed size of every frame header in bytes.
	FrameHeaderSize = 16
	// ProtocolVersion is the frame format version this build writes and the
	// only one it accepts. Bump it on any incompatible layout change.
	ProtocolVersion uint8 = 1

	// magic0 and magic1 open every frame: "RP" for raftpipe.
	magic0 = 'R'
	magic1 = 'P'

	// Header byte offsets.
	offMagic    = 0
	offVersion  = 2
	offType     = 3
	offFlags    = 4
	offReserved = 5 // three bytes, must be zero
	offLength   = 8
	offCRC      = 12

	// flagCodecMask selects the Compression of the payload as sent.
	flagCodecMask = 0x03
	// flagReservedMask must be zero in version 1.
	flagReservedMask = 0xFC

	// ReaderBufferBytes is the size of the bufio buffer a Reader puts in
	// front of its io.Reader: large enough that a burst of small frames
	// costs one read syscall, small enough to keep per-connection memory low.
	ReaderBufferBytes = 64 << 10
)

// castagnoli is the CRC32C table; hash/crc32 uses the SSE4.2/ARMv8 CRC
// instructions for it where available.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Frame is one decoded frame.
type Frame struct {
	// Type says which decoder the payload is for.
	Type MsgType
	// Flags is the header's flags byte as received; its low two bits name the
	// Compression the payload was sent with (informational: Payload is
	// already decompressed).
	Flags uint8
	// Payload is the CRC-checked, decompressed payload. Who owns it depends
	// on how the Frame was obtained; see the package doc.
	Payload []byte
}

// Compression returns the codec the frame's payload was sent with.
func (f Frame) Compression() Compression { return Compression(f.Flags & flagCodecMask) }

// knownType reports whether t is a message type this build can decode.
func knownType(t MsgType) bool {
	switch t {
	case MsgHandshake, MsgClientRequest, MsgClientResponse:
		return true
	}
	return isRaftType(t)
}

// isRaftType reports whether t is carried by a Message.
func isRaftType(t MsgType) bool { return t >= MsgApp && t <= MsgTimeoutNow }

// beginFrame reserves room for a header plus payloadBytes at the end of dst
// and returns the extended slice and the offset of the header.
func beginFrame(dst []byte, payloadBytes int) ([]byte, int) {
	start := len(dst)
	return grow(dst, FrameHeaderSize+payloadBytes), start
}

// grow extends dst by n bytes (contents unspecified), reallocating only if
// cap(dst) is too small.
func grow(dst []byte, n int) []byte {
	return slices.Grow(dst, n)[:len(dst)+n]
}

// finishFrame compresses the payload dst[start+FrameHeaderSize:] if o asks
// for it and it is large enough, then fills in the header at dst[start:].
func finishFrame(dst []byte, start int, t MsgType, o *Options) []byte {
	payloadStart := start + FrameHeaderSize
	var flags uint8
	if o.Compression != CompressionNone && len(dst)-payloadStart >= o.CompressThresholdBytes {
		var ok bool
		if dst, ok = compressPayload(dst, payloadStart, o.Compression); ok {
			flags = uint8(o.Compression)
		}
	}
	putHeader(dst[start:payloadStart], t, flags, dst[payloadStart:])
	return dst
}

// putHeader writes a frame header for payload into h.
func putHeader(h []byte, t MsgType, flags uint8, payload []byte) {
	_ = h[FrameHeaderSize-1]
	h[offMagic] = magic0
	h[offMagic+1] = magic1
	h[offVersion] = ProtocolVersion
	h[offType] = byte(t)
	h[offFlags] = flags
	h[offReserved], h[offReserved+1], h[offReserved+2] = 0, 0, 0
	binary.LittleEndian.PutUint32(h[offLength:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[offCRC:], crc32.Checksum(payload, castagnoli))
}

// header is a parsed, validated frame header.
type header struct {
	t      MsgType
	flags  uint8
	length int
	crc    uint32
}

// parseHeader validates a FrameHeaderSize-byte header against o.
func parseHeader(h []byte, o *Options) (header, error) {
	_ = h[FrameHeaderSize-1]
	if h[offMagic] != magic0 || h[offMagic+1] != magic1 {
		return header{}, fmt.Errorf("%w: got %#02x %#02x", ErrBadMagic, h[offMagic], h[offMagic+1])
	}
	if h[offVersion] != ProtocolVersion {
		return header{}, fmt.Errorf("%w: frame version %d, this build speaks %d", ErrVersion, h[offVersion], ProtocolVersion)
	}
	t := MsgType(h[offType])
	if !knownType(t) {
		return header{}, fmt.Errorf("%w: %d", ErrUnknownType, t)
	}
	flags := h[offFlags]
	if flags&flagReservedMask != 0 || h[offReserved]|h[offReserved+1]|h[offReserved+2] != 0 {
		return header{}, fmt.Errorf("%w: reserved header bits set (flags %#02x)", ErrCorrupt, flags)
	}
	if c := Compression(flags & flagCodecMask); c > CompressionZstd {
		return header{}, fmt.Errorf("%w: unknown codec %d in header", ErrCompression, c)
	}
	n := binary.LittleEndian.Uint32(h[offLength:])
	if uint64(n) > uint64(o.MaxFrameBytes) {
		return header{}, fmt.Errorf("%w: payload length %d, limit %d", ErrFrameTooLarge, n, o.MaxFrameBytes)
	}
	return header{t: t, flags: flags, length: int(n), crc: binary.LittleEndian.Uint32(h[offCRC:])}, nil
}

// checkPayload verifies p against the header's CRC.
func (h *header) checkPayload(p []byte) error {
	if got := crc32.Checksum(p, castagnoli); got != h.crc {
		return fmt.Errorf("%w: type %d, %d bytes: crc %#08x, header says %#08x", ErrChecksum, h.t, len(p), got, h.crc)
	}
	return nil
}

// ParseFrame parses the frame at the start of b and returns it and the bytes
// after it. It makes the same checks as Reader.Next. An uncompressed Payload
// aliases b; a compressed one is decompressed into a new allocation.
// ErrTruncated means b holds less than one whole frame: append more input
// and call again.
func ParseFrame(b []byte, o *Options) (f Frame, rest []byte, err error) {
	o = resolve(o)
	if len(b) < FrameHeaderSize {
		return Frame{}, b, fmt.Errorf("%w: %d bytes, header needs %d", ErrTruncated, len(b), FrameHeaderSize)
	}
	h, err := parseHeader(b[:FrameHeaderSize], o)
	if err != nil {
		return Frame{}, b, err
	}
	end := FrameHeaderSize + h.length
	if len(b) < end {
		return Frame{}, b, fmt.Errorf("%w: %d bytes, frame needs %d", ErrTruncated, len(b), end)
	}
	p := b[FrameHeaderSize:end:end]
	if err := h.checkPayload(p); err != nil {
		return Frame{}, b, err
	}
	if c := Compression(h.flags & flagCodecMask); c != CompressionNone {
		if p, err = decompress(c, p, nil, o.MaxFrameBytes); err != nil {
			return Frame{}, b, fmt.Errorf("frame type %d: %w", h.t, err)
		}
	}
	return Frame{Type: h.t, Flags: h.flags, Payload: p}, b[end:], nil
}

// Reader reads frames from a byte stream. It is not safe for concurrent use;
// one goroutine (the connection's reader) owns it.
type Reader struct {
	// br buffers the stream so that many small frames cost one read.
	br *bufio.Reader
	// o bounds what is accepted.
	o Options
	// hdr receives each header without allocating.
	hdr [FrameHeaderSize]byte
	// scratch holds compressed payloads before decoding into the caller's
	// buffer. It grows to the largest compressed frame seen, at most
	// o.MaxFrameBytes, and is reused.
	scratch []byte
	// err is the first error; after it the stream position is unknown, so
	// every later Next returns it again.
	err error
}

// NewReader returns a Reader that reads frames from r through a buffer of
// ReaderBufferBytes. It panics if o is invalid (see Options.Validate).
func NewReader(r io.Reader, o Options) *Reader {
	resolve(&o)
	return &Reader{br: bufio.NewReaderSize(r, ReaderBufferBytes), o: o}
}

// Next reads the next frame. The payload is placed in buf if cap(buf)
// suffices, else in a new allocation; either way the caller owns
// Frame.Payload and the Reader keeps no reference to it. Compressed payloads
// are read into the Reader's own scratch and decompressed into buf.
//
// At a clean end of stream (no bytes of a next frame) Next returns io.EOF.
// A stream ending inside a frame gives an error wrapping both ErrTruncated
// and io.ErrUnexpectedEOF. After any error, Next keeps returning it.
func (r *Reader) Next(buf []byte) (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	f, err := r.next(buf)
	if err != nil {
		r.err = err
	}
	return f, err
}

func (r *Reader) next(buf []byte) (Frame, error) {
	if _, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		return Frame{}, readErr("frame header", err)
	}
	h, err := parseHeader(r.hdr[:], &r.o)
	if err != nil {
		return Frame{}, err
	}
	c := Compression(h.flags & flagCodecMask)
	var p []byte
	if c == CompressionNone {
		p = buf
	} else {
		p = r.scratch
	}
	if cap(p) < h.length {
		p = make([]byte, h.length)
	}
	p = p[:h.length]
	if c != CompressionNone {
		r.scratch = p
	}
	if _, err := io.ReadFull(r.br, p); err != nil {
		return Frame{}, readErr(fmt.Sprintf("payload of frame type %d (%d bytes)", h.t, h.length), err)
	}
	if err := h.checkPayload(p); err != nil {
		return Frame{}, err
	}
	if c != CompressionNone {
		if p, err = decompress(c, p, buf, r.o.MaxFrameBytes); err != nil {
			return Frame{}, fmt.Errorf("frame type %d: %w", h.t, err)
		}
	}
	return Frame{Type: h.t, Flags: h.flags, Payload: p}, nil
}

// readErr classifies an error from io.ReadFull while reading what.
func readErr(what string, err error) error {
	switch {
	case err == io.EOF && what == "frame header":
		return io.EOF
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("wire: reading %s: %w: %w", what, ErrTruncated, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("wire: reading %s: %w", what, err)
}
