package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// waiter returns a proposal at (index, term) that records its answers.
func testWaiter(index, term uint64, got *[]proposalResult) *proposal {
	p := &proposal{index: index, term: term}
	p.cb = func(r proposalResult) { *got = append(*got, r) }
	return p
}

func bareApplier() *applier {
	return &applier{rep: &replica{host: &Node{}, metrics: new(counters)}}
}

// TestRegisterAnswersReplacedWaiter: a waiter registered at an index that
// already has one (the old leader's tail was truncated, then it led again)
// must not silently replace the older one.
func TestRegisterAnswersReplacedWaiter(t *testing.T) {
	a := bareApplier()
	var oldGot, newGot []proposalResult
	a.register([]*proposal{testWaiter(5, 2, &oldGot)})
	a.register([]*proposal{testWaiter(5, 4, &newGot)})
	if len(oldGot) != 1 || oldGot[0].status != wire.StatusUnknown {
		t.Fatalf("replaced waiter answered %v, want one StatusUnknown", oldGot)
	}
	if len(newGot) != 0 || a.mu.waiters.at(5) == nil || a.mu.waiters.at(5).term != 4 {
		t.Fatalf("new waiter: answered %v, registered %v", newGot, a.mu.waiters.at(5))
	}
}

// TestDropForSnapshotRules: below the snapshot index a waiter whose term is
// above the snapshot's term can never commit (not-leader, safe to retry);
// every other waiter's outcome is unknown here.
func TestDropForSnapshotRules(t *testing.T) {
	a := bareApplier()
	got := map[string]*[]proposalResult{}
	add := func(name string, index, term uint64) {
		var r []proposalResult
		got[name] = &r
		a.register([]*proposal{testWaiter(index, term, &r)})
	}
	add("covered-newer-term", 10, 7) // index <= 20, term 7 > snapshot term 5
	add("covered-same-term", 15, 5)  // may be the entry the snapshot holds
	add("covered-older-term", 18, 3) // may be the entry the snapshot holds
	add("beyond-snapshot", 25, 6)    // dropped from this log by the reset
	a.dropForSnapshot(20, 5)
	want := map[string]wire.Status{
		"covered-newer-term": wire.StatusNotLeader,
		"covered-same-term":  wire.StatusUnknown,
		"covered-older-term": wire.StatusUnknown,
		"beyond-snapshot":    wire.StatusUnknown,
	}
	for name, st := range want {
		if r := *got[name]; len(r) != 1 || r[0].status != st {
			t.Errorf("%s: answered %v, want one status %d", name, r, st)
		}
	}
	if a.mu.waiters.len() != 0 {
		t.Fatalf("%d waiters left", a.mu.waiters.len())
	}
}

// TestDropFromAnswersTruncatedTail: a conflicting append truncates the log
// at from; waiters at and above it are answered, those below keep waiting.
func TestDropFromAnswersTruncatedTail(t *testing.T) {
	a := bareApplier()
	var below, at, above []proposalResult
	a.register([]*proposal{testWaiter(4, 1, &below), testWaiter(5, 1, &at), testWaiter(9, 1, &above)})
	a.dropFrom(5)
	if len(below) != 0 || a.mu.waiters.at(4) == nil {
		t.Fatalf("waiter below the truncation was answered: %v", below)
	}
	for i, r := range [][]proposalResult{at, above} {
		if len(r) != 1 || r[0].status != wire.StatusUnknown {
			t.Fatalf("truncated waiter %d answered %v, want one StatusUnknown", i, r)
		}
	}
}

// TestReadsBoundedByCount: reads queued behind a leader that cannot
// commit are bounded per read (MaxPendingReads), not per ReadIndex batch;
// beyond the bound they are Busy, and every read is answered once.
func TestReadsBoundedByCount(t *testing.T) {
	const bound, total = 8, 100
	c := newNetCluster(t, 3, func(cfg *Config) { cfg.MaxPendingReads = bound })
	l := c.leader()
	c.nw.Isolate(int(l.ID() - 1))
	answers := newAnswerLog()
	var keys []string
	for i := 0; i < total; i++ {
		key := fmt.Sprintf("read-%d", i)
		keys = append(keys, key)
		l.Submit(&wire.ClientRequest{Op: wire.OpGet, Key: []byte(key)}, func(r *wire.ClientResponse) {
			answers.record(key, r.Status)
		})
	}
	answers.mu.Lock()
	busy := answers.status[wire.StatusBusy]
	answers.mu.Unlock()
	if busy < total-bound {
		t.Fatalf("%d of %d reads were Busy with a bound of %d; want at least %d", busy, total, bound, total-bound)
	}
	// The isolated leader steps down (CheckQuorum) and answers the rest.
	waitFor(t, 20*time.Second, "every read answered", func() bool {
		return l.r0.readsPending.Load() == 0
	})
	answers.check(t, keys)
}
