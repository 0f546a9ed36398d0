package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// TestSnapFrameRoundTrip: readSnapFrame returns what appendSnapFrame wrote
// and reads exactly the header, leaving the reader at the state machine's
// bytes.
func TestSnapFrameRoundTrip(t *testing.T) {
	ms := membership{conf: wire.ConfState{Voters: []uint64{1, 2, 3}}, members: []Member{{ID: 1, PeerAddr: "a:1"}, {ID: 2, PeerAddr: "b:2"}}}
	f := snapFrame{index: 42, term: 7, membership: encodeMembership(nil, &ms)}
	stream := append(appendSnapFrame(nil, f), "state machine bytes"...)
	r := bytes.NewReader(stream)
	got, err := readSnapFrame(r)
	if err != nil || got.index != 42 || got.term != 7 || !bytes.Equal(got.membership, f.membership) {
		t.Fatalf("readSnapFrame = %+v, %v; want %+v", got, err, f)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "state machine bytes" {
		t.Fatalf("after the frame the reader holds %q", rest)
	}
}

// TestSnapFrameRejectsDamage: every flipped header byte, a truncation, a
// foreign stream and a membership length over the limit are refused.
func TestSnapFrameRejectsDamage(t *testing.T) {
	good := appendSnapFrame(nil, snapFrame{index: 9, term: 2, membership: []byte{membershipFormatVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}})
	for i := range good {
		d := bytes.Clone(good)
		d[i] ^= 0x20
		if _, err := readSnapFrame(bytes.NewReader(d)); !errors.Is(err, errBadSnapFrame) {
			t.Fatalf("byte %d flipped: readSnapFrame = %v, want errBadSnapFrame", i, err)
		}
	}
	for _, n := range []int{0, 5, snapFrameFixedBytes, len(good) - 1} {
		if _, err := readSnapFrame(bytes.NewReader(good[:n])); !errors.Is(err, errBadSnapFrame) {
			t.Fatalf("truncated to %d: readSnapFrame = %v, want errBadSnapFrame", n, err)
		}
	}
	if _, err := readSnapFrame(bytes.NewReader([]byte("RPKVSNAP\x00\x00\x00\x03................"))); !errors.Is(err, errBadSnapFrame) {
		t.Fatalf("a bare kv archive: readSnapFrame = %v, want errBadSnapFrame", err)
	}
	huge := bytes.Clone(good[:snapFrameFixedBytes])
	binary.BigEndian.PutUint32(huge[snapFrameFixedBytes-4:], maxFrameMembershipBytes+1)
	if _, err := readSnapFrame(bytes.NewReader(huge)); !errors.Is(err, errBadSnapFrame) {
		t.Fatalf("membership over the limit: readSnapFrame = %v, want errBadSnapFrame", err)
	}
}

// TestMemberHistory: a lookup gets the membership in effect at the index
// (the latest point at or below it), a reset forgets everything before it,
// and the history stays bounded.
func TestMemberHistory(t *testing.T) {
	var h memberHistory
	h.reset(10, []byte("a"))
	h.record(15, []byte("b"))
	h.record(20, []byte("c"))
	for _, c := range []struct {
		index uint64
		want  string
	}{{10, "a"}, {14, "a"}, {15, "b"}, {19, "b"}, {20, "c"}, {1000, "c"}} {
		if got, err := h.at(c.index); err != nil || string(got) != c.want {
			t.Fatalf("at(%d) = %q, %v; want %q", c.index, got, err, c.want)
		}
	}
	if _, err := h.at(9); err == nil {
		t.Fatal("at(9), below the oldest point, answered")
	}
	h.reset(30, []byte("d"))
	if _, err := h.at(25); err == nil {
		t.Fatal("at(25) answered after a reset at 30")
	}
	for i := uint64(0); i < 3*maxMemberPoints; i++ {
		h.record(100+i, []byte{byte(i)})
	}
	if len(h.points) > maxMemberPoints {
		t.Fatalf("history holds %d points, bound %d", len(h.points), maxMemberPoints)
	}
	if got, err := h.at(100 + 3*maxMemberPoints - 1); err != nil || got[0] != byte(3*maxMemberPoints-1) {
		t.Fatalf("latest point = %v, %v", got, err)
	}
}
