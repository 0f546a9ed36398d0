package wire

import (
	"encoding/binary"
	"fmt"
)

// msgCommonBytes is the prefix every Raft message payload starts with:
// Group, From, To, Term.
const msgCommonBytes = 4 * 8

// String returns the message type's name, for logs and errors.
func (t MsgType) String() string {
	switch t {
	case MsgHandshake:
		return "Handshake"
	case MsgApp:
		return "App"
	case MsgAppResp:
		return "AppResp"
	case MsgHeartbeat:
		return "Heartbeat"
	case MsgHeartbeatResp:
		return "HeartbeatResp"
	case MsgVote:
		return "Vote"
	case MsgVoteResp:
		return "VoteResp"
	case MsgPreVote:
		return "PreVote"
	case MsgPreVoteResp:
		return "PreVoteResp"
	case MsgSnap:
		return "Snap"
	case MsgSnapResp:
		return "SnapResp"
	case MsgTimeoutNow:
		return "TimeoutNow"
	case MsgClientRequest:
		return "ClientRequest"
	case MsgClientResponse:
		return "ClientResponse"
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// messagePayloadSize returns the encoded payload size of m, and false if
// m.Type is not a Raft message type.
func messagePayloadSize(m *Message) (int, bool) {
	n := msgCommonBytes
	switch m.Type {
	case MsgApp:
		n += 3*8 + 4 + len(m.Entries)*entryHeaderBytes
		for i := range m.Entries {
			n += len(m.Entries[i].Data)
		}
	case MsgAppResp:
		n += 8 + 1 + 8 + 8
	case MsgHeartbeat:
		n += 8 + bytesPrefixBytes + len(m.Context)
	case MsgHeartbeatResp:
		n += bytesPrefixBytes + len(m.Context)
	case MsgVote, MsgPreVote:
		n += 8 + 8 + bytesPrefixBytes + len(m.Context)
	case MsgVoteResp, MsgPreVoteResp:
		n++
	case MsgSnap:
		n += 8 + 8 + 4 + 8*len(m.Snapshot.Conf.Voters) + 4 + 8*len(m.Snapshot.Conf.Learners) +
			8 + 1 + bytesPrefixBytes + len(m.SnapData)
	case MsgSnapResp:
		n += 8 + 8 + 1
	case MsgTimeoutNow:
	default:
		return 0, false
	}
	return n, true
}

// MessageSize returns the size in bytes of m's frame before compression
// (header included), or -1 if m.Type is not a Raft message type. Flow
// control uses it to count in-flight bytes without encoding.
func MessageSize(m *Message) int {
	n, ok := messagePayloadSize(m)
	if !ok {
		return -1
	}
	return FrameHeaderSize + n
}

// AppendMessage appends one complete frame carrying the Raft message m to
// dst and returns the extended slice. Only the fields m.Type uses are
// encoded (see the package doc). It returns ErrUnknownType if m.Type is not
// a Raft message type, and ErrFrameTooLarge if the payload before
// compression exceeds o.MaxFrameBytes; dst is returned unchanged on error.
// A nil o means DefaultOptions(). It does not allocate when cap(dst) is
// large enough (compressed frames need room for the compressed copy too).
func AppendMessage(dst []byte, m *Message, o *Options) ([]byte, error) {
	o = resolve(o)
	size, ok := messagePayloadSize(m)
	if !ok {
		return dst, fmt.Errorf("%w: cannot encode %v as a Raft message", ErrUnknownType, m.Type)
	}
	if size > o.MaxFrameBytes {
		return dst, fmt.Errorf("%w: %v payload of %d bytes, limit %d", ErrFrameTooLarge, m.Type, size, o.MaxFrameBytes)
	}
	dst, start := beginFrame(dst, size)
	encodeMessage(dst[start+FrameHeaderSize:], m)
	return finishFrame(dst, start, m.Type, o), nil
}

// encodeMessage writes m's payload into b, which has exactly
// messagePayloadSize(m) bytes.
func encodeMessage(b []byte, m *Message) {
	b = putU64(b, m.Group)
	b = putU64(b, m.From)
	b = putU64(b, m.To)
	b = putU64(b, m.Term)
	switch m.Type {
	case MsgApp:
		b = putU64(b, m.LogTerm)
		b = putU64(b, m.Index)
		b = putU64(b, m.Commit)
		b = putU32(b, uint32(len(m.Entries)))
		for i := range m.Entries {
			e := &m.Entries[i]
			_ = b[entryHeaderBytes-1]
			binary.LittleEndian.PutUint64(b, e.Term)
			binary.LittleEndian.PutUint64(b[8:], e.Index)
			b[16] = byte(e.Type)
			binary.LittleEndian.PutUint32(b[17:], uint32(len(e.Data)))
			n := copy(b[entryHeaderBytes:], e.Data)
			b = b[entryHeaderBytes+n:]
		}
	case MsgAppResp:
		b = putU64(b, m.Index)
		b = putBool(b, m.Reject)
		b = putU64(b, m.RejectHint)
		b = putU64(b, m.HintTerm)
	case MsgHeartbeat:
		b = putU64(b, m.Commit)
		b = putBytes(b, m.Context)
	case MsgHeartbeatResp:
		b = putBytes(b, m.Context)
	case MsgVote, MsgPreVote:
		b = putU64(b, m.LogTerm)
		b = putU64(b, m.Index)
		b = putBytes(b, m.Context)
	case MsgVoteResp, MsgPreVoteResp:
		b = putBool(b, m.Reject)
	case MsgSnap:
		b = putU64(b, m.Snapshot.Index)
		b = putU64(b, m.Snapshot.Term)
		b = putU64s(b, m.Snapshot.Conf.Voters)
		b = putU64s(b, m.Snapshot.Conf.Learners)
		b = putU64(b, m.SnapOffset)
		b = putBool(b, m.SnapDone)
		b = putBytes(b, m.SnapData)
	case MsgSnapResp:
		b = putU64(b, m.Index)
		b = putU64(b, m.SnapOffset)
		b = putBool(b, m.Reject)
	case MsgTimeoutNow:
	}
	finishEncode(b, "Message")
}

// DecodeMessage decodes a Raft message payload of type t into m, which it
// overwrites entirely except that it reuses the capacity of m.Entries.
// Entries[i].Data, Context and SnapData alias payload (capped, so appending
// to them copies); Voters and Learners are new slices; empty byte strings
// decode as nil. A caller that hands m.Entries to another owner must set
// m.Entries = nil before reusing m. On error, *m holds partial garbage.
//
// It returns ErrUnknownType if t is not a Raft message type, and ErrCorrupt
// if the payload is malformed; counts are checked against the remaining
// bytes before anything is allocated.
func DecodeMessage(t MsgType, payload []byte, m *Message) error {
	if !isRaftType(t) {
		return fmt.Errorf("wire: decoding message: %w: %v is not a Raft message type", ErrUnknownType, t)
	}
	ents, oldLen := m.Entries[:0], len(m.Entries)
	*m = Message{Type: t}
	d := decoder{b: payload}
	m.Group = d.u64()
	m.From = d.u64()
	m.To = d.u64()
	m.Term = d.u64()
	switch t {
	case MsgApp:
		m.LogTerm = d.u64()
		m.Index = d.u64()
		m.Commit = d.u64()
		n := d.count(entryHeaderBytes, "entries")
		if n > 0 {
			if cap(ents) < n {
				ents = make([]Entry, n)
			} else {
				ents = ents[:n]
			}
			decodeEntries(&d, ents)
		}
		if oldLen > len(ents) {
			// Drop references to the previous payload so it can be freed.
			clear(ents[len(ents):oldLen])
		}
		if len(ents) > 0 {
			m.Entries = ents
		}
	case MsgAppResp:
		m.Index = d.u64()
		m.Reject = d.bool()
		m.RejectHint = d.u64()
		m.HintTerm = d.u64()
	case MsgHeartbeat:
		m.Commit = d.u64()
		m.Context = d.bytes()
	case MsgHeartbeatResp:
		m.Context = d.bytes()
	case MsgVote, MsgPreVote:
		m.LogTerm = d.u64()
		m.Index = d.u64()
		m.Context = d.bytes()
	case MsgVoteResp, MsgPreVoteResp:
		m.Reject = d.bool()
	case MsgSnap:
		m.Snapshot.Index = d.u64()
		m.Snapshot.Term = d.u64()
		m.Snapshot.Conf.Voters = d.u64s("voters")
		m.Snapshot.Conf.Learners = d.u64s("learners")
		m.SnapOffset = d.u64()
		m.SnapDone = d.bool()
		m.SnapData = d.bytes()
	case MsgSnapResp:
		m.Index = d.u64()
		m.SnapOffset = d.u64()
		m.Reject = d.bool()
	case MsgTimeoutNow:
	}
	return d.finish(t.String())
}

// decodeEntries fills ents from d. The hot loop reads the fixed entry header
// directly rather than through the per-field methods.
func decodeEntries(d *decoder, ents []Entry) {
	b := d.b
	for i := range ents {
		if len(b) < entryHeaderBytes {
			d.fail("entry %d: header needs %d bytes, %d remain", i, entryHeaderBytes, len(b))
			return
		}
		n := binary.LittleEndian.Uint32(b[17:])
		end := uint64(entryHeaderBytes) + uint64(n)
		if end > uint64(len(b)) {
			d.fail("entry %d: data of %d bytes, %d remain", i, n, len(b)-entryHeaderBytes)
			return
		}
		var data []byte
		if n > 0 {
			data = b[entryHeaderBytes:end:end]
		}
		ents[i] = Entry{
			Term:  binary.LittleEndian.Uint64(b),
			Index: binary.LittleEndian.Uint64(b[8:]),
			Type:  EntryType(b[16]),
			Data:  data,
		}
		b = b[end:]
	}
	d.b = b
}
