package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// TestDrainUnderLoad drains the leader of a 3-node cluster under a write
// load: every request gets a definite answer (applied, or a retryable
// refusal: no unknown outcome), the client port stops accepting, the
// leader hands off, and Drain returns well within its bound.
func TestDrainUnderLoad(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	const writers = 16
	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		mu        sync.Mutex
		statuses  = map[wire.Status]int{}
		inFlight  atomic.Int64 // requests issued, not yet answered
		atDrain   int64
		unknown   []string
		okKeys    []string
		drainedAt atomic.Int64
	)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("w%d-%d", w, i)
				inFlight.Add(1)
				r, err := l.Do(context.Background(), &wire.ClientRequest{Op: wire.OpPut, Key: []byte(key), Value: []byte(key)})
				inFlight.Add(-1)
				mu.Lock()
				switch {
				case err != nil:
					unknown = append(unknown, fmt.Sprintf("%s: %v", key, err))
				case r.Status == wire.StatusUnknown || r.Status == wire.StatusError:
					unknown = append(unknown, fmt.Sprintf("%s: status %d %s", key, r.Status, r.Err))
				default:
					statuses[r.Status]++
					if r.Status == wire.StatusOK {
						okKeys = append(okKeys, key)
					}
				}
				mu.Unlock()
				if r != nil && r.Status != wire.StatusOK && drainedAt.Load() != 0 {
					return // refused after the drain: a real client would go elsewhere
				}
			}
		}()
	}
	waitFor(t, 10*time.Second, "writes to apply", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return statuses[wire.StatusOK] >= 200
	})
	const bound = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	atDrain = inFlight.Load()
	start := time.Now()
	drainedAt.Store(start.UnixNano())
	err := l.Drain(ctx)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if took > bound/2 {
		t.Fatalf("Drain took %v, bound %v", took, bound)
	}
	if l.IsLeader() {
		t.Fatal("drained node still leads")
	}
	if conn, err := net.DialTimeout("tcp", l.ClientAddr(), time.Second); err == nil {
		conn.Close()
		t.Fatal("client port accepts connections after Drain")
	}
	stop.Store(true)
	wg.Wait()
	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	delete(c.nodes, l.ID())
	if len(unknown) > 0 {
		t.Fatalf("%d requests without a definite answer (%d were in flight at drain), e.g. %v", len(unknown), atDrain, unknown[:min(5, len(unknown))])
	}
	t.Logf("drain took %v; %d requests in flight at drain; answers: %v", took, atDrain, statuses)
	// Every acknowledged write is on the new leader.
	nl := c.leader()
	rctx := ctxT(t, 20*time.Second)
	for _, k := range okKeys {
		v, ok, err := nl.Get(rctx, []byte(k))
		if err != nil || !ok || string(v) != k {
			t.Fatalf("acknowledged write %s on the new leader: %q %v %v", k, v, ok, err)
		}
	}
}

// TestRemovedNodeStops removes a follower: it learns of its removal from
// a member, stops with ErrRemoved, and the others' term stays put (nobody
// campaigns) over several election timeouts.
func TestRemovedNodeStops(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	var victim *Node
	for id, n := range c.nodes {
		if id != l.ID() {
			victim = n
			break
		}
	}
	// A fresh leader refuses changes until it committed in its term, and
	// may step down meanwhile; the victim stays the victim.
	l = c.onLeader(ctxT(t, 20*time.Second), "remove the victim", func(l *Node) error {
		if l == victim {
			return ErrNotLeader // wait for leadership to move back to another node
		}
		return l.RemoveMember(ctxT(t, 5*time.Second), victim.ID())
	})
	select {
	case <-victim.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("removed node did not stop")
	}
	if !errors.Is(victim.Err(), ErrRemoved) {
		t.Fatalf("removed node's Err = %v, want ErrRemoved", victim.Err())
	}
	st, err := l.Status(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Observe for 5 election timeouts (20 ms ticks x 10): a node that went
	// on campaigning would raise the others' term (or be ignored: with
	// PreVote it cannot raise it, so also check it really stopped).
	observe := time.NewTimer(5 * 10 * 20 * time.Millisecond)
	<-observe.C
	st2, err := l.Status(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st2.Term != st.Term || !l.IsLeader() {
		t.Fatalf("term moved from %d to %d (leader still: %v) after the removal", st.Term, st2.Term, l.IsLeader())
	}
	for _, id := range st2.Voters {
		if id == victim.ID() {
			t.Fatalf("victim %d still a voter: %v", id, st2.Voters)
		}
	}
}

// TestRemovedLeaderStops removes the leader itself: it applies its own
// removal and stops with ErrRemoved; the other two elect a leader.
func TestRemovedLeaderStops(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	// The leader answers its own waiter, then stops (it may stop before
	// the answer: ErrStopped). A fresh leader first commits in its term.
	l := c.onLeader(ctxT(t, 20*time.Second), "remove itself", func(l *Node) error {
		if err := l.RemoveMember(ctxT(t, 5*time.Second), l.ID()); err != nil && !errors.Is(err, ErrStopped) {
			return err
		}
		return nil
	})
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("removed leader did not stop")
	}
	if !errors.Is(l.Err(), ErrRemoved) {
		t.Fatalf("Err = %v, want ErrRemoved", l.Err())
	}
	l.Stop()
	delete(c.nodes, l.ID())
	if nl := c.leader(); nl.ID() == l.ID() {
		t.Fatal("removed node leads")
	}
}
