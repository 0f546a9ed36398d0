package wire

import (
	"encoding/binary"
	"fmt"
)

// Primitive encodings shared by every payload: fixed-width little-endian
// integers, one-byte booleans (0 or 1), and byte strings as a uint32 length
// followed by the bytes. Fixed width was chosen over uvarints because it is
// cheaper to encode and bounds-check, and the extra bytes are few next to
// entry data on a rack-local link.
const (
	// bytesPrefixBytes is the size of a byte string's length prefix.
	bytesPrefixBytes = 4
	// entryHeaderBytes is the fixed part of one encoded Entry:
	// Term u64, Index u64, Type u8, len(Data) u32.
	entryHeaderBytes = 8 + 8 + 1 + 4
)

// putU64 writes v at the start of b and returns the rest of b.
func putU64(b []byte, v uint64) []byte {
	binary.LittleEndian.PutUint64(b, v)
	return b[8:]
}

// putU32 writes v at the start of b and returns the rest of b.
func putU32(b []byte, v uint32) []byte {
	binary.LittleEndian.PutUint32(b, v)
	return b[4:]
}

// putU8 writes v at the start of b and returns the rest of b.
func putU8(b []byte, v uint8) []byte {
	b[0] = v
	return b[1:]
}

// putBool writes v as 0 or 1 and returns the rest of b.
func putBool(b []byte, v bool) []byte {
	if v {
		b[0] = 1
	} else {
		b[0] = 0
	}
	return b[1:]
}

// putBytes writes a length-prefixed byte string and returns the rest of b.
func putBytes(b []byte, v []byte) []byte {
	binary.LittleEndian.PutUint32(b, uint32(len(v)))
	n := copy(b[bytesPrefixBytes:], v)
	return b[bytesPrefixBytes+n:]
}

// putU64s writes a uint32 count then each value, and returns the rest of b.
func putU64s(b []byte, v []uint64) []byte {
	b = putU32(b, uint32(len(v)))
	for _, x := range v {
		b = putU64(b, x)
	}
	return b
}

// finishEncode checks that an encoder filled exactly the bytes its size
// function promised.
func finishEncode(rest []byte, what string) {
	if len(rest) != 0 {
		panic(fmt.Sprintf("wire: invariant violated: %s encoder left %d of its computed size unwritten", what, len(rest)))
	}
}

// decoder reads primitives from a payload with a sticky error: after the
// first short read every method returns zero values, and err reports the
// first problem. This keeps the per-field code free of error plumbing.
type decoder struct {
	// b is the unread remainder of the payload.
	b []byte
	// err is the first problem found, wrapping ErrCorrupt.
	err error
}

// fail records a corruption if none was recorded yet.
func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	}
	d.b = nil
}

func (d *decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.fail("need 8 bytes for an integer, have %d", len(d.b))
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) u32() uint32 {
	if len(d.b) < 4 {
		d.fail("need 4 bytes for a length, have %d", len(d.b))
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u8() uint8 {
	if len(d.b) < 1 {
		d.fail("need 1 byte, have 0")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bool() bool {
	switch v := d.u8(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("boolean byte is %d, want 0 or 1", v)
		return false
	}
}

// bytes returns a length-prefixed byte string aliasing the payload, capped
// so that appending to it cannot overwrite the following field. An empty
// string decodes as nil.
func (d *decoder) bytes() []byte {
	n := d.u32()
	if uint64(n) > uint64(len(d.b)) {
		d.fail("byte string of %d bytes, %d remain", n, len(d.b))
		return nil
	}
	if n == 0 {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// count reads a uint32 element count and checks that the remaining bytes
// can hold that many elements of at least elemBytes each, before the caller
// allocates anything for them.
func (d *decoder) count(elemBytes int, what string) int {
	n := d.u32()
	if uint64(n)*uint64(elemBytes) > uint64(len(d.b)) {
		d.fail("%d %s need at least %d bytes, %d remain", n, what, uint64(n)*uint64(elemBytes), len(d.b))
		return 0
	}
	return int(n)
}

// u64s reads a count-prefixed list of uint64s into a new slice (nil if
// empty).
func (d *decoder) u64s(what string) []uint64 {
	n := d.count(8, what)
	if n == 0 {
		return nil
	}
	v := make([]uint64, n)
	for i := range v {
		v[i] = d.u64()
	}
	return v
}

// finish returns the first error, or ErrCorrupt if bytes are left over.
func (d *decoder) finish(what string) error {
	if d.err != nil {
		return fmt.Errorf("wire: decoding %s: %w", what, d.err)
	}
	if len(d.b) != 0 {
		return fmt.Errorf("wire: decoding %s: %w: %d trailing bytes", what, ErrCorrupt, len(d.b))
	}
	return nil
}
