package raft

import (
	"fmt"
	"slices"

	"github.com/raftpipe/raftpipe/wire"
)

// confchange.go: single-server membership changes, effective when the
// change entry is APPENDED to a log (Ongaro's thesis §4.1), not when it is
// applied. See doc.go, "Membership", for the safety argument.

// maxConfChangeContextBytes bounds ConfChange.Context (the member's
// addresses) so a conf-change entry stays small.
const maxConfChangeContextBytes = 4096

// bootstrapTerm is the term of the bootstrap entries; the first election
// of a new cluster is in term bootstrapTerm+1.
const bootstrapTerm = 1

// BootstrapEntries returns the log a founding member of a new cluster starts
// with: one conf-change entry per initial voter and learner (sorted, so all
// founders write identical entries), in term 1 at indexes 1..n. The runtime
// persists them with HardState{Term: 1, Commit: n} into a fresh log before
// the first NewRawNode, and its Storage then reports an empty ConfState as
// of index 0. Every founder holds the same entries, so they are committed;
// a node that joins later starts with an empty log and learns the founding
// membership by replaying them (or from a snapshot).
//
// Rejected alternative: keeping the founding membership only in each
// founder's storage as the "membership at index 0" leaves a joining node,
// whose storage is empty, unable to reconstruct it from the log.
func BootstrapEntries(cs wire.ConfState) []wire.Entry {
	voters := slices.Sorted(slices.Values(cs.Voters))
	learners := slices.Sorted(slices.Values(cs.Learners))
	ents := make([]wire.Entry, 0, len(voters)+len(learners))
	add := func(t wire.ConfChangeType, id uint64) {
		ents = append(ents, wire.Entry{
			Term: bootstrapTerm, Index: uint64(len(ents) + 1), Type: wire.EntryConfChange,
			Data: encodeConfChange(wire.ConfChange{Type: t, NodeID: id}),
		})
	}
	for _, id := range voters {
		add(wire.ConfAddVoter, id)
	}
	for _, id := range learners {
		add(wire.ConfAddLearner, id)
	}
	return ents
}

// encodeConfChange is the Data of an EntryConfChange entry, in the wire
// package's versioned ConfChange encoding (the runtime decodes it with
// wire.DecodeConfChange).
func encodeConfChange(cc wire.ConfChange) []byte {
	return wire.AppendConfChange(nil, &cc)
}

// DecodeConfChange parses the Data of an EntryConfChange entry; it is
// wire.DecodeConfChange returning the value. Context aliases data.
func DecodeConfChange(data []byte) (wire.ConfChange, error) {
	var cc wire.ConfChange
	if err := wire.DecodeConfChange(data, &cc); err != nil {
		return wire.ConfChange{}, fmt.Errorf("%w: %w", ErrInvalidConfChange, err)
	}
	return cc, nil
}

// applyConfChange returns cs changed by cc, or an error if cc does not make
// sense against cs. cs is not modified.
func applyConfChange(cs wire.ConfState, cc wire.ConfChange) (wire.ConfState, error) {
	if cc.NodeID == 0 {
		return cs, fmt.Errorf("node ID 0: %w", ErrInvalidConfChange)
	}
	isVoter := slices.Contains(cs.Voters, cc.NodeID)
	isLearner := slices.Contains(cs.Learners, cc.NodeID)
	out := cloneConfState(cs)
	switch cc.Type {
	case wire.ConfAddVoter:
		if isVoter {
			return cs, fmt.Errorf("node %d is already a voter: %w", cc.NodeID, ErrInvalidConfChange)
		}
		out.Learners = slices.DeleteFunc(out.Learners, func(id uint64) bool { return id == cc.NodeID })
		out.Voters = append(out.Voters, cc.NodeID)
	case wire.ConfAddLearner:
		if isVoter || isLearner {
			return cs, fmt.Errorf("node %d is already a member: %w", cc.NodeID, ErrInvalidConfChange)
		}
		out.Learners = append(out.Learners, cc.NodeID)
	case wire.ConfRemove:
		if !isVoter && !isLearner {
			return cs, fmt.Errorf("node %d is not a member: %w", cc.NodeID, ErrInvalidConfChange)
		}
		if isVoter && len(cs.Voters) == 1 {
			return cs, fmt.Errorf("removing the last voter %d: %w", cc.NodeID, ErrInvalidConfChange)
		}
		out.Voters = slices.DeleteFunc(out.Voters, func(id uint64) bool { return id == cc.NodeID })
		out.Learners = slices.DeleteFunc(out.Learners, func(id uint64) bool { return id == cc.NodeID })
	default:
		return cs, fmt.Errorf("conf change type %d: %w", cc.Type, ErrInvalidConfChange)
	}
	slices.Sort(out.Voters)
	slices.Sort(out.Learners)
	return out, nil
}

