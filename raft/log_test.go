package raft

import (
	"errors"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// ents builds entries with the given terms starting at index from.
func ents(from uint64, terms ...uint64) []wire.Entry {
	out := make([]wire.Entry, len(terms))
	for i, t := range terms {
		out[i] = wire.Entry{Index: from + uint64(i), Term: t, Data: []byte{byte(i)}}
	}
	return out
}

func terms(es []wire.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Term
	}
	return out
}

func TestUnstableHandOutOnceAndAck(t *testing.T) {
	u := unstable{offset: 1, offsetInProgress: 1}
	u.truncateAndAppend(ents(1, 1, 1, 1))
	if n := len(u.nextEntries()); n != 3 {
		t.Fatalf("next entries %d", n)
	}
	u.acceptInProgress()
	if n := len(u.nextEntries()); n != 0 {
		t.Fatalf("entries handed out twice: %d", n)
	}
	u.truncateAndAppend(ents(4, 1))
	if got := terms(u.nextEntries()); len(got) != 1 {
		t.Fatalf("only the new entry is next, got %v", got)
	}
	// An ack with the wrong term (the entry was overwritten) is ignored.
	u.stableTo(2, 9)
	if u.offset != 1 {
		t.Fatalf("mismatched ack moved offset to %d", u.offset)
	}
	u.stableTo(2, 1)
	if u.offset != 3 || len(u.entries) != 2 {
		t.Fatalf("after ack 2: offset %d len %d", u.offset, len(u.entries))
	}
}

func TestUnstableOverwriteHandsOutAgain(t *testing.T) {
	u := unstable{offset: 1, offsetInProgress: 1}
	u.truncateAndAppend(ents(1, 1, 1, 1))
	handed := u.nextEntries()
	u.acceptInProgress()
	// A new leader overwrites from index 2.
	u.truncateAndAppend(ents(2, 2, 2))
	if got := terms(u.nextEntries()); len(got) != 2 || got[0] != 2 {
		t.Fatalf("overwritten entries must be handed out again: %v", got)
	}
	// The slice handed out earlier is untouched.
	if terms(handed)[1] != 1 || terms(handed)[2] != 1 {
		t.Fatalf("handed-out slice was modified: %v", terms(handed))
	}
}

func TestLogFindAppend(t *testing.T) {
	st := NewMemoryStorageWithBase(wire.ConfState{Voters: []uint64{1}})
	_ = st.Append(ents(1, 1, 1, 2, 2))
	l := newLog(st, 1<<20)
	l.committed = 2
	// Mismatched previous term.
	if _, _, ok := l.findAppend(3, 1, ents(4, 3)); ok {
		t.Fatal("accepted an append after a mismatched term")
	}
	// Duplicate: nothing to append.
	last, app, ok := l.findAppend(1, 1, ents(2, 1, 2))
	if !ok || last != 3 || len(app) != 0 {
		t.Fatalf("duplicate: last %d append %v ok %v", last, app, ok)
	}
	// Conflict at 4: append from there.
	last, app, ok = l.findAppend(3, 2, ents(4, 3, 3))
	if !ok || last != 5 || len(app) != 2 || app[0].Index != 4 {
		t.Fatalf("conflict: last %d append %v ok %v", last, app, ok)
	}
	// A conflict at or below the commit index is a broken invariant.
	defer func() {
		if recover() == nil {
			t.Fatal("conflict with a committed entry must panic")
		}
	}()
	l.findAppend(1, 1, ents(2, 5))
}

func TestLogTermSearch(t *testing.T) {
	st := NewMemoryStorageWithBase(wire.ConfState{Voters: []uint64{1}})
	//                    1  2  3  4  5  6  7  8
	_ = st.Append(ents(1, 1, 1, 1, 4, 4, 5, 5, 6))
	l := newLog(st, 1<<20)
	if got := l.firstIndexOfTerm(5, 4); got != 4 {
		t.Fatalf("first index of term 4 = %d", got)
	}
	if got := l.firstIndexOfTerm(8, 6); got != 8 {
		t.Fatalf("first index of term 6 = %d", got)
	}
	for _, tc := range []struct{ i, t, want uint64 }{
		{8, 5, 7}, {8, 4, 5}, {8, 3, 3}, {5, 9, 5}, {8, 0, 0},
	} {
		if got := l.lastIndexAtMostTerm(tc.i, tc.t); got != tc.want {
			t.Errorf("lastIndexAtMostTerm(%d, %d) = %d, want %d", tc.i, tc.t, got, tc.want)
		}
	}
}

func TestLogSliceAcrossStorageAndUnstable(t *testing.T) {
	st := NewMemoryStorageWithBase(wire.ConfState{Voters: []uint64{1}})
	_ = st.Append(ents(1, 1, 1, 1))
	l := newLog(st, 1<<20)
	l.append(ents(4, 2, 2))
	got, err := l.slice(2, 6, 1<<20)
	if err != nil || len(got) != 4 || got[0].Index != 2 || got[3].Index != 5 {
		t.Fatalf("slice = %v, %v", got, err)
	}
	// Size limit: each entry is 1 byte of data + overhead; room for two.
	got, _ = l.slice(2, 6, 2*(entryOverheadBytes+1))
	if len(got) != 2 {
		t.Fatalf("limited slice has %d entries, want 2", len(got))
	}
	// At least one entry even if it alone exceeds the limit.
	got, _ = l.slice(5, 6, 1)
	if len(got) != 1 {
		t.Fatalf("tiny limit returned %d entries", len(got))
	}
	if err := st.CreateSnapshotAndCompact(2); err != nil {
		t.Fatal(err)
	}
	if _, err := l.slice(2, 4, 100); !errors.Is(err, ErrCompacted) {
		t.Fatalf("slice of compacted entries: %v", err)
	}
}

func TestCommittedEntriesWaitForDurability(t *testing.T) {
	st := NewMemoryStorageWithBase(wire.ConfState{Voters: []uint64{1}})
	l := newLog(st, 1<<20)
	l.append(ents(1, 1, 1))
	l.commitTo(2)
	if l.hasNextCommittedEnts() {
		t.Fatal("committed but not durable entries must not be applied")
	}
	l.unstable.acceptInProgress()
	_ = st.Append(ents(1, 1))
	l.stableTo(1, 1)
	if got := l.nextCommittedEnts(); len(got) != 1 || got[0].Index != 1 {
		t.Fatalf("after ack of 1: %v", got)
	}
}
