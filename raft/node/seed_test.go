package node

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/wire"
)

// snapshotOver fetches GET /admin/snapshot from n's admin handler (no
// credentials needed: Insecure) and returns the status and body.
func snapshotOver(t *testing.T, n *Node) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	n.AdminHandlerWith(AdminAuth{Insecure: true}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/snapshot", nil))
	return rec.Code, rec.Body.Bytes()
}

// TestSeedFromSnapshot takes a snapshot of a 3-node cluster through the
// admin endpoint, seeds a new cluster's first node from it under a reused
// ID (1) and new addresses, and checks that the node elects itself alone,
// holds every write, takes new ones, and that a second node added to it
// receives a snapshot whose configuration is the new cluster's (the
// founding entry replaced the backup's membership), not the old one's.
func TestSeedFromSnapshot(t *testing.T) {
	src := newTestCluster(t, 3, nil)
	leader := src.leader()
	ctx := ctxT(t, 60*time.Second)
	for i := range 200 {
		if _, err := leader.Put(ctx, fmt.Appendf(nil, "k%03d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range src.nodes {
		if n != leader {
			if code, body := snapshotOver(t, n); code != http.StatusConflict || !bytes.Contains(body, []byte("not the leader")) {
				t.Fatalf("snapshot from a follower: %d %q, want 409", code, body)
			}
			break
		}
	}
	code, archive := snapshotOver(t, leader)
	if code != http.StatusOK {
		t.Fatalf("snapshot from the leader: %d %q", code, archive)
	}
	info, err := kv.ReadSnapshotInfo(bytes.NewReader(archive))
	if err != nil || info.Index < 200 {
		t.Fatalf("archive header: %+v, %v", info, err)
	}
	src.stopAll()

	dir := filepath.Join(t.TempDir(), "new1")
	m1 := Member{ID: 1, PeerAddr: freeAddr(t), ClientAddr: freeAddr(t)}
	cfg1 := Config{ID: 1, ClusterID: 8, DataDir: dir, PeerAddr: m1.PeerAddr, ClientAddr: m1.ClientAddr,
		Members: []Member{m1}, TickInterval: 20 * time.Millisecond}

	// Refusals first: other members listed, a corrupt archive (which
	// leaves nothing behind).
	two := cfg1
	two.Members = []Member{m1, {ID: 2, PeerAddr: "127.0.0.1:1"}}
	if _, err := SeedFromSnapshot(two, bytes.NewReader(archive)); err == nil {
		t.Fatal("seeded with two members listed")
	}
	bad := slices.Clone(archive)
	bad[len(bad)/2] ^= 0xff
	if _, err := SeedFromSnapshot(cfg1, bytes.NewReader(bad)); !errors.Is(err, kv.ErrBadSnapshot) {
		t.Fatalf("seed from a corrupt archive: %v, want ErrBadSnapshot", err)
	}
	if names, _ := os.ReadDir(dir); len(names) != 0 {
		t.Fatalf("a failed seed left %v in %s", names, dir)
	}

	seed, err := SeedFromSnapshot(cfg1, bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	if seed.SnapshotIndex != info.Index || seed.SnapshotTerm != info.Term || seed.Index != info.Index+1 {
		t.Fatalf("seed = %+v for archive %+v", seed, info)
	}
	if _, err := SeedFromSnapshot(cfg1, bytes.NewReader(archive)); !errors.Is(err, ErrDataDirNotEmpty) {
		t.Fatalf("second seed into the same dir: %v, want ErrDataDirNotEmpty", err)
	}

	// A seeding interrupted after the log and before the state machine
	// (here: the state machine removed) is refused at start, not started
	// as a node with an empty state under the seeded log.
	partial := cfg1
	partial.DataDir = filepath.Join(t.TempDir(), "partial")
	if _, err := SeedFromSnapshot(partial, bytes.NewReader(archive)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(partial.DataDir, "kv")); err != nil {
		t.Fatal(err)
	}
	if n, err := Start(partial); err == nil {
		n.Stop()
		t.Fatal("a node started on a log seeded without its state machine")
	} else if !strings.Contains(err.Error(), "behind the log's base") {
		t.Fatalf("start on a partial seed: %v", err)
	}

	n1, err := Start(cfg1)
	if err != nil {
		t.Fatal(err)
	}
	defer n1.Stop()
	waitFor(t, 20*time.Second, "the seeded node to lead", n1.IsLeader)
	st, err := n1.Status(ctx)
	if err != nil || !slices.Equal(st.Voters, []uint64{1}) || len(st.Learners) != 0 || st.FirstIndex != seed.Index+1 {
		t.Fatalf("seeded node status: %+v (%v)", st, err)
	}
	for i := range 200 {
		v, ok, err := n1.Get(ctx, fmt.Appendf(nil, "k%03d", i))
		if err != nil || !ok || string(v) != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%03d on the seeded node = %q %v %v", i, v, ok, err)
		}
	}
	if _, err := n1.Put(ctx, []byte("after"), []byte("seed")); err != nil {
		t.Fatal(err)
	}

	// A second node joins: it needs a snapshot (the seeded log starts past
	// the backup), and that snapshot must describe the new cluster.
	m2 := Member{ID: 2, PeerAddr: freeAddr(t), ClientAddr: freeAddr(t)}
	n2, err := Start(Config{ID: 2, ClusterID: 8, DataDir: filepath.Join(t.TempDir(), "new2"), PeerAddr: m2.PeerAddr,
		ClientAddr: m2.ClientAddr, Members: []Member{m1, m2}, TickInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Stop()
	if err := n1.AddMember(ctx, m2, true); err != nil {
		t.Fatal(err)
	}
	if err := n1.AddMember(ctx, m2, false); err != nil {
		t.Fatal(err)
	}
	st, _ = n1.Status(ctx)
	waitFor(t, 20*time.Second, "node 2 to apply the leader's commit", func() bool {
		s, err := n2.Status(ctx)
		return err == nil && s.Applied >= st.Commit
	})
	st2, err := n2.Status(ctx)
	if err != nil || !slices.Equal(st2.Voters, []uint64{1, 2}) || len(st2.Learners) != 0 || st2.Leader != 1 {
		t.Fatalf("node 2 status after joining: %+v (%v)", st2, err)
	}
	for _, k := range []string{"k000", "k199", "after"} {
		resp, err := n2.Do(ctx, &wire.ClientRequest{Op: wire.OpGet, Flags: wire.FlagStale, Key: []byte(k)})
		if err != nil || resp.Status != wire.StatusOK {
			t.Fatalf("stale get %s on node 2: %+v %v", k, resp, err)
		}
	}
	if got := n2.metrics.snapRecv[0].Load(); got == 0 {
		t.Fatal("node 2 caught up without a snapshot; the test did not exercise the seeded snapshot's membership")
	}
}
