package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/raft/client"
	"github.com/raftpipe/raftpipe/wire"
)

// answerLog records every answer to the proposals a test makes, so the
// test can check that each was answered exactly once.
type answerLog struct {
	mu      sync.Mutex
	answers map[string]int
	status  map[wire.Status]int
}

func newAnswerLog() *answerLog {
	return &answerLog{answers: map[string]int{}, status: map[wire.Status]int{}}
}

func (a *answerLog) record(key string, st wire.Status) {
	a.mu.Lock()
	a.answers[key]++
	a.status[st]++
	a.mu.Unlock()
}

// check fails unless every one of keys was answered exactly once.
func (a *answerLog) check(t *testing.T, keys []string) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range keys {
		if got := a.answers[k]; got != 1 {
			t.Errorf("proposal %s answered %d times, want exactly once", k, got)
		}
	}
	t.Logf("answers by status: %v", a.status)
}

// TestChurnAnswersEveryProposal reproduces orphaned proposal waiters: an
// isolated leader accepts proposals it cannot commit, the others elect a
// new leader and move on, and the old leader comes back. In one round the
// new leader writes enough to compact its log, so the old leader catches
// up by snapshot and its waiters' indexes are never applied there; in the
// other the new leader writes a little, so the old leader's tail is
// truncated by a conflicting append. Before the fix those waiters stayed
// registered for ever: pending never returned to zero (the node drifted
// towards Busy) and each client request held a connection slot. Every
// proposal must be answered exactly once and nothing may stay pending.
func TestChurnAnswersEveryProposal(t *testing.T) {
	c := newNetCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotEntries = 100
		cfg.RetainEntries = 20
	})
	answers := newAnswerLog()
	var keys []string
	var clients []*client.Client
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	var wg sync.WaitGroup
	for round, bulk := range []int{400, 3} {
		old := c.leader()
		c.nw.Isolate(int(old.ID() - 1))
		// Direct submissions and client-port requests, all accepted by the
		// isolated leader before it notices it lost its quorum.
		cl, err := client.New(client.Config{Addrs: []string{old.ClientAddr()}, ClusterID: 7})
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, cl)
		for i := 0; i < 40; i++ {
			key := fmt.Sprintf("orphan-%d-%d", round, i)
			keys = append(keys, key)
			if i%2 == 0 {
				old.Submit(&wire.ClientRequest{Op: wire.OpPut, Key: []byte(key), Value: []byte("v")}, func(r *wire.ClientResponse) {
					answers.record(key, r.Status)
				})
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_, err := cl.Do(ctx, &wire.ClientRequest{Op: wire.OpPut, Key: []byte(key), Value: []byte("v")})
				st := wire.StatusOK
				if err != nil {
					st = wire.StatusUnknown
				}
				answers.record(key, st)
			}()
		}
		waitFor(t, 10*time.Second, "the isolated leader to accept its proposals", func() bool {
			st, err := old.Status(ctxT(t, time.Second))
			return err == nil && st.PendingProposals >= 20
		})
		var next *Node
		waitFor(t, 20*time.Second, "a new leader", func() bool {
			for _, n := range c.nodes {
				if n != old && n.IsLeader() {
					next = n
					return true
				}
			}
			return false
		})
		for i := 0; i < bulk; i++ {
			if _, err := next.Put(ctxT(t, 10*time.Second), []byte(fmt.Sprintf("r%d-%d", round, i)), []byte("x")); err != nil {
				t.Fatalf("round %d: put %d on the new leader: %v", round, i, err)
			}
		}
		c.nw.Heal()
		waitFor(t, 30*time.Second, "the old leader to answer every proposal", func() bool {
			st, err := old.Status(ctxT(t, time.Second))
			return err == nil && st.PendingProposals == 0 && st.ClientRequestsUnanswered == 0
		})
	}
	wg.Wait()
	answers.check(t, keys)
	for id, n := range c.nodes {
		st, err := n.Status(ctxT(t, time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if st.PendingProposals != 0 || st.ClientRequestsUnanswered != 0 || st.PendingReads != 0 {
			t.Errorf("node %d: pending proposals %d, unanswered client requests %d, pending reads %d; want 0",
				id, st.PendingProposals, st.ClientRequestsUnanswered, st.PendingReads)
		}
	}
}
