package wal

import (
	"encoding/binary"
	"hash/crc32"
)

// Constants marked "Part of the format" fix the on-disk layout described in
// doc.go. Changing one changes formatVersion.
const (
	// segmentMagic opens every segment file ("RPWL" little-endian). Part of the format.
	segmentMagic uint32 = 0x4c575052
	// formatVersion is the version of the layout below. Part of the format.
	formatVersion uint16 = 3
	// segmentHeaderBytes is the size of the segment header. Part of the format.
	segmentHeaderBytes = 32
	// recordHeaderBytes is the size of a record header. Part of the format.
	recordHeaderBytes = 20
	// maxRecordPayloadBytes bounds one record's payload; a length above it read
	// from disk is corruption, and nothing is allocated for it. Part of the format.
	maxRecordPayloadBytes = 256 << 20
	// maxSegmentFileBytes bounds a segment file's size so that in-memory
	// offsets fit in uint32 and recovery never reads an absurd file into memory.
	maxSegmentFileBytes = 1 << 30

	// Payload sizes of the fixed-size record types, and of the fixed part
	// of the others. Part of the format.
	entryPayloadHeaderBytes = 17 // index u64, term u64, entry type u8
	hardStatePayloadBytes   = 24 // term, vote, commit
	truncatePayloadBytes    = 8  // from
	markerFixedBytes        = 20 // index u64, term u64, base length u32; base bytes follow
	groupStartPayloadBytes  = 8  // next index

	// maxBaseBytes bounds the opaque base a compact or reset record carries
	// (the membership at the log's base). A longer base is refused with
	// ErrBaseTooLarge; a longer length read from disk is corruption. Every
	// segment's preamble restates the base, so it is paid once per segment.
	// Part of the format.
	maxBaseBytes = 1 << 20
)

// MaxEntryBytes is the largest Data an entry may carry: one entry is one
// record, and a record's payload is bounded by the format.
const MaxEntryBytes = maxRecordPayloadBytes - entryPayloadHeaderBytes

// recordType says what a record's payload holds. Part of the format: values
// never change meaning; type 0 is never written, so a zeroed header is
// recognisable as "no record here".
type recordType uint8

const (
	// recEntry is one Raft log entry.
	recEntry recordType = 1
	// recHardState replaces the hard state.
	recHardState recordType = 2
	// recTruncate drops every entry >= from.
	recTruncate recordType = 3
	// recCompact says entries <= index are covered by a snapshot; it also
	// records the term at index. Every segment begins with one (the preamble).
	recCompact recordType = 4
	// recReset drops every entry; the log continues at index+1.
	recReset recordType = 5
	// recGroupStart opens a group's part of a segment preamble (every group
	// but 0, whose value the segment header carries): the group's
	// LastIndex()+1 when the segment began. It is to a group what the
	// header's first index is to group 0. Added in format version 3.
	recGroupStart recordType = 6
	// recTypeMax is one past the last valid type.
	recTypeMax recordType = 7
)

// castagnoli is the CRC32C table (hardware accelerated on amd64 and arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentHeader is the decoded fixed header at the start of every segment.
type segmentHeader struct {
	// seq orders segments; recovery requires the files present to have
	// consecutive seqs so that a lost file is noticed.
	seq uint64
	// firstIndex is LastIndex()+1 when the segment was started: the index
	// the next entry written into it was expected to carry.
	firstIndex uint64
}

// appendSegmentHeader encodes h at the end of b.
func appendSegmentHeader(b []byte, h segmentHeader) []byte {
	var hdr [segmentHeaderBytes]byte
	binary.LittleEndian.PutUint32(hdr[0:], segmentMagic)
	binary.LittleEndian.PutUint16(hdr[4:], formatVersion)
	binary.LittleEndian.PutUint64(hdr[8:], h.seq)
	binary.LittleEndian.PutUint64(hdr[16:], h.firstIndex)
	binary.LittleEndian.PutUint32(hdr[28:], crc32.Checksum(hdr[:28], castagnoli))
	return append(b, hdr[:]...)
}

