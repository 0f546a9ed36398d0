package chaos

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
)

// TestChaosCheckCatchesStaleRead is the harness's negative control on a
// real cluster: it records a read served from an isolated follower's local
// state (a stale read, which raftpipe offers only as GetStale) as if it
// were linearizable, and requires the checker to reject the history and
// write a visualization. If this passed silently, a green TestChaos would
// mean nothing.
func TestChaosCheckCatchesStaleRead(t *testing.T) {
	c := newChaosCluster(t, 3, 0, 6, nil)
	cl := newChaosClient(t, c.ClientAddrs())
	defer cl.Close()
	h := NewHistory()
	put := func(v string) {
		t.Helper()
		in := KVInput{Op: OpPut, Key: "k", Value: v}
		id := h.Invoke(1, in)
		ctx, cancel := context.WithTimeout(context.Background(), convergeDeadline)
		defer cancel()
		if _, err := cl.Put(ctx, []byte("k"), []byte(v)); err != nil {
			t.Fatalf("put %s: %v", v, err)
		}
		h.Return(id, KVOutput{})
	}
	put("v1")
	l := c.waitLeader(convergeDeadline)
	if l == 0 {
		t.Fatal("no leader")
	}
	var f uint64
	for _, id := range c.Running() {
		if id != l {
			f = id
			break
		}
	}
	if !testutil.Poll(convergeDeadline, func() bool { return c.caughtUp(l, f) }) {
		t.Fatalf("follower %d did not apply v1", f)
	}
	var others []int
	for _, id := range c.Running() {
		if id != f {
			others = append(others, int(id-1))
		}
	}
	c.nw.Partition([]int{int(f - 1)}, others)
	put("v2") // committed by the leader and the other follower
	id := h.Invoke(2, KVInput{Op: OpGet, Key: "k"})
	v, found, err := c.staleGet(f, "k")
	if err != nil || !found || v != "v1" {
		t.Fatalf("isolated follower %d read k = %q found=%v err=%v, want the stale v1", f, v, found, err)
	}
	h.Return(id, KVOutput{Found: true, Value: v})
	c.nw.Heal()

	_, cerr := CheckOperations(h.Operations(), CheckConfig{Seed: 6, Timeout: time.Minute, VisualizationDir: t.TempDir()})
	if !errors.Is(cerr, ErrNotLinearizable) {
		t.Fatalf("check of a history with a stale read = %v, want ErrNotLinearizable", cerr)
	}
	path := VisualizationPath(cerr)
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		t.Fatalf("visualization %q: %v", path, err)
	}
	t.Logf("caught: %v", cerr)
}
