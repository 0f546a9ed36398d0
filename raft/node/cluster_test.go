package node

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

func TestClusterWriteRead(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	ctx := ctxT(t, 30*time.Second)
	for i := 0; i < 200; i++ {
		if _, err := l.Put(ctx, fmt.Appendf(nil, "k%d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	for i := 0; i < 200; i += 17 {
		v, ok, err := l.Get(ctx, fmt.Appendf(nil, "k%d", i))
		if err != nil || !ok || !bytes.Equal(v, fmt.Appendf(nil, "v%d", i)) {
			t.Fatalf("get k%d = %q %v %v", i, v, ok, err)
		}
	}
	last := l.kv.AppliedIndex()
	for id, n := range c.nodes {
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d applies %d", id, last), func() bool { return n.kv.AppliedIndex() >= last })
		v, ok, err := n.kv.Get([]byte("k199"))
		if err != nil || !ok || string(v) != "v199" {
			t.Fatalf("node %d: k199 = %q %v %v", id, v, ok, err)
		}
	}
}
