package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
)

// The runtime's snapshot frame: what a leader streams to a follower, and
// what a follower stages and installs. The state machine writes and reads
// only its own bytes (sm.StateMachine); the runtime puts in front of them
// what the core and the log need, so that no state machine has to carry
// membership:
//
//	frame  = "RPSNAPFR" | version u32 = 1 | index u64 | term u64 |
//	         membership length u32 | membership | crc u32 | state machine bytes
//
// All integers big-endian; crc is CRC-32C over the frame header before it.
// membership is encodeMembership's blob as of index (the voters and
// learners, and every known member's addresses). The state machine's bytes
// run to the end of the stream and carry their own checks (kv's archive
// has per-file and stream CRCs). Part of the on-disk format of the staged
// and install files.
const (
	snapFrameMagic   = "RPSNAPFR"
	snapFrameVersion = 1
	// snapFrameFixedBytes is the header without the membership and crc.
	snapFrameFixedBytes = len(snapFrameMagic) + 4 + 8 + 8 + 4
	// maxFrameMembershipBytes bounds the membership read from a frame
	// before it is allocated: maxMembers members with two maxAddrBytes
	// addresses each, plus the voter and learner lists, fit in it.
	maxFrameMembershipBytes = 4 << 20
)

// errBadSnapFrame means a snapshot file or stream does not start with a
// valid runtime frame.
var errBadSnapFrame = errors.New("node: bad snapshot frame")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapFrame is a frame header: the snapshot's position in the log and the
// membership as of that position.
type snapFrame struct {
	index, term uint64
	// membership is the encoded membership (encodeMembership) at index.
	membership []byte
}

// appendSnapFrame appends f's encoded header to dst.
func appendSnapFrame(dst []byte, f snapFrame) []byte {
	start := len(dst)
	dst = append(dst, snapFrameMagic...)
	dst = binary.BigEndian.AppendUint32(dst, snapFrameVersion)
	dst = binary.BigEndian.AppendUint64(dst, f.index)
	dst = binary.BigEndian.AppendUint64(dst, f.term)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.membership)))
	dst = append(dst, f.membership...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// readSnapFrame reads and checks a frame header from r, reading exactly its
// bytes and nothing past them, so r is then at the state machine's bytes.
func readSnapFrame(r io.Reader) (snapFrame, error) {
	fixed := make([]byte, snapFrameFixedBytes)
	if _, err := io.ReadFull(r, fixed); err != nil {
		return snapFrame{}, fmt.Errorf("%w: header: %w", errBadSnapFrame, err)
	}
	if string(fixed[:len(snapFrameMagic)]) != snapFrameMagic {
		return snapFrame{}, fmt.Errorf("%w: bad magic %q", errBadSnapFrame, fixed[:len(snapFrameMagic)])
	}
	b := fixed[len(snapFrameMagic):]
	if v := binary.BigEndian.Uint32(b); v != snapFrameVersion {
		return snapFrame{}, fmt.Errorf("%w: version %d, want %d", errBadSnapFrame, v, snapFrameVersion)
	}
	f := snapFrame{index: binary.BigEndian.Uint64(b[4:]), term: binary.BigEndian.Uint64(b[12:])}
	n := binary.BigEndian.Uint32(b[20:])
	if n > maxFrameMembershipBytes {
		return snapFrame{}, fmt.Errorf("%w: membership of %d bytes is over the %d-byte limit", errBadSnapFrame, n, maxFrameMembershipBytes)
	}
	rest := make([]byte, int(n)+4)
	if _, err := io.ReadFull(r, rest); err != nil {
		return snapFrame{}, fmt.Errorf("%w: membership: %w", errBadSnapFrame, err)
	}
	crc := crc32.Update(crc32.Checksum(fixed, castagnoli), castagnoli, rest[:n])
	if got := binary.BigEndian.Uint32(rest[n:]); got != crc {
		return snapFrame{}, fmt.Errorf("%w: header crc mismatch (stored %#x, computed %#x)", errBadSnapFrame, got, crc)
	}
	f.membership = rest[:n:n]
	return f, nil
}

// maxMemberPoints bounds memberHistory. A lookup needs a point at or below
// the checkpoint index a snapshot send just took; only a burst of more
// conf changes than this, applied while one checkpoint is streamed to its
// file, could trim it away, and that send then fails and is retried.
const maxMemberPoints = 64

// memberHistory is the membership as of recent applied indexes, so that a
// snapshot of the state machine at whatever index its checkpoint lands on
// can be framed with the membership at exactly that index. The state
// machine no longer keeps it beside its data, and the log may already be
// compacted past the checkpoint, so the runtime remembers it here.
//
// The apply goroutine records a point before it applies the batch that
// holds the change, so any checkpoint that covers the change finds it;
// snapshot goroutines look points up; the loop resets it after a snapshot
// install. Conf changes are rare, so a mutex costs nothing on the write
// path (batches without one never touch it).
type memberHistory struct {
	mu sync.Mutex
	// points ascend by index; points[0] is the oldest membership known.
	points []memberPoint
}

// memberPoint is the encoded membership in effect from index on.
type memberPoint struct {
	index uint64
	blob  []byte
}

// reset replaces the history with the single point (index, blob).
func (h *memberHistory) reset(index uint64, blob []byte) {
	h.mu.Lock()
	h.points = append(h.points[:0], memberPoint{index: index, blob: blob})
	h.mu.Unlock()
}

// record adds the membership in effect from index on.
func (h *memberHistory) record(index uint64, blob []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.points) > 0 && h.points[len(h.points)-1].index >= index {
		h.points = h.points[:len(h.points)-1] // replayed after a restart
	}
	if len(h.points) >= maxMemberPoints {
		h.points = append(h.points[:0], h.points[1:]...)
	}
	h.points = append(h.points, memberPoint{index: index, blob: blob})
}

// at returns the encoded membership as of index.
func (h *memberHistory) at(index uint64) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := len(h.points) - 1; k >= 0; k-- {
		if h.points[k].index <= index {
			return h.points[k].blob, nil
		}
	}
	return nil, fmt.Errorf("node: membership at index %d is no longer known (%d points kept)", index, len(h.points))
}