// decodeSegmentHeader validates and decodes a segment header; ok is false if
// the bytes are not a valid header of this version.
func decodeSegmentHeader(b []byte) (h segmentHeader, ok bool) {
	if len(b) < segmentHeaderBytes {
		return h, false
	}
	if binary.LittleEndian.Uint32(b[0:]) != segmentMagic ||
		binary.LittleEndian.Uint16(b[4:]) != formatVersion ||
		binary.LittleEndian.Uint32(b[28:]) != crc32.Checksum(b[:28], castagnoli) {
		return h, false
	}
	h.seq = binary.LittleEndian.Uint64(b[8:])
	h.firstIndex = binary.LittleEndian.Uint64(b[16:])
	return h, true
}

// appendRecordHeader reserves a record header for a payload of n bytes and
// returns the extended buffer; finishRecord fills in the CRC once the
// payload follows it.
func appendRecordHeader(b []byte, t recordType, group uint64, n int) []byte {
	var hdr [recordHeaderBytes]byte
	binary.LittleEndian.PutUint32(hdr[4:], uint32(n))
	hdr[8] = byte(t)
	binary.LittleEndian.PutUint64(hdr[12:], group)
	return append(b, hdr[:]...)
}

// finishRecord computes the CRC of the record that starts at b[start:] and
// runs to the end of b.
func finishRecord(b []byte, start int) {
	binary.LittleEndian.PutUint32(b[start:], crc32.Checksum(b[start+4:], castagnoli))
}

// appendEntryRecord encodes one entry record of group 0.
func appendEntryRecord(b []byte, index, term uint64, typ uint8, data []byte) []byte {
	return appendGroupEntryRecord(b, 0, index, term, typ, data)
}

// appendGroupEntryRecord encodes one entry record of group g.
func appendGroupEntryRecord(b []byte, g, index, term uint64, typ uint8, data []byte) []byte {
	start := len(b)
	b = appendRecordHeader(b, recEntry, g, entryPayloadHeaderBytes+len(data))
	b = binary.LittleEndian.AppendUint64(b, index)
	b = binary.LittleEndian.AppendUint64(b, term)
	b = append(b, typ)
	b = append(b, data...)
	finishRecord(b, start)
	return b
}

// appendMarkerRecord encodes a compact or reset record of group 0: index,
// term and the opaque base bytes.
func appendMarkerRecord(b []byte, t recordType, index, term uint64, base []byte) []byte {
	return appendGroupMarkerRecord(b, t, 0, index, term, base)
}

// appendGroupMarkerRecord is appendMarkerRecord for group g.
func appendGroupMarkerRecord(b []byte, t recordType, g, index, term uint64, base []byte) []byte {
	start := len(b)
	b = appendRecordHeader(b, t, g, markerFixedBytes+len(base))
	b = binary.LittleEndian.AppendUint64(b, index)
	b = binary.LittleEndian.AppendUint64(b, term)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(base)))
	b = append(b, base...)
	finishRecord(b, start)
	return b
}

// markerRecordBytes is the encoded size of a compact or reset record
// carrying a base of n bytes.
func markerRecordBytes(n int) int { return recordHeaderBytes + markerFixedBytes + n }

// markerBase returns the base bytes of a decoded compact or reset payload
// (aliasing it). REQUIRES: payloadOK accepted it.
func markerBase(p []byte) []byte { return p[markerFixedBytes:] }

// appendU64Record encodes a record of group 0 whose payload is a list of
// uint64s.
func appendU64Record(b []byte, t recordType, vals ...uint64) []byte {
	return appendGroupU64Record(b, t, 0, vals...)
}

