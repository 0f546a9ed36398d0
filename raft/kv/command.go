package kv

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/raftpipe/raftpipe/wire"
)

// Command layout limits. They bound what DecodeCommand accepts, so a
// committed entry can never make Apply allocate or write more than this.
const (
	// MaxKeyBytes is the largest key a command may carry.
	MaxKeyBytes = 64 << 10
	// MaxValueBytes is the largest value (and CAS expect value) a command
	// may carry.
	MaxValueBytes = 4 << 20
)

// commandVersion1 is the first byte of every command written by
// EncodeCommand. Part of the format: a new layout takes a new version and
// DecodeCommand keeps accepting the old ones.
const commandVersion1 = 1

// commandHeaderBytes is version + op + flags, the fixed part of a command.
// Part of the format.
const commandHeaderBytes = 3

// Offsets of the fixed header fields. Part of the format.
const (
	cmdOffVersion = 0
	cmdOffOp      = 1
	cmdOffFlags   = 2
)

// ErrBadCommand means an entry's Data is not a valid command: unknown
// version, op or flags, a length over a limit, or bytes missing or left
// over. Apply answers such an entry with wire.StatusBadRequest (every
// replica decodes the same bytes, so every replica reaches the same answer).
var ErrBadCommand = errors.New("kv: bad command")

// knownFlags is every flag bit a command may carry.
const knownFlags = wire.FlagStale | wire.FlagExpectAbsent

// EncodeCommand appends the command form of r (op, flags, key, value,
// expect; not the ID, which only matters to the connection that sent it) to
// dst and returns the extended slice. The layout is in the package doc.
//
// REQUIRES: r passes DecodeCommand's checks (known op, lengths within
// limits); EncodeCommand does not validate, the node does that when it
// accepts the request.
func EncodeCommand(dst []byte, r *wire.ClientRequest) []byte {
	dst = append(dst, commandVersion1, byte(r.Op), byte(r.Flags))
	dst = binary.AppendUvarint(dst, uint64(len(r.Key)))
	dst = append(dst, r.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Value)))
	dst = append(dst, r.Value...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Expect)))
	dst = append(dst, r.Expect...)
	return dst
}

// CommandBytes returns how many bytes EncodeCommand appends for r, so that a
// caller can size one buffer for a whole batch of commands.
func CommandBytes(r *wire.ClientRequest) int {
	return commandHeaderBytes +
		uvarintLen(uint64(len(r.Key))) + len(r.Key) +
		uvarintLen(uint64(len(r.Value))) + len(r.Value) +
		uvarintLen(uint64(len(r.Expect))) + len(r.Expect)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// DecodeCommand parses b (made by EncodeCommand) into r. r.Key, r.Value and
// r.Expect alias b (empty fields are nil); r.ID is set to 0. It checks the
// version, the op, the flags, every length against its limit, and that no
// byte is missing or left over; on failure it returns an error wrapping
// ErrBadCommand and r's contents are unspecified.
func DecodeCommand(b []byte, r *wire.ClientRequest) error {
	if len(b) < commandHeaderBytes {
		return fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrBadCommand, len(b), commandHeaderBytes)
	}
	if b[cmdOffVersion] != commandVersion1 {
		return fmt.Errorf("%w: unknown version %d", ErrBadCommand, b[cmdOffVersion])
	}
	op, flags := wire.Op(b[cmdOffOp]), wire.ReqFlags(b[cmdOffFlags])
	if op < wire.OpPut || op > wire.OpNoop {
		return fmt.Errorf("%w: unknown op %d", ErrBadCommand, op)
	}
	if flags&^knownFlags != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrBadCommand, uint8(flags))
	}
	rest := b[commandHeaderBytes:]
	var err error
	if r.Key, rest, err = decodeField(rest, MaxKeyBytes, "key"); err != nil {
		return err
	}
	if r.Value, rest, err = decodeField(rest, MaxValueBytes, "value"); err != nil {
		return err
	}
	if r.Expect, rest, err = decodeField(rest, MaxValueBytes, "expect"); err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d bytes after the last field", ErrBadCommand, len(rest))
	}
	r.ID, r.Op, r.Flags = 0, op, flags
	return checkFields(r)
}

// ValidateRequest checks r as DecodeCommand would check its encoding: known
// op and flags, lengths within limits, and no field or flag the op does not
// use. The node calls it before proposing, so that a malformed request is
// refused at once instead of being replicated only to fail in Apply.
func ValidateRequest(r *wire.ClientRequest) error {
	if r.Op < wire.OpPut || r.Op > wire.OpNoop {
		return fmt.Errorf("%w: unknown op %d", ErrBadCommand, r.Op)
	}
	if r.Flags&^knownFlags != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrBadCommand, uint8(r.Flags))
	}
	if len(r.Key) > MaxKeyBytes {
		return fmt.Errorf("%w: key of %d bytes is over the %d-byte limit", ErrBadCommand, len(r.Key), MaxKeyBytes)
	}
	if len(r.Value) > MaxValueBytes || len(r.Expect) > MaxValueBytes {
		return fmt.Errorf("%w: value or expect over the %d-byte limit", ErrBadCommand, MaxValueBytes)
	}
	return checkFields(r)
}

// checkFields rejects fields and flags that r's op does not use. Strictness
// here catches client bugs (a put that meant to be a CAS) instead of
// silently ignoring bytes.
//
// REQUIRES: r.Op is known and r.Flags has only known bits.
func checkFields(r *wire.ClientRequest) error {
	var allowedFlags wire.ReqFlags
	valueOK, expectOK := false, false
	switch r.Op {
	case wire.OpPut:
		valueOK = true
	case wire.OpGet:
		allowedFlags = wire.FlagStale
	case wire.OpDelete:
	case wire.OpCAS:
		allowedFlags = wire.FlagExpectAbsent
		valueOK = true
		expectOK = r.Flags&wire.FlagExpectAbsent == 0
	case wire.OpNoop:
		if len(r.Key) != 0 {
			return fmt.Errorf("%w: noop with a key", ErrBadCommand)
		}
	default:
		panic(fmt.Sprintf("kv: checkFields called with unknown op %d (invariant: op validated first)", r.Op))
	}
	if r.Flags&^allowedFlags != 0 {
		return fmt.Errorf("%w: flags %#x not valid for op %d", ErrBadCommand, uint8(r.Flags), r.Op)
	}
	if !valueOK && len(r.Value) != 0 {
		return fmt.Errorf("%w: op %d does not take a value", ErrBadCommand, r.Op)
	}
	if !expectOK && len(r.Expect) != 0 {
		return fmt.Errorf("%w: op %d (flags %#x) does not take an expect value", ErrBadCommand, r.Op, uint8(r.Flags))
	}
	return nil
}

// decodeField reads one uvarint-length-prefixed field from b, checking the
// length against limitBytes before slicing.
func decodeField(b []byte, limitBytes int, what string) (field, rest []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || w != uvarintLen(n) {
		// Overlong varints are refused too, so every command has exactly one
		// encoding and EncodeCommand(DecodeCommand(b)) == b.
		return nil, nil, fmt.Errorf("%w: bad %s length", ErrBadCommand, what)
	}
	b = b[w:]
	if n > uint64(limitBytes) {
		return nil, nil, fmt.Errorf("%w: %s of %d bytes is over the %d-byte limit", ErrBadCommand, what, n, limitBytes)
	}
	if n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: %s of %d bytes but only %d left", ErrBadCommand, what, n, len(b))
	}
	if n == 0 {
		return nil, b, nil
	}
	return b[:n:n], b[n:], nil
}