// confRecord is the membership in effect from index on (because the entry
// at index is a conf change, or index is the snapshot/base index).
type confRecord struct {
	// index is where this membership starts to apply.
	index uint64
	// conf is the membership.
	conf wire.ConfState
}

// confHistory is the membership of every prefix of the log the core holds:
// a base record at the snapshot index and one record per conf-change entry
// after it. The effective membership is the last record (append-time
// semantics); truncating the log drops the records of the truncated
// entries, reverting to the previous membership.
//
// Invariant: len(records) >= 1 and indexes strictly increase.
type confHistory struct {
	// records, oldest first.
	records []confRecord
}

// current is the membership in effect.
func (h *confHistory) current() wire.ConfState { return h.records[len(h.records)-1].conf }

// lastIndex is the index of the latest record (the latest conf change in the
// log, or the base).
func (h *confHistory) lastIndex() uint64 { return h.records[len(h.records)-1].index }

// at is the membership as of log index i (after applying the entry at i).
func (h *confHistory) at(i uint64) wire.ConfState {
	for k := len(h.records) - 1; k >= 0; k-- {
		if h.records[k].index <= i {
			return h.records[k].conf
		}
	}
	// Below the base: the oldest we know. Only reached for indexes the
	// runtime already covers by a snapshot.
	return h.records[0].conf
}

// reset replaces the history with a single base record.
func (h *confHistory) reset(index uint64, cs wire.ConfState) {
	cs = cloneConfState(cs)
	slices.Sort(cs.Voters)
	slices.Sort(cs.Learners)
	h.records = append(h.records[:0], confRecord{index: index, conf: cs})
}

// truncateFrom drops records at index >= i; it reports whether any was
// dropped (so the effective membership changed).
func (h *confHistory) truncateFrom(i uint64) bool {
	n := len(h.records)
	for n > 1 && h.records[n-1].index >= i {
		n--
	}
	changed := n != len(h.records)
	h.records = h.records[:n]
	return changed
}

// observe records the conf-change entries in ents (which were just
// appended); it reports whether the membership changed. Invalid changes (an
// entry a buggy leader proposed) are skipped as no-ops, identically on every
// node, and reported in skipped.
func (h *confHistory) observe(ents []wire.Entry) (changed bool, skipped []uint64) {
	for i := range ents {
		e := &ents[i]
		if e.Type != wire.EntryConfChange {
			continue
		}
		cc, err := DecodeConfChange(e.Data)
		if err != nil {
			skipped = append(skipped, e.Index)
			continue
		}
		next, err := applyConfChange(h.current(), cc)
		if err != nil {
			skipped = append(skipped, e.Index)
			continue
		}
		if e.Index <= h.lastIndex() {
			panic(fmt.Sprintf("raft: invariant violated: conf change at %d not after previous at %d", e.Index, h.lastIndex()))
		}
		h.records = append(h.records, confRecord{index: e.Index, conf: next})
		changed = true
	}
	return changed, skipped
}

// compact forgets records no longer needed once everything up to index is
// covered by a snapshot and applied: it keeps the newest record at or
// below index as the base.
func (h *confHistory) compact(index uint64) {
	k := 0
	for k+1 < len(h.records) && h.records[k+1].index <= index {
		k++
	}
	if k > 0 {
		h.records = append(h.records[:0], h.records[k:]...)
	}
}

// isVoter reports whether id votes in cs.
func isVoter(cs wire.ConfState, id uint64) bool { return slices.Contains(cs.Voters, id) }

// isMember reports whether id is a voter or learner in cs.
func isMember(cs wire.ConfState, id uint64) bool {
	return slices.Contains(cs.Voters, id) || slices.Contains(cs.Learners, id)
}