// appendGroupU64Record is appendU64Record for group g.
func appendGroupU64Record(b []byte, t recordType, g uint64, vals ...uint64) []byte {
	start := len(b)
	b = appendRecordHeader(b, t, g, 8*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	finishRecord(b, start)
	return b
}

// entryRecordBytes is the encoded size of an entry record carrying n data bytes.
func entryRecordBytes(n int) int { return recordHeaderBytes + entryPayloadHeaderBytes + n }

// record is one decoded, CRC-checked record. payload aliases the buffer it
// was read from.
type record struct {
	typ     recordType
	group   uint64
	payload []byte
}

// payloadOK reports whether a payload's layout is legal for its type, so
// that a record with a valid CRC but a nonsensical layout is still
// rejected. A compact or reset payload must hold exactly its base length's
// bytes, and that length is checked against maxBaseBytes.
func payloadOK(t recordType, p []byte) bool {
	n := len(p)
	switch t {
	case recEntry:
		return n >= entryPayloadHeaderBytes
	case recHardState:
		return n == hardStatePayloadBytes
	case recTruncate:
		return n == truncatePayloadBytes
	case recGroupStart:
		return n == groupStartPayloadBytes
	case recCompact, recReset:
		if n < markerFixedBytes {
			return false
		}
		baseLen := binary.LittleEndian.Uint32(p[16:])
		return baseLen <= maxBaseBytes && int64(n) == markerFixedBytes+int64(baseLen)
	}
	return false
}

// payloadSizePlausible is payloadOK for a header alone (the payload not yet
// read or checked): whether length n could be legal for type t. It filters
// candidate headers cheaply before a CRC is computed.
func payloadSizePlausible(t recordType, n int64) bool {
	switch t {
	case recEntry:
		return n >= entryPayloadHeaderBytes && n <= maxRecordPayloadBytes
	case recHardState:
		return n == hardStatePayloadBytes
	case recTruncate:
		return n == truncatePayloadBytes
	case recGroupStart:
		return n == groupStartPayloadBytes
	case recCompact, recReset:
		return n >= markerFixedBytes && n <= markerFixedBytes+maxBaseBytes
	}
	return false
}

// decodeRecord decodes the record at the start of b. It returns the record,
// its total encoded length, and a status: recOK, recZero (an all-zero header:
// nothing was written here), recBad (torn or corrupt: a bad header, an
// extent past b, or a CRC mismatch), or recInvalid (the CRC holds, so these
// are the bytes that were written, but their layout is illegal: never a
// tear). Every length is checked against len(b) and maxRecordPayloadBytes
// before use.
func decodeRecord(b []byte) (r record, n int, st recStatus) {
	if len(b) < recordHeaderBytes {
		if allZero(b) {
			return r, 0, recZero
		}
		return r, 0, recBad
	}
	crc := binary.LittleEndian.Uint32(b[0:])
	length := binary.LittleEndian.Uint32(b[4:])
	typ := recordType(b[8])
	if crc == 0 && length == 0 && typ == 0 && allZero(b[:recordHeaderBytes]) {
		return r, 0, recZero
	}
	if typ == 0 || typ >= recTypeMax || b[9]|b[10]|b[11] != 0 {
		return r, 0, recBad
	}
	if length > maxRecordPayloadBytes || int64(length) > int64(len(b)-recordHeaderBytes) {
		return r, 0, recBad
	}
	n = recordHeaderBytes + int(length)
	if crc32.Checksum(b[4:n], castagnoli) != crc {
		return r, 0, recBad
	}
	if !payloadOK(typ, b[recordHeaderBytes:n]) {
		return r, n, recInvalid
	}
	r = record{typ: typ, group: binary.LittleEndian.Uint64(b[12:]), payload: b[recordHeaderBytes:n]}
	return r, n, recOK
}

// recStatus classifies what decodeRecord found.
type recStatus uint8

const (
	recOK recStatus = iota
	recZero
	recBad
	recInvalid
)

// allZero reports whether every byte of b is zero.
func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// u64 reads the i-th uint64 of a payload.
func u64(p []byte, i int) uint64 { return binary.LittleEndian.Uint64(p[8*i:]) }
