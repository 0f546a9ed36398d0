package node

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/raft/transport"
	"github.com/raftpipe/raftpipe/wire"
)

// TestClusterOnMemStateMachine runs a whole cluster on memSM instead of
// raft/kv: writes and linearizable reads, a restart of every node (state
// and membership recovered from the state machine's flushed file and the
// WAL alone), and a wiped follower brought back by a snapshot framed by
// the runtime around memSM's own bytes. Nothing in the runtime may assume
// kv for any of it.
func TestClusterOnMemStateMachine(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.OpenStateMachine = openMemSM
		cfg.SnapshotEntries = 200
		cfg.RetainEntries = 50
	})
	for id, n := range c.nodes {
		if _, ok := n.r0.sm.(*memSM); !ok {
			t.Fatalf("node %d runs %T, not the in-memory state machine", id, n.r0.sm)
		}
	}
	acked := putAll(t, c, "m", 300)
	ctx := ctxT(t, 30*time.Second)
	for {
		v, ok, err := c.leader().Get(ctx, []byte("m7"))
		if errors.Is(err, ErrNotLeader) && ctx.Err() == nil {
			continue
		}
		if err != nil || !ok || string(v) != acked["m7"] {
			t.Fatalf("linearizable get m7 = %q %v %v, want %q", v, ok, err, acked["m7"])
		}
		break
	}
	checkAll(t, c, acked)

	// Every node restarts from its flushed file and its (compacted) log.
	c.stopAll()
	for _, m := range c.members {
		c.start(m.ID, true)
	}
	checkAll(t, c, acked)
	st, err := c.leader().Status(ctxT(t, 10*time.Second))
	if err != nil || !slices.Equal(st.Voters, []uint64{1, 2, 3}) {
		t.Fatalf("after restart: voters %v (%v), want [1 2 3]", st.Voters, err)
	}

	// A follower that lost its disk comes back by a snapshot.
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
	for k, v := range putAll(t, c, "n", 400) {
		acked[k] = v
	}
	waitFor(t, 10*time.Second, "every running node's log compacted", func() bool {
		for id, n := range c.nodes {
			if id != victim && n.wal.FirstIndex() <= 1 {
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
	// The snapshot carried the membership: the rejoined node knows every
	// member's addresses, which no conf-change entry in its log told it.
	ms, err := decodeMembership(n.wal.Base())
	if err != nil || len(ms.members) != 3 || !slices.Equal(ms.conf.Voters, []uint64{1, 2, 3}) {
		t.Fatalf("rejoined node's log base holds membership %+v (%v), want 3 members and voters [1 2 3]", ms, err)
	}
}

// TestUnknownGroupDropped sends a node, over a real peer connection, a
// message for group 5, which it does not host, and a snapshot for it: both
// are dropped and counted (also on /metrics), and the node keeps serving.
func TestUnknownGroupDropped(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	n := c.leader()
	ctx := ctxT(t, 30*time.Second)
	if _, err := n.Put(ctx, []byte("before"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	// A peer that passes the handshake (same cluster ID) but speaks for a
	// group this node lacks.
	peer, err := transport.New(transport.Config{ClusterID: 7, NodeID: 9, ListenAddr: freeAddr(t), Handler: func(*wire.Message) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peer.AddPeer(n.ID(), n.PeerAddr())
	waitFor(t, 10*time.Second, "the group-5 message counted", func() bool {
		peer.Send(&wire.Message{Type: wire.MsgHeartbeat, Group: 5, From: 9, To: n.ID(), Term: 1})
		return n.UnknownGroupDropped() >= 1
	})
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	snap := &wire.Message{Type: wire.MsgSnap, Group: 5, From: 9, To: n.ID(), Term: 1, Snapshot: wire.SnapshotMeta{Index: 10, Term: 1}}
	if err := peer.SendSnapshot(sctx, snap, bytes.NewReader([]byte("not for you"))); err == nil {
		t.Fatal("a snapshot for an unknown group was accepted")
	}
	waitFor(t, 10*time.Second, "the group-5 snapshot counted", func() bool { return n.UnknownGroupDropped() >= 2 })

	if _, err := n.Put(ctx, []byte("after"), []byte("2")); err != nil {
		t.Fatalf("node stopped serving after a message for an unknown group: %v", err)
	}
	if v, ok, err := n.Get(ctx, []byte("before")); err != nil || !ok || string(v) != "1" {
		t.Fatalf("get before = %q %v %v", v, ok, err)
	}
	rec := httptest.NewRecorder()
	n.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "raftpipe_peer_messages_unknown_group_total ") {
		t.Fatalf("/metrics lacks raftpipe_peer_messages_unknown_group_total")
	}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "raftpipe_peer_messages_unknown_group_total ") && strings.HasSuffix(line, " 0") {
			t.Fatalf("/metrics: %s", line)
		}
	}
}
