package raft

import "fmt"

// inflight is one MsgApp the leader sent and has not yet seen acknowledged:
// the index of its last entry and its payload size.
type inflight struct {
	// lastIndex is the last entry index the message carried; an ack of any
	// index >= lastIndex frees it.
	lastIndex uint64
	// bytes is the message's payload size, counted against the byte limit.
	bytes uint64
}

// inflights is a bounded ring of in-flight MsgApps to one follower. It is
// what makes pipelining safe: the leader keeps sending without waiting for
// acks until the ring is full by count or by bytes.
//
// Invariant: entries are stored in increasing lastIndex order.
type inflights struct {
	// buf is the ring; its length is maxMsgs once allocated. It is
	// allocated by the first add and dropped again by release (while
	// empty): most Progress records (a follower's, a quiesced leader's)
	// never hold anything, and MaxInflightMsgs entries of 16 bytes each
	// per member is most of an idle replica's memory.
	buf []inflight
	// maxMsgs bounds count (MaxInflightMsgs).
	maxMsgs int
	// start is the position of the oldest entry in buf.
	start int
	// count is the number of entries in the ring.
	count int
	// bytes is the sum of bytes over the ring.
	bytes uint64
	// maxBytes bounds bytes; 0 means no byte limit.
	maxBytes uint64
}

// newInflights returns a ring holding at most maxMsgs messages and (if
// maxBytes > 0) maxBytes payload bytes.
func newInflights(maxMsgs int, maxBytes uint64) *inflights {
	if maxMsgs <= 0 {
		panic("raft: inflights: invariant violated: MaxInflightMsgs must be > 0")
	}
	return &inflights{maxMsgs: maxMsgs, maxBytes: maxBytes}
}

// release drops the ring's buffer if nothing is in flight; the next add
// allocates it again.
func (in *inflights) release() {
	if in.count == 0 {
		in.buf, in.start = nil, 0
	}
}

// add records a message whose last entry is lastIndex.
//
// REQUIRES: !full(), and lastIndex greater than every recorded lastIndex.
func (in *inflights) add(lastIndex, bytes uint64) {
	if in.full() {
		panic("raft: inflights: invariant violated: add to a full ring")
	}
	if in.buf == nil {
		in.buf = make([]inflight, in.maxMsgs)
	}
	if in.count > 0 {
		prev := in.buf[(in.start+in.count-1)%len(in.buf)].lastIndex
		if lastIndex <= prev {
			panic(fmt.Sprintf("raft: inflights: invariant violated: lastIndex %d not above previous %d", lastIndex, prev))
		}
	}
	in.buf[(in.start+in.count)%len(in.buf)] = inflight{lastIndex: lastIndex, bytes: bytes}
	in.count++
	in.bytes += bytes
}

// freeLE frees every message whose lastIndex <= to (they are acknowledged).
func (in *inflights) freeLE(to uint64) {
	for in.count > 0 {
		e := &in.buf[in.start]
		if e.lastIndex > to {
			break
		}
		in.bytes -= e.bytes
		in.count--
		in.start++
		if in.start == len(in.buf) {
			in.start = 0
		}
	}
	if in.count == 0 {
		in.start = 0
	}
}

// full reports whether no further message may be sent.
func (in *inflights) full() bool {
	return in.count == in.maxMsgs || (in.maxBytes != 0 && in.bytes >= in.maxBytes)
}

// len is the number of messages in flight.
func (in *inflights) len() int { return in.count }

// reset forgets everything in flight (on a state change).
func (in *inflights) reset() {
	in.start, in.count, in.bytes = 0, 0, 0
}

// freeFirstOne frees the oldest in-flight message (used when the follower
// answers a heartbeat while the ring is full: messages may have been lost).
func (in *inflights) freeFirstOne() {
	if in.count > 0 {
		in.freeLE(in.buf[in.start].lastIndex)
	}
}
