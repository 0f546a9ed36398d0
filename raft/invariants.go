package raft

import "fmt"

// checkInvariants verifies structural invariants after an input when built
// with -tags invariants. Each failure panics naming the invariant.
func (r *raft) checkInvariants() {
	if !invariantsEnabled {
		return
	}
	l := r.log
	u := &l.unstable
	if l.applied > l.committed {
		panic(fmt.Sprintf("raft: invariant violated: applied %d > committed %d", l.applied, l.committed))
	}
	if l.committed > l.lastIndex() {
		panic(fmt.Sprintf("raft: invariant violated: committed %d > last index %d", l.committed, l.lastIndex()))
	}
	if u.offsetInProgress < u.offset || u.offsetInProgress > u.offset+uint64(len(u.entries)) {
		panic(fmt.Sprintf("raft: invariant violated: unstable in-progress %d outside [%d, %d]", u.offsetInProgress, u.offset, u.offset+uint64(len(u.entries))))
	}
	if u.snapshot != nil && u.offset != u.snapshot.Index+1 {
		panic(fmt.Sprintf("raft: invariant violated: unstable offset %d after snapshot %d", u.offset, u.snapshot.Index))
	}
	prevTerm, _ := l.term(u.offset - 1)
	for i, e := range u.entries {
		if e.Index != u.offset+uint64(i) {
			panic(fmt.Sprintf("raft: invariant violated: unstable entry %d has index %d", u.offset+uint64(i), e.Index))
		}
		if e.Term < prevTerm {
			panic(fmt.Sprintf("raft: invariant violated: term decreases at %d (%d after %d)", e.Index, e.Term, prevTerm))
		}
		prevTerm = e.Term
	}
	if r.role == RoleLeader {
		if r.lead != r.id {
			panic(fmt.Sprintf("raft: invariant violated: leader %d has lead %d", r.id, r.lead))
		}
		if pr := r.prs[r.id]; pr != nil && pr.Match > l.durableIndex() && l.unstable.snapshot == nil {
			panic(fmt.Sprintf("raft: invariant violated: leader counts itself at %d beyond its durable %d", pr.Match, l.durableIndex()))
		}
	}
	if r.quiesced {
		// Quiescence only stops timers of a node with nothing to do.
		if l.committed != l.lastIndex() || (r.role == RoleLeader && !r.quiesceEligible()) || (r.role != RoleLeader && r.role != RoleFollower) {
			panic(fmt.Sprintf("raft: invariant violated: %v quiesced with commit %d, last %d", r.role, l.committed, l.lastIndex()))
		}
	}
	if r.confs.lastIndex() > l.lastIndex() {
		panic(fmt.Sprintf("raft: invariant violated: membership record at %d beyond last index %d", r.confs.lastIndex(), l.lastIndex()))
	}
	for k := 1; k < len(r.confs.records); k++ {
		if r.confs.records[k].index <= r.confs.records[k-1].index {
			panic("raft: invariant violated: membership records out of order")
		}
	}
}
