package raft

import "testing"

func newTestProgress(state ProgressState, match, next uint64) *Progress {
	pr := &Progress{Match: match, Next: next, inflights: newInflights(4, 0)}
	pr.State = state
	return pr
}

func TestProgressMaybeDecrTo(t *testing.T) {
	for _, tc := range []struct {
		name           string
		state          ProgressState
		match, next    uint64
		rejected, hint uint64
		ok             bool
		wantNext       uint64
	}{
		{"replicate stale", StateReplicate, 5, 10, 5, 3, false, 10},
		{"replicate real", StateReplicate, 5, 10, 9, 7, true, 7},
		{"replicate hint below match", StateReplicate, 5, 10, 9, 2, true, 6},
		{"probe stale", StateProbe, 0, 10, 5, 3, false, 10},
		{"probe real", StateProbe, 0, 10, 9, 4, true, 4},
		{"probe hint above rejected", StateProbe, 0, 10, 9, 20, true, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr := newTestProgress(tc.state, tc.match, tc.next)
			pr.MsgAppFlowPaused = true
			if ok := pr.maybeDecrTo(tc.rejected, tc.hint); ok != tc.ok || pr.Next != tc.wantNext {
				t.Fatalf("maybeDecrTo = %v next %d; want %v next %d", ok, pr.Next, tc.ok, tc.wantNext)
			}
			if tc.ok && tc.state == StateProbe && pr.MsgAppFlowPaused {
				t.Fatal("a real rejection must unpause a probe")
			}
		})
	}
}

func TestProgressFlowControl(t *testing.T) {
	pr := newTestProgress(StateProbe, 3, 4)
	if pr.isPaused() {
		t.Fatal("probe starts unpaused")
	}
	pr.sentEntries(6, 3, 30, 0)
	if !pr.isPaused() || pr.Next != 4 {
		t.Fatalf("probe after send: paused %v next %d (probe does not advance next)", pr.isPaused(), pr.Next)
	}
	if !pr.maybeUpdate(6) || pr.isPaused() || pr.Next != 7 {
		t.Fatalf("after ack: match %d next %d paused %v", pr.Match, pr.Next, pr.isPaused())
	}
	pr.becomeReplicate()
	for i := uint64(0); i < 4; i++ {
		pr.sentEntries(pr.Next+1, 2, 20, 0)
	}
	if !pr.isPaused() || pr.Next != 15 {
		t.Fatalf("replicate: paused %v next %d, want paused with next 15", pr.isPaused(), pr.Next)
	}
	pr.becomeSnapshot(40)
	if !pr.isPaused() {
		t.Fatal("snapshot state must pause")
	}
	pr.becomeProbe()
	if pr.Next != 41 {
		t.Fatalf("probe after snapshot 40: next %d, want 41", pr.Next)
	}
}
