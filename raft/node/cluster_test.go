package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestClusterWriteRead(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	acked := putAll(t, c, "k", 200)
	ctx := ctxT(t, 30*time.Second)
	for i := 0; i < 200; i += 17 {
		k := fmt.Sprintf("k%d", i)
		for {
			v, ok, err := c.leader().Get(ctx, []byte(k))
			if errors.Is(err, ErrNotLeader) && ctx.Err() == nil {
				continue // leadership moved; reads are safe to retry
			}
			if err != nil || !ok || !bytes.Equal(v, []byte(acked[k])) {
				t.Fatalf("get %s = %q %v %v", k, v, ok, err)
			}
			break
		}
	}
	checkAll(t, c, acked)
}

// putAll writes n keys with prefix through the current leader, retrying on
// not-leader answers, and returns the keys it had acknowledged.
func putAll(t *testing.T, c *testCluster, prefix string, n int) map[string]string {
	t.Helper()
	acked := map[string]string{}
	ctx := ctxT(t, 60*time.Second)
	for i := 0; i < n; i++ {
		k, v := fmt.Sprintf("%s%d", prefix, i), fmt.Sprintf("val-%s-%d", prefix, i)
		for {
			l := c.leader()
			if _, err := l.Put(ctx, []byte(k), []byte(v)); err == nil {
				acked[k] = v
				break
			} else if ctx.Err() != nil {
				t.Fatalf("put %s: %v", k, err)
			}
		}
	}
	return acked
}

// checkAll waits until every running node has applied a barrier write made
// after every acknowledged one, and holds every acknowledged key. (The
// leader's commit index is no barrier: right after an election, or a
// restart, it can trail what was acknowledged until the new leader commits
// an entry of its own term. Waiting for it let this check run early: seen
// once as "node 1 lost acknowledged write k299" in TestClusterRestartAll.)
func checkAll(t *testing.T, c *testCluster, acked map[string]string) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	var barrier uint64
	for {
		idx, err := c.leader().Put(ctx, []byte("checkAll-barrier"), []byte("b"))
		if err == nil {
			barrier = idx
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("barrier write: %v", err)
		}
	}
	for id, n := range c.nodes {
		waitFor(t, 30*time.Second, fmt.Sprintf("node %d applies %d", id, barrier), func() bool { return n.r0.sm.AppliedIndex() >= barrier })
		for k, v := range acked {
			got, ok, err := n.r0.sm.Lookup([]byte(k))
			if err != nil || !ok || string(got) != v {
				t.Fatalf("node %d lost acknowledged write %s=%s: got %q ok=%v err=%v", id, k, v, got, ok, err)
			}
		}
	}
}

func TestClusterLeaderKill(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	acked := putAll(t, c, "a", 100)
	old := c.leader()
	oldID := old.ID()
	c.stop(oldID)
	start := time.Now()
	nl := c.leader()
	if nl.ID() == oldID {
		t.Fatal("stopped node still leads")
	}
	t.Logf("new leader %d elected %v after the old one stopped", nl.ID(), time.Since(start))
	for k, v := range putAll(t, c, "b", 100) {
		acked[k] = v
	}
	checkAll(t, c, acked)
	c.start(oldID, false)
	checkAll(t, c, acked)
}

func TestClusterRestartAll(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	acked := putAll(t, c, "k", 300)
	applied := map[uint64]uint64{}
	for id, n := range c.nodes {
		applied[id] = n.r0.sm.AppliedIndex()
	}
	c.stopAll()
	for _, m := range c.members {
		c.start(m.ID, true)
	}
	for id, n := range c.nodes {
		// Nothing is replayed below what the state machine already holds.
		if got := n.r0.sm.AppliedIndex(); got == 0 {
			t.Fatalf("node %d applied index reset to %d (was %d)", id, got, applied[id])
		}
	}
	checkAll(t, c, acked)
	for k, v := range putAll(t, c, "after", 50) {
		acked[k] = v
	}
	checkAll(t, c, acked)
}

func TestClusterWipedFollowerRejoinsBySnapshot(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotEntries = 200
		cfg.RetainEntries = 50
	})
	acked := putAll(t, c, "s", 600)
	l := c.leader()
	var victim uint64
	for id := range c.nodes {
		if id != l.ID() {
			victim = id
			break
		}
	}
	c.stop(victim)
	if err := os.RemoveAll(c.dirs[victim]); err != nil {
		t.Fatal(err)
	}
	for k, v := range putAll(t, c, "t", 400) {
		acked[k] = v
	}
	// Every running node, not just the current leader: leadership can move
	// on a loaded machine, and a new leader whose own log still starts at 1
	// would catch the victim up by log instead of by snapshot.
	waitFor(t, 10*time.Second, "every running node's log compacted", func() bool {
		for id, n := range c.nodes {
			if id != victim && n != nil && n.wal.FirstIndex() <= 1 {
				return false
			}
		}
		return true
	})
	n := c.start(victim, false)
	checkAll(t, c, acked)
	if n.wal.FirstIndex() <= 1 {
		t.Fatalf("rejoined node's log starts at %d: it was not restored from a snapshot", n.wal.FirstIndex())
	}
	// The transfer shows in the metrics at both ends.
	var sent, sentBytes uint64
	for _, m := range c.nodes {
		sent, sentBytes = sent+m.metrics.snapSent[0].Load(), sentBytes+m.metrics.snapSentBytes.Load()
	}
	if recv, recvBytes := n.metrics.snapRecv[0].Load(), n.metrics.snapRecvBytes.Load(); sent < 1 || recv < 1 || sentBytes == 0 || recvBytes == 0 || count(&n.metrics.snapRecvTime) < 1 {
		t.Errorf("snapshot metrics: sent %d (%d B), received %d (%d B)", sent, sentBytes, recv, recvBytes)
	}
}

func TestClusterMembership(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	acked := putAll(t, c, "m", 100)
	// Add node 4 as a learner, then promote it, then remove node 1.
	m4 := Member{ID: 4, PeerAddr: freeAddr(t), ClientAddr: freeAddr(t)}
	c.members = append(c.members, m4)
	c.dirs[4] = filepath.Join(filepath.Dir(c.dirs[1]), "n4")
	c.start(4, false)
	ctx := ctxT(t, 60*time.Second)
	if err := c.leader().AddMember(ctx, m4, true); err != nil {
		t.Fatalf("add learner: %v", err)
	}
	waitFor(t, 20*time.Second, "learner catches up", func() bool {
		st, err := c.leader().Status(ctx)
		return err == nil && st.Followers[4].Match >= st.Commit
	})
	if err := c.leader().AddMember(ctx, m4, false); err != nil {
		t.Fatalf("promote: %v", err)
	}
	st, _ := c.leader().Status(ctx)
	if !slices.Contains(st.Voters, 4) {
		t.Fatalf("node 4 not a voter after promotion: %+v", st.Voters)
	}
	for {
		l := c.leader()
		err := l.RemoveMember(ctx, 1)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("remove node 1: %v", err)
		}
	}
	c.stop(1)
	for k, v := range putAll(t, c, "after", 50) {
		acked[k] = v
	}
	checkAll(t, c, acked)
	st, _ = c.leader().Status(ctx)
	if slices.Contains(st.Voters, 1) || len(st.Voters) != 3 {
		t.Fatalf("voters after removal: %v", st.Voters)
	}
}
