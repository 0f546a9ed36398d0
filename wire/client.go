package wire

import "fmt"

// handshakePayloadBytes is the fixed payload size of a Handshake:
// ClusterID u64, NodeID u64, Version u8, Kind u8, Features u32.
const handshakePayloadBytes = 8 + 8 + 1 + 1 + 4

// AppendHandshake appends a Handshake frame to dst. Handshakes are never
// compressed: they are tiny and precede compression negotiation. The caller
// sets h.Version (normally to ProtocolVersion).
func AppendHandshake(dst []byte, h *Handshake) []byte {
	dst, start := beginFrame(dst, handshakePayloadBytes)
	b := dst[start+FrameHeaderSize:]
	b = putU64(b, h.ClusterID)
	b = putU64(b, h.NodeID)
	b = putU8(b, h.Version)
	b = putU8(b, uint8(h.Kind))
	b = putU32(b, uint32(h.Features))
	finishEncode(b, "Handshake")
	putHeader(dst[start:start+FrameHeaderSize], MsgHandshake, 0, dst[start+FrameHeaderSize:])
	return dst
}

// DecodeHandshake decodes a Handshake payload into h. It checks layout
// only; comparing ClusterID, Version and Kind is the transport's job. Unknown
// Features bits are kept (a newer peer may offer more).
func DecodeHandshake(payload []byte, h *Handshake) error {
	d := decoder{b: payload}
	*h = Handshake{
		ClusterID: d.u64(),
		NodeID:    d.u64(),
		Version:   d.u8(),
		Kind:      ConnKind(d.u8()),
		Features:  Features(d.u32()),
	}
	return d.finish("Handshake")
}

// clientRequestPayloadBytes returns the payload size of r.
func clientRequestPayloadBytes(r *ClientRequest) int {
	return 8 + 1 + 1 + 3*bytesPrefixBytes + len(r.Key) + len(r.Value) + len(r.Expect)
}

// AppendClientRequest appends a ClientRequest frame to dst. It returns
// ErrFrameTooLarge (and dst unchanged) if the payload exceeds
// o.MaxFrameBytes. A nil o means DefaultOptions().
func AppendClientRequest(dst []byte, r *ClientRequest, o *Options) ([]byte, error) {
	o = resolve(o)
	size := clientRequestPayloadBytes(r)
	if size > o.MaxFrameBytes {
		return dst, fmt.Errorf("%w: client request payload of %d bytes, limit %d", ErrFrameTooLarge, size, o.MaxFrameBytes)
	}
	dst, start := beginFrame(dst, size)
	b := dst[start+FrameHeaderSize:]
	b = putU64(b, r.ID)
	b = putU8(b, uint8(r.Op))
	b = putU8(b, uint8(r.Flags))
	b = putBytes(b, r.Key)
	b = putBytes(b, r.Value)
	b = putBytes(b, r.Expect)
	finishEncode(b, "ClientRequest")
	return finishFrame(dst, start, MsgClientRequest, o), nil
}

// DecodeClientRequest decodes a ClientRequest payload into r. Key, Value
// and Expect alias payload (empty ones are nil). Op and Flags are not
// checked here, so that the server can answer StatusBadRequest for one bad
// request instead of dropping the connection.
func DecodeClientRequest(payload []byte, r *ClientRequest) error {
	d := decoder{b: payload}
	*r = ClientRequest{
		ID:    d.u64(),
		Op:    Op(d.u8()),
		Flags: ReqFlags(d.u8()),
	}
	r.Key = d.bytes()
	r.Value = d.bytes()
	r.Expect = d.bytes()
	return d.finish("ClientRequest")
}

// clientResponsePayloadBytes returns the payload size of r.
func clientResponsePayloadBytes(r *ClientResponse) int {
	return 8 + 1 + 8 + 3*bytesPrefixBytes + len(r.Value) + len(r.LeaderHint) + len(r.Err)
}

// AppendClientResponse appends a ClientResponse frame to dst. It returns
// ErrFrameTooLarge (and dst unchanged) if the payload exceeds
// o.MaxFrameBytes. A nil o means DefaultOptions().
func AppendClientResponse(dst []byte, r *ClientResponse, o *Options) ([]byte, error) {
	o = resolve(o)
	size := clientResponsePayloadBytes(r)
	if size > o.MaxFrameBytes {
		return dst, fmt.Errorf("%w: client response payload of %d bytes, limit %d", ErrFrameTooLarge, size, o.MaxFrameBytes)
	}
	dst, start := beginFrame(dst, size)
	b := dst[start+FrameHeaderSize:]
	b = putU64(b, r.ID)
	b = putU8(b, uint8(r.Status))
	b = putU64(b, r.Index)
	b = putBytes(b, r.Value)
	b = putU32(b, uint32(len(r.LeaderHint)))
	b = b[copy(b, r.LeaderHint):]
	b = putU32(b, uint32(len(r.Err)))
	b = b[copy(b, r.Err):]
	finishEncode(b, "ClientResponse")
	return finishFrame(dst, start, MsgClientResponse, o), nil
}

// DecodeClientResponse decodes a ClientResponse payload into r. Value
// aliases payload (nil if empty); LeaderHint and Err are copied into new
// strings.
func DecodeClientResponse(payload []byte, r *ClientResponse) error {
	d := decoder{b: payload}
	*r = ClientResponse{
		ID:     d.u64(),
		Status: Status(d.u8()),
		Index:  d.u64(),
	}
	r.Value = d.bytes()
	r.LeaderHint = string(d.bytes())
	r.Err = string(d.bytes())
	return d.finish("ClientResponse")
}

// ConfChangeFormatVersion is the first byte of every encoded ConfChange.
// ConfChanges live in the log and in snapshots for as long as the cluster
// does, so their encoding carries its own version, independent of the
// frame's ProtocolVersion.
const ConfChangeFormatVersion uint8 = 1

// confChangeFixedBytes is the fixed part of an encoded ConfChange: format
// version u8, Type u8, NodeID u64, len(Context) u32.
const confChangeFixedBytes = 1 + 1 + 8 + bytesPrefixBytes

// AppendConfChange appends the encoding of cc to dst. This is an entry
// payload (Entry.Data of an EntryConfChange entry), not a frame.
func AppendConfChange(dst []byte, cc *ConfChange) []byte {
	start := len(dst)
	dst = grow(dst, confChangeFixedBytes+len(cc.Context))
	b := dst[start:]
	b = putU8(b, ConfChangeFormatVersion)
	b = putU8(b, uint8(cc.Type))
	b = putU64(b, cc.NodeID)
	b = putBytes(b, cc.Context)
	finishEncode(b, "ConfChange")
	return dst
}

// DecodeConfChange decodes an encoded ConfChange into cc. Context aliases b
// (nil if empty). It returns ErrVersion for an unknown format version and
// ErrCorrupt for malformed bytes. The change type is not checked; applying
// an unknown type is the membership code's decision.
func DecodeConfChange(b []byte, cc *ConfChange) error {
	*cc = ConfChange{}
	if len(b) > 0 && b[0] != ConfChangeFormatVersion {
		return fmt.Errorf("wire: decoding ConfChange: %w: format version %d, this build reads %d", ErrVersion, b[0], ConfChangeFormatVersion)
	}
	d := decoder{b: b}
	d.u8()
	cc.Type = ConfChangeType(d.u8())
	cc.NodeID = d.u64()
	cc.Context = d.bytes()
	return d.finish("ConfChange")
}
