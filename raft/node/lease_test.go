package node

import (
	"fmt"
	"testing"
	"time"
)

// TestLeaseReads runs a 3-node cluster in lease mode: reads are
// linearizable (they see every acknowledged write) and, on a healthy
// cluster, confirmed under the lease rather than by heartbeat rounds.
func TestLeaseReads(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.ReadMode = ReadModeLease })
	ctx := ctxT(t, 20*time.Second)
	var l *Node
	for i := 0; i < 50; i++ {
		k := []byte(fmt.Sprintf("k%d", i))
		// The put is idempotent, so it is retried on a new leader if
		// the first one steps down.
		c.onLeader(ctx, "put "+string(k), func(l *Node) error { _, err := l.Put(ctx, k, k); return err })
		var (
			v   []byte
			ok  bool
			err error
		)
		l = c.onLeader(ctx, "get "+string(k), func(l *Node) error { v, ok, err = l.Get(ctx, k); return err })
		if !ok || string(v) != string(k) {
			t.Fatalf("get %s after put: %q %v %v", k, v, ok, err)
		}
	}
	if lease, round := l.metrics.readBatches[1].Load(), l.metrics.readBatches[0].Load(); lease == 0 {
		t.Fatalf("no read confirmed under the lease (%d by heartbeat rounds)", round)
	}
}

func TestLeaseModeNeedsCheckQuorum(t *testing.T) {
	_, err := Config{ID: 1, DataDir: t.TempDir(), PeerAddr: "127.0.0.1:1", ReadMode: ReadModeLease, DisableCheckQuorum: true}.withDefaults()
	if err == nil {
		t.Fatal("lease mode without CheckQuorum accepted")
	}
	_, err = Config{ID: 1, DataDir: t.TempDir(), PeerAddr: "127.0.0.1:1", ReadMode: ReadModeLease, LeaseDriftTicks: 10}.withDefaults()
	if err == nil {
		t.Fatal("LeaseDriftTicks = ElectionTicks accepted")
	}
}

func TestTickClockCatchesUp(t *testing.T) {
	var c tickClock
	t0 := time.Unix(100, 0)
	c.start(10*time.Millisecond, t0)
	for _, tc := range []struct {
		at   time.Duration
		want int
	}{{5 * time.Millisecond, 0}, {10 * time.Millisecond, 1}, {19 * time.Millisecond, 0}, {75 * time.Millisecond, 6}, {75 * time.Millisecond, 0}} {
		if got := c.due(t0.Add(tc.at)); got != tc.want {
			t.Fatalf("due at %v = %d, want %d", tc.at, got, tc.want)
		}
	}
}
