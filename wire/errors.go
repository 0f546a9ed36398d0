package wire

import "errors"

// Sentinel errors. Every error the decoders return wraps exactly one of these
// (with %w and context), so callers branch with errors.Is and log the text.
// A transport that sees any of them closes the connection: after a framing
// error the byte stream cannot be trusted to resynchronise.
var (
	// ErrBadMagic means the bytes at a frame boundary are not a raftpipe
	// frame: the peer speaks another protocol or the stream lost sync.
	ErrBadMagic = errors.New("wire: bad frame magic")
	// ErrVersion means the frame (or ConfChange) carries a format version this
	// build does not speak; peers with different versions are refused.
	ErrVersion = errors.New("wire: unsupported protocol version")
	// ErrFrameTooLarge means a payload, as sent or after decompression, is
	// above Options.MaxFrameBytes. Checked before anything is allocated.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrChecksum means the payload's CRC32C does not match the header:
	// the bytes were damaged in transit or in memory.
	ErrChecksum = errors.New("wire: payload checksum mismatch")
	// ErrUnknownType means the frame (or the Message passed to an encoder)
	// names a message type this build does not know.
	ErrUnknownType = errors.New("wire: unknown message type")
	// ErrTruncated means the input ended inside a frame. Errors from the
	// stream Reader that wrap it also wrap io.ErrUnexpectedEOF.
	ErrTruncated = errors.New("wire: truncated frame")
	// ErrCorrupt means a CRC-valid payload is malformed: a length runs past
	// the end, a count exceeds what the bytes can hold, a flag byte is not
	// 0/1, reserved header bits are set, or bytes are left over.
	ErrCorrupt = errors.New("wire: corrupt payload")
	// ErrCompression means a compressed payload could not be decoded, or it
	// uses a codec this build does not know.
	ErrCompression = errors.New("wire: compression error")
)
