package chaos

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
)

// testMesh starts n echo servers and a Network over them.
func testMesh(t *testing.T, n int, cfg NetworkConfig) ([]*echoServer, *Network) {
	t.Helper()
	srvs := make([]*echoServer, n)
	targets := make([]string, n)
	for i := range srvs {
		srvs[i] = newEchoServer(t)
		targets[i] = srvs[i].addr()
	}
	nw, err := NewNetwork(targets, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nw.Close() })
	return srvs, nw
}

// expectCut writes on c and waits until the proxy for (from, to)
// discarded it in dir, then checks nothing came back.
func expectCut(t *testing.T, nw *Network, c net.Conn, from, to int, dir Direction) {
	t.Helper()
	p := nw.Proxy(from, to)
	before := p.Stats()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	testutil.Wait(t, "the link to discard the byte", func() bool {
		st := p.Stats()
		if dir == Forward {
			return st.Forward.DroppedBytes > before.Forward.DroppedBytes
		}
		return st.Backward.DroppedBytes > before.Backward.DroppedBytes
	})
	expectSilence(t, c)
}

func TestNetworkAddrsReachTheRightNode(t *testing.T) {
	srvs, nw := testMesh(t, 3, NetworkConfig{Seed: 1})
	for i := range 3 {
		for j := range 3 {
			if i == j {
				continue
			}
			before := srvs[j].received.Load()
			roundTrip(t, dial(t, nw.Addr(i, j)), "hello")
			if got := srvs[j].received.Load() - before; got != 5 {
				t.Fatalf("Addr(%d, %d) reached the wrong node: node %d got %d bytes", i, j, j, got)
			}
		}
	}
}

func TestNetworkPartitionAndHeal(t *testing.T) {
	_, nw := testMesh(t, 3, NetworkConfig{Seed: 2})
	c01 := dial(t, nw.Addr(0, 1))
	c10 := dial(t, nw.Addr(1, 0))
	c12 := dial(t, nw.Addr(1, 2))
	roundTrip(t, c01, "a")
	roundTrip(t, c10, "b")
	roundTrip(t, c12, "c")

	nw.Partition([]int{0}, []int{1, 2})
	expectCut(t, nw, c01, 0, 1, Forward)
	expectCut(t, nw, c10, 1, 0, Forward)
	roundTrip(t, c12, "inside the majority")

	nw.Heal()
	expectClosed(t, c01)
	expectClosed(t, c10)
	roundTrip(t, c12, "untouched by heal")
	roundTrip(t, dial(t, nw.Addr(0, 1)), "reconnected")
	roundTrip(t, dial(t, nw.Addr(2, 0)), "reconnected")
}

func TestNetworkPartitionOneWay(t *testing.T) {
	srvs, nw := testMesh(t, 3, NetworkConfig{Seed: 3})
	c01 := dial(t, nw.Addr(0, 1))
	c10 := dial(t, nw.Addr(1, 0))
	roundTrip(t, c01, "a")
	roundTrip(t, c10, "b")

	nw.PartitionOneWay(0, 1)
	// 0 -> 1 on 0's own connection is cut.
	expectCut(t, nw, c01, 0, 1, Forward)
	// On 1's connection to 0, 1 -> 0 flows but 0's answers are cut.
	before := srvs[0].received.Load()
	expectCut(t, nw, c10, 1, 0, Backward)
	if srvs[0].received.Load() != before+1 {
		t.Fatal("1 -> 0 should still flow under PartitionOneWay(0, 1)")
	}
	// Other links are untouched.
	roundTrip(t, dial(t, nw.Addr(0, 2)), "fine")
	roundTrip(t, dial(t, nw.Addr(2, 1)), "fine")
}

func TestNetworkIsolate(t *testing.T) {
	_, nw := testMesh(t, 3, NetworkConfig{Seed: 4})
	c02 := dial(t, nw.Addr(0, 2))
	c21 := dial(t, nw.Addr(2, 1))
	roundTrip(t, c02, "a")
	roundTrip(t, c21, "b")
	nw.Isolate(2)
	expectCut(t, nw, c02, 0, 2, Forward)
	expectCut(t, nw, c21, 2, 1, Forward)
	roundTrip(t, dial(t, nw.Addr(0, 1)), "majority side")
}

func TestNetworkSeverNode(t *testing.T) {
	_, nw := testMesh(t, 3, NetworkConfig{Seed: 7})
	c01 := dial(t, nw.Addr(0, 1))
	c10 := dial(t, nw.Addr(1, 0))
	c20 := dial(t, nw.Addr(2, 0))
	for _, c := range []net.Conn{c01, c10, c20} {
		roundTrip(t, c, "up")
	}
	nw.Sever(1)
	expectClosed(t, c01)
	expectClosed(t, c10)
	roundTrip(t, c20, "unaffected")
	expectClosed(t, dial(t, nw.Addr(2, 1)))
	nw.Heal()
	roundTrip(t, dial(t, nw.Addr(2, 1)), "back")
}

func TestNetworkStallModeDeliversAfterHeal(t *testing.T) {
	_, nw := testMesh(t, 2, NetworkConfig{Seed: 5, Mode: PartitionStall})
	c := dial(t, nw.Addr(0, 1))
	roundTrip(t, c, "a")
	nw.Partition([]int{0}, []int{1})
	msg := "late but intact"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	testutil.Wait(t, "the stalled bytes to be held", func() bool {
		return nw.Proxy(0, 1).Stats().HeldBytes == len(msg)
	})
	expectSilence(t, c)
	nw.Heal()
	roundTripRead(t, c, msg)
}

// roundTripRead reads an echo of msg already written.
func roundTripRead(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitDeadline))
	got := make([]byte, len(msg))
	for n := 0; n < len(got); {
		m, err := c.Read(got[n:])
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, got[:n])
		}
		n += m
	}
	if string(got) != msg {
		t.Fatalf("got %q, want %q", got, msg)
	}
}

func TestNetworkFlapStopsOnHeal(t *testing.T) {
	_, nw := testMesh(t, 3, NetworkConfig{Seed: 6})
	nw.Flap(0, 1, 5*time.Millisecond)
	nw.Flap(1, 0, 5*time.Millisecond) // replaces the first
	testutil.Wait(t, "several flap transitions", func() bool { return nw.FlapTransitions() >= 4 })
	nw.Heal()
	n := nw.FlapTransitions()
	for _, p := range []*Proxy{nw.Proxy(0, 1), nw.Proxy(1, 0)} {
		if f := p.Faults(Forward); f != (Faults{}) {
			t.Fatalf("faults after Heal: %+v", f)
		}
	}
	// Heal waited for the flapper to exit, so no transition can follow.
	roundTrip(t, dial(t, nw.Addr(0, 1)), "steady")
	if got := nw.FlapTransitions(); got != n {
		t.Fatalf("flapping continued after Heal: %d -> %d transitions", n, got)
	}
}

func TestNetworkRejectsBadConfig(t *testing.T) {
	if _, err := NewNetwork(make([]string, MaxNetworkNodes+1), NetworkConfig{}); !errors.Is(err, ErrTooManyNodes) {
		t.Fatalf("err = %v, want ErrTooManyNodes", err)
	}
	if _, err := NewNetwork([]string{"127.0.0.1:1", "192.168.0.1:1"}, NetworkConfig{}); !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("err = %v, want ErrNotLoopback", err)
	}
}
