package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/raftpipe/raftpipe/wire"
)

// Member is one node's addresses. Every node keeps the whole cluster's
// address book so that it can dial peers and answer clients with the
// leader's client address.
type Member struct {
	// ID is the node's Raft ID (non-zero).
	ID uint64
	// PeerAddr is host:port of the node's peer (Raft) listener.
	PeerAddr string
	// ClientAddr is host:port of the node's client listener; handed to clients
	// in not-leader answers.
	ClientAddr string
}

// membership is the configuration as of some log index plus every member's
// addresses. Encoded, it is what the WAL stores with the log's base (its
// base bytes) and what the runtime's snapshot frame carries, so a restored
// follower knows the cluster without replaying the log. The state machine
// never holds it.
type membership struct {
	// conf is the voter/learner sets as of the applied index.
	conf wire.ConfState
	// members holds addresses, sorted by ID. It may list nodes that are not in
	// conf (configured peers of a joining node).
	members []Member
}

// membershipFormatVersion is the first byte of an encoded membership blob.
// Part of the on-disk format.
const membershipFormatVersion = 1

// maxMembers bounds member lists read from disk or the network before
// anything is allocated.
const maxMembers = 1024

// maxAddrBytes bounds an encoded address.
const maxAddrBytes = 1024

// errBadMembership reports a malformed membership blob or member context.
var errBadMembership = errors.New("node: malformed membership record")

// encodeMembership appends the blob layout:
//
//	version u8 | nVoters u32 | voters u64... | nLearners u32 | learners u64...
//	| nMembers u32 | member...
//
// where member = id u64 | peerLen u32 | peer | clientLen u32 | client, all
// little-endian.
func encodeMembership(dst []byte, m *membership) []byte {
	dst = append(dst, membershipFormatVersion)
	dst = appendIDs(dst, m.conf.Voters)
	dst = appendIDs(dst, m.conf.Learners)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m.members)))
	for i := range m.members {
		dst = appendMember(dst, &m.members[i])
	}
	return dst
}

func appendIDs(dst []byte, ids []uint64) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(ids)))
	for _, id := range ids {
		dst = binary.LittleEndian.AppendUint64(dst, id)
	}
	return dst
}

func appendMember(dst []byte, m *Member) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, m.ID)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m.PeerAddr)))
	dst = append(dst, m.PeerAddr...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m.ClientAddr)))
	return append(dst, m.ClientAddr...)
}

// blobReader decodes with bounds checks; the first failure sticks.
type blobReader struct {
	b   []byte
	err error
}

func (r *blobReader) u32() uint32 {
	if r.err != nil || len(r.b) < 4 {
		r.err = errBadMembership
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *blobReader) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = errBadMembership
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *blobReader) str() string {
	n := r.u32()
	if r.err != nil || n > maxAddrBytes || int(n) > len(r.b) {
		r.err = errBadMembership
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *blobReader) ids() []uint64 {
	n := r.u32()
	if r.err != nil || n > maxMembers || int(n)*8 > len(r.b) {
		r.err = errBadMembership
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = r.u64()
	}
	return out
}

func (r *blobReader) member() Member {
	return Member{ID: r.u64(), PeerAddr: r.str(), ClientAddr: r.str()}
}

// decodeMembership parses a blob written by encodeMembership. An empty blob
// is the empty membership (a node that has never been bootstrapped or
// joined).
func decodeMembership(b []byte) (membership, error) {
	var m membership
	if len(b) == 0 {
		return m, nil
	}
	if b[0] != membershipFormatVersion {
		return m, fmt.Errorf("%w: version %d", errBadMembership, b[0])
	}
	r := blobReader{b: b[1:]}
	m.conf.Voters = r.ids()
	m.conf.Learners = r.ids()
	n := r.u32()
	if r.err == nil && n > maxMembers {
		r.err = errBadMembership
	}
	for i := uint32(0); r.err == nil && i < n; i++ {
		m.members = append(m.members, r.member())
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errBadMembership
	}
	if r.err != nil {
		return membership{}, r.err
	}
	return m, nil
}

// encodeMemberContext is the ConfChange.Context of an add: the new member's
// addresses, so every node learns them when the entry applies.
func encodeMemberContext(m Member) []byte {
	return appendMember(nil, &m)
}

// decodeMemberContext parses encodeMemberContext's output.
func decodeMemberContext(b []byte) (Member, error) {
	r := blobReader{b: b}
	m := r.member()
	if r.err == nil && len(r.b) != 0 {
		r.err = errBadMembership
	}
	return m, r.err
}

// setMember inserts or replaces m in the sorted member list.
func (ms *membership) setMember(m Member) {
	i, found := slices.BinarySearchFunc(ms.members, m.ID, func(a Member, id uint64) int {
		switch {
		case a.ID < id:
			return -1
		case a.ID > id:
			return 1
		}
		return 0
	})
	if found {
		ms.members[i] = m
		return
	}
	ms.members = slices.Insert(ms.members, i, m)
}

// member returns the addresses of id, if known.
func (ms *membership) member(id uint64) (Member, bool) {
	for _, m := range ms.members {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// clone returns a deep copy safe to hand to another goroutine.
func (ms *membership) clone() membership {
	return membership{
		conf: wire.ConfState{
			Voters:   slices.Clone(ms.conf.Voters),
			Learners: slices.Clone(ms.conf.Learners),
		},
		members: slices.Clone(ms.members),
	}
}
