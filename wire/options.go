package wire

import "fmt"

const (
	// DefaultMaxFrameBytes is the default bound on a frame's payload, both as
	// sent and after decompression. Large enough for a generous AppendEntries
	// batch or snapshot chunk; small enough that one bad length field cannot
	// make a node allocate gigabytes.
	DefaultMaxFrameBytes = 64 << 20
	// MaxFrameBytesLimit is the largest MaxFrameBytes the format allows: the
	// header's payload length field is 32 bits, and keeping below 2 GiB keeps
	// every length an int on all platforms.
	MaxFrameBytesLimit = 1<<31 - 1
	// DefaultCompressThresholdBytes is the default payload size at or above
	// which a payload is compressed (when compression is on). Below about a
	// page, compression saves too little to pay for its CPU.
	DefaultCompressThresholdBytes = 4096
)

// Compression names a payload codec. The values are part of the format: they
// are stored in the low two bits of the header's flags byte.
type Compression uint8

const (
	// CompressionNone sends payloads raw.
	CompressionNone Compression = iota
	// CompressionS2 uses S2 block compression (github.com/klauspost/compress/s2):
	// about as fast as memcpy on decode, the default when both sides support it.
	CompressionS2
	// CompressionZstd uses zstd at its fastest level: smaller output than S2
	// for more CPU; for links where bandwidth, not CPU, is scarce.
	CompressionZstd
)

// String returns the codec's name, for logs and flags.
func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionS2:
		return "s2"
	case CompressionZstd:
		return "zstd"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

// feature maps a codec to the Features bit that advertises it (0 for None).
func (c Compression) feature() Features {
	switch c {
	case CompressionS2:
		return FeatureS2
	case CompressionZstd:
		return FeatureZstd
	}
	return 0
}

// Options configure encoding and decoding. The zero value is not valid; start
// from DefaultOptions. Functions that take *Options accept nil to mean
// DefaultOptions(). Invalid options are a programming error and panic.
type Options struct {
	// MaxFrameBytes bounds every payload this side produces or accepts, as
	// sent and after decompression. Encoders return ErrFrameTooLarge above it;
	// decoders reject before allocating. Must be in [1, MaxFrameBytesLimit],
	// and both ends of a connection should agree on it.
	MaxFrameBytes int
	// Compression is the codec for outgoing payloads at or above
	// CompressThresholdBytes. Set it from Negotiate: the peer must support
	// it. Decoding accepts every codec this build knows regardless.
	Compression Compression
	// CompressThresholdBytes is the smallest payload that is compressed.
	// Small payloads (votes, heartbeats, acks) never are: it would cost more
	// CPU than it saves bytes. Must be >= 0.
	CompressThresholdBytes int
}

// DefaultOptions returns MaxFrameBytes = DefaultMaxFrameBytes,
// CompressionNone, and CompressThresholdBytes = DefaultCompressThresholdBytes.
func DefaultOptions() Options {
	return Options{
		MaxFrameBytes:          DefaultMaxFrameBytes,
		Compression:            CompressionNone,
		CompressThresholdBytes: DefaultCompressThresholdBytes,
	}
}

// Validate reports whether o is usable. NewReader and the encoders panic on
// options that fail it; call it first when options come from a config file.
func (o Options) Validate() error {
	if o.MaxFrameBytes <= 0 || o.MaxFrameBytes > MaxFrameBytesLimit {
		return fmt.Errorf("wire: Options.MaxFrameBytes %d out of range [1, %d] (start from DefaultOptions)", o.MaxFrameBytes, MaxFrameBytesLimit)
	}
	if o.Compression > CompressionZstd {
		return fmt.Errorf("wire: Options.Compression %d unknown", o.Compression)
	}
	if o.CompressThresholdBytes < 0 {
		return fmt.Errorf("wire: Options.CompressThresholdBytes %d negative", o.CompressThresholdBytes)
	}
	return nil
}

var defaultOptions = DefaultOptions()

// resolve returns the options to use for o, panicking if they are invalid.
func resolve(o *Options) *Options {
	if o == nil {
		return &defaultOptions
	}
	if o.MaxFrameBytes <= 0 || o.MaxFrameBytes > MaxFrameBytesLimit || o.Compression > CompressionZstd || o.CompressThresholdBytes < 0 {
		panic("wire: invalid Options (invariant: options pass Validate): " + o.Validate().Error())
	}
	return o
}

// SupportedFeatures is the feature set this build can decode; advertise it in
// the Handshake.
func SupportedFeatures() Features { return FeatureS2 | FeatureZstd }

// Negotiate returns the codec to use for payloads sent to a peer: preferred
// if both local and remote advertise it, else the first of S2, zstd that
// both advertise, else CompressionNone. A preferred CompressionNone always
// yields CompressionNone (compression off stays off).
func Negotiate(local, remote Features, preferred Compression) Compression {
	if preferred == CompressionNone {
		return CompressionNone
	}
	both := local & remote
	if f := preferred.feature(); f != 0 && both&f != 0 {
		return preferred
	}
	for _, c := range [...]Compression{CompressionS2, CompressionZstd} {
		if both&c.feature() != 0 {
			return c
		}
	}
	return CompressionNone
}
