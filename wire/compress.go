package wire

import (
	"fmt"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// zstd encoders and decoders cost hundreds of KiB to build, so they are
// pooled, each with concurrency 1 so that EncodeAll/DecodeAll run on the
// calling goroutine and start no goroutines of their own. (A single shared
// package-level pair was rejected: with concurrency 1 every connection would
// serialise on it.)
var (
	zstdEncoders = sync.Pool{New: func() any {
		e, err := zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			// The frame's CRC32C already covers the bytes as sent.
			zstd.WithEncoderCRC(false),
			// Single-segment frames always carry the content size, which the
			// decoder checks against MaxFrameBytes before allocating.
			zstd.WithSingleSegment(true),
		)
		if err != nil {
			panic("wire: invariant violated: static zstd encoder options rejected: " + err.Error())
		}
		return e
	}}
	zstdDecoders = sync.Pool{New: func() any {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			// Bound DecodeAll's output by the capacity of the slice we pass,
			// which is sized from the checked frame content size.
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderMaxMemory(MaxFrameBytesLimit),
		)
		if err != nil {
			panic("wire: invariant violated: static zstd decoder options rejected: " + err.Error())
		}
		return d
	}}
)

// zstdBoundBytes is a generous upper bound on zstd's output for n input
// bytes: raw blocks cost 3 bytes per 128 KiB plus a frame header. Used only
// to size the spare capacity compressPayload asks for up front.
func zstdBoundBytes(n int) int { return n + n>>7 + 64 }

// compressPayload compresses the payload dst[payloadStart:] in place with c.
// It returns the (possibly shortened) slice and whether the payload is now
// compressed. The payload is left raw if compression would not shrink it.
// The compressed bytes are produced in dst's spare capacity and moved down,
// so a pooled dst that has grown once compresses without allocating.
func compressPayload(dst []byte, payloadStart int, c Compression) ([]byte, bool) {
	end := len(dst)
	n := end - payloadStart
	var out []byte
	switch c {
	case CompressionS2:
		maxLen := s2.MaxEncodedLen(n)
		if maxLen < 0 {
			return dst, false
		}
		dst = slices.Grow(dst, maxLen)
		out = s2.Encode(dst[end:end+maxLen], dst[payloadStart:end])
	case CompressionZstd:
		dst = slices.Grow(dst, zstdBoundBytes(n))
		e := zstdEncoders.Get().(*zstd.Encoder)
		out = e.EncodeAll(dst[payloadStart:end], dst[end:end])
		zstdEncoders.Put(e)
	default:
		return dst, false
	}
	if len(out) >= n {
		return dst, false
	}
	copy(dst[payloadStart:], out)
	return dst[:payloadStart+len(out)], true
}

// decompress decodes payload p compressed with c into buf if cap(buf)
// suffices, else into a new slice of exactly the decoded size. The decoded
// size is read from the compressed header and checked against maxBytes
// before any allocation. REQUIRES: p and buf do not overlap.
func decompress(c Compression, p, buf []byte, maxBytes int) ([]byte, error) {
	switch c {
	case CompressionS2:
		n, err := s2.DecodedLen(p)
		if err != nil {
			return nil, fmt.Errorf("%w: s2 length header: %v", ErrCompression, err)
		}
		if n > maxBytes {
			return nil, fmt.Errorf("%w: s2 payload decodes to %d bytes, limit %d", ErrFrameTooLarge, n, maxBytes)
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		out, err := s2.Decode(buf[:n], p)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrCompression, err)
		}
		return out, nil
	case CompressionZstd:
		var h zstd.Header
		if err := h.Decode(p); err != nil {
			return nil, fmt.Errorf("%w: zstd header: %v", ErrCompression, err)
		}
		if !h.HasFCS || h.Skippable {
			return nil, fmt.Errorf("%w: zstd frame without content size", ErrCompression)
		}
		if h.FrameContentSize > uint64(maxBytes) {
			return nil, fmt.Errorf("%w: zstd payload decodes to %d bytes, limit %d", ErrFrameTooLarge, h.FrameContentSize, maxBytes)
		}
		n := int(h.FrameContentSize)
		if cap(buf) < n {
			buf = make([]byte, 0, n)
		}
		d := zstdDecoders.Get().(*zstd.Decoder)
		// The three-index slice caps the output at the declared size, so a
		// payload of several concatenated frames cannot decode past it.
		out, err := d.DecodeAll(p, buf[:0:n])
		zstdDecoders.Put(d)
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrCompression, err)
		}
		if len(out) != n {
			return nil, fmt.Errorf("%w: zstd decoded %d bytes, header said %d", ErrCompression, len(out), n)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown codec %d", ErrCompression, c)
}
