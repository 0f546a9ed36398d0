// Package wire is raftpipe's byte format: the frame that every connection
// carries, the payload layout of every message, payload compression, and the
// encoding of configuration-change entries. It is pure code (no sockets, no
// goroutines): the transport, the client and the node call it; everything
// read from the network passes through its checks first.
//
// # Using it
//
// Encoding appends one complete frame to a caller-supplied slice, so a
// transport can pack many frames into one pooled buffer and one write():
//
//	buf := bytebufferpool.Get()
//	buf.B, err = wire.AppendMessage(buf.B[:0], &msg, &opts)
//	buf.B, err = wire.AppendMessage(buf.B, &msg2, &opts) // same write
//	conn.Write(buf.B)
//	bytebufferpool.Put(buf)
//
// Decoding is two steps: a Reader (or ParseFrame, for bytes already in
// memory) checks and extracts one frame; a Decode function parses its
// payload according to Frame.Type:
//
//	r := wire.NewReader(conn, opts)
//	for {
//		f, err := r.Next(nil)          // err: io.EOF at a clean end, else a typed error
//		if err != nil { ... close the connection ... }
//		var m wire.Message
//		if err := wire.DecodeMessage(f.Type, f.Payload, &m); err != nil { ... }
//		deliver(&m) // m and f.Payload now belong to the receiver
//	}
//
// # Buffer ownership
//
// Encoders never keep a reference to dst or to the message; the returned
// slice is dst, or a larger copy of it if it had to grow. Returned errors
// leave dst unchanged.
//
// Reader.Next(buf) returns a payload that the caller owns outright: it lives
// in buf if cap(buf) was large enough, else in a new allocation. The Reader
// keeps no reference to it (compressed bytes go through the Reader's private
// scratch, which is never returned). In particular a payload from
// Reader.Next(nil) is a fresh allocation that the caller owns for as long as
// it likes, so a transport can hand the decoded Message to another goroutine
// without copying. A caller that passes a reused buf must not reuse it until
// everything decoded from the previous payload is dead.
//
// ParseFrame returns a Payload that aliases its input when the frame was not
// compressed (and a new allocation when it was); the input must outlive it.
//
// The Decode functions alias their payload: Entry.Data, Message.Context,
// Message.SnapData, ClientRequest.Key/Value/Expect, ClientResponse.Value and
// ConfChange.Context are sub-slices of it (capped, so an append copies
// instead of overwriting the next field). They stay valid exactly as long as
// the payload does. Message.Snapshot.Conf slices and the strings in
// ClientResponse are fresh allocations. DecodeMessage reuses the capacity of
// m.Entries; whoever keeps a decoded Entries slice must set m.Entries = nil
// before m is reused.
//
// # Limits
//
// Every length read from input is checked before anything is allocated: the
// header's payload length against Options.MaxFrameBytes; a compressed
// payload's declared decoded length (S2 length prefix, zstd frame content
// size) against MaxFrameBytes; every count (entries, voters) against the
// bytes remaining, assuming the smallest possible element. The most a bad
// peer can make a Reader allocate per frame is MaxFrameBytes for the payload
// plus MaxFrameBytes of scratch. Bad input returns an error wrapping one of
// the exported sentinels and never panics; the fuzz targets in this package
// check that.
//
// # Format (versioned contract)
//
// The layout below is ProtocolVersion 1. It is a contract between nodes of
// different builds: changing any byte of it requires a new ProtocolVersion,
// and golden files in testdata/golden fail on accidental changes. All
// integers are fixed-width little-endian; a bool is one byte, 0 or 1 (other
// values are ErrCorrupt); bytes(x) is a u32 length followed by that many
// bytes; u64s(x) is a u32 count followed by that many u64s. A payload must
// be consumed exactly: trailing bytes are ErrCorrupt.
//
// Frame header, 16 bytes, followed by the payload:
//
//	 0      2      3      4      5             8              12             16
//	 +------+------+------+------+-------------+--------------+--------------+
//	 | "RP" | ver  | type |flags | reserved(0) | payload len  | CRC32C       |
//	 | 2 B  | u8=1 | u8   | u8   | 3 B         | u32          | u32          |
//	 +------+------+------+------+-------------+--------------+--------------+
//
//	flags bits 0-1: codec of the payload as sent (0 none, 1 S2 block,
//	                2 zstd single-segment frame with content size); 3 is
//	                ErrCompression. Bits 2-7: reserved, must be 0.
//	payload len:    bytes as sent (after compression), <= MaxFrameBytes.
//	CRC32C:         Castagnoli CRC of the payload as sent.
//
// The decompressed payload must also be <= MaxFrameBytes. Handshake frames
// are never compressed. Check order on decode: magic (ErrBadMagic), version
// (ErrVersion), type (ErrUnknownType), reserved bits (ErrCorrupt), codec
// (ErrCompression), length (ErrFrameTooLarge), then after reading the
// payload CRC (ErrChecksum) and decompression (ErrCompression).
//
// Raft messages (types 2-12) start with a 32-byte common prefix:
//
//	+---------+---------+---------+---------+---- type-specific fields ----
//	| Group   | From    | To      | Term    |
//	| u64     | u64     | u64     | u64     |
//	+---------+---------+---------+---------+------------------------------
//
// and continue by type (only these fields are encoded; the rest decode as
// zero):
//
//	MsgApp (2):           LogTerm u64 | Index u64 | Commit u64 | count u32 |
//	                      count x entry
//	    entry:            Term u64 | Index u64 | Type u8 | len u32 | Data [len]
//	                      (21 bytes + data)
//	MsgAppResp (3):       Index u64 | Reject bool | RejectHint u64 | HintTerm u64
//	MsgHeartbeat (4):     Commit u64 | bytes(Context)
//	MsgHeartbeatResp (5): bytes(Context)
//	MsgVote (6),
//	MsgPreVote (8):       LogTerm u64 | Index u64 | bytes(Context)
//	MsgVoteResp (7),
//	MsgPreVoteResp (9):   Reject bool
//	MsgSnap (10):         Snapshot.Index u64 | Snapshot.Term u64 |
//	                      u64s(Conf.Voters) | u64s(Conf.Learners) |
//	                      SnapOffset u64 | SnapDone bool | bytes(SnapData)
//	MsgSnapResp (11):     Index u64 | SnapOffset u64 | Reject bool
//	MsgTimeoutNow (12):   (nothing)
//
// Other frames:
//
//	MsgHandshake (1):       ClusterID u64 | NodeID u64 | Version u8 |
//	                        Kind u8 | Features u32            (22 bytes)
//	MsgClientRequest (32):  ID u64 | Op u8 | Flags u8 | bytes(Key) |
//	                        bytes(Value) | bytes(Expect)
//	MsgClientResponse (33): ID u64 | Status u8 | Index u64 | bytes(Value) |
//	                        bytes(LeaderHint) | bytes(Err)
//
// Client requests are routed by key: with G groups, a request belongs to
// group GroupOf(Key, G) (FNV-1a 64, MurmurHash3's fmix64, multiply-shift;
// the empty key is group 0), a function that is part of the data layout
// and never changes. Ops (part of the format): OpPut 1, OpGet 2, OpDelete
// 3, OpCAS 4, OpNoop 5 (its optional Key only routes it), OpShardMap 6.
// OpShardMap carries nothing and is answered by any node, StatusOK with
// Value = an encoded ShardMap (not a frame; it has its own format
// version):
//
//	+----------+---------+---------+-- naddrs x --+--- Groups x ---+
//	| fmt u8=1 | Groups  | naddrs  | bytes(addr)  | leader u32     |
//	|          | u32     | u32     |              |                |
//	+----------+---------+---------+--------------+----------------+
//
//	leader: 0 unknown, else an index into the address list, 1-based.
//	Canonical: 1 <= Groups <= MaxShardGroups (65536); naddrs <=
//	MaxShardAddrs (1024); each address 1 to MaxShardAddrBytes (512)
//	bytes, distinct, listed in the order of first use, each used.
//
// ConfChange, the Data of an EntryConfChange entry (not a frame; it is
// stored in the log, so it carries its own format version):
//
//	+---------+------+---------+--------------+
//	| fmt u8=1| Type | NodeID  | bytes(Ctx)   |
//	|         | u8   | u64     |              |
//	+---------+------+---------+--------------+
//
// Decoders check structure, not meaning: an unknown Op, Status, ConnKind,
// EntryType or ConfChangeType decodes as is, and the layer that understands
// it decides (a server answers StatusBadRequest rather than dropping the
// connection over one bad request).
//
// Fixed-width integers were chosen over uvarints: cheaper to encode and to
// bounds-check, and the extra bytes (21 per entry) are small next to entry
// data on a rack-local link; S2 removes most of them when compression is on.
// docs/wire.md has the same contract with the rationale and the benchmarks.
package wire
