package chaos

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// PartitionMode chooses how the Network cuts a link.
type PartitionMode uint8

const (
	// PartitionDrop discards bytes (see Faults.Drop): messages sent during
	// the partition are lost and the connections that lost them are closed
	// on heal, so peers must reconnect. The default: it exercises the
	// transport's reconnect path and Raft's retransmission.
	PartitionDrop PartitionMode = iota
	// PartitionStall holds bytes (see Faults.Stall): messages arrive late
	// but intact after the heal, like a short partition TCP survives.
	PartitionStall
)

// NetworkConfig configures a Network.
type NetworkConfig struct {
	// Seed derives each proxy's seed (Seed*1000 + from*32 + to), so one
	// number reproduces the whole mesh's jitter.
	Seed uint64
	// MaxBufferedBytes bounds each proxy direction; 0 takes the default.
	MaxBufferedBytes int
	// Mode chooses how partitions cut links.
	Mode PartitionMode
}

// MaxNetworkNodes bounds the size of a Network: a full mesh has n*(n-1)
// proxies, and Raft clusters under test have 3 to 7 nodes.
const MaxNetworkNodes = 16

// ErrTooManyNodes is returned by NewNetwork above MaxNetworkNodes.
var ErrTooManyNodes = errors.New("chaos: too many nodes for a Network")

// Network is a full mesh of proxies for n nodes: one proxy per directed
// pair, so that node i dials Addr(i, j) to reach node j, and every fault
// can be placed on exactly the links it should hit. Partitions compose:
// each call adds faults; Heal removes them all.
type Network struct {
	// cfg is immutable after NewNetwork.
	cfg NetworkConfig
	// proxies[i][j] carries i's connections to j; nil on the diagonal.
	proxies [][]*Proxy
	// transitions counts flap state changes, so tests can wait for them.
	transitions atomic.Int64

	// mu guards the flappers and the closed flag.
	mu struct {
		sync.Mutex
		// flaps holds one stop channel per flapping pair {min, max}.
		flaps map[[2]int]chan struct{}
		// closed is set by Close.
		closed bool
	}
	// flapWG counts flapper goroutines; Heal and Close wait on it.
	flapWG sync.WaitGroup
}

// NewNetwork builds the mesh. targets[j] is node j's real listen address
// (127.0.0.1:port). On error, every proxy already started is closed.
func NewNetwork(targets []string, cfg NetworkConfig) (*Network, error) {
	n := len(targets)
	if n > MaxNetworkNodes {
		return nil, fmt.Errorf("%w: %d > %d", ErrTooManyNodes, n, MaxNetworkNodes)
	}
	nw := &Network{cfg: cfg, proxies: make([][]*Proxy, n)}
	nw.mu.flaps = make(map[[2]int]chan struct{})
	for i := range n {
		nw.proxies[i] = make([]*Proxy, n)
		for j := range n {
			if i == j {
				continue
			}
			p, err := NewProxyConfig(ProxyConfig{
				Target:           targets[j],
				Seed:             cfg.Seed*1000 + uint64(i*32+j),
				MaxBufferedBytes: cfg.MaxBufferedBytes,
			})
			if err != nil {
				_ = nw.Close()
				return nil, fmt.Errorf("chaos: proxy %d->%d: %w", i, j, err)
			}
			nw.proxies[i][j] = p
		}
	}
	return nw, nil
}

// Size is the number of nodes.
func (nw *Network) Size() int { return len(nw.proxies) }

// Addr is the address node from dials to reach node to.
func (nw *Network) Addr(from, to int) string { return nw.Proxy(from, to).Addr() }

// Proxy is the proxy on the link from -> to, for faults the Network
// helpers do not cover (delay, bandwidth, sever).
func (nw *Network) Proxy(from, to int) *Proxy {
	nw.checkNode(from)
	nw.checkNode(to)
	if from == to {
		panic(fmt.Sprintf("chaos: REQUIRES from != to, got %d", from))
	}
	return nw.proxies[from][to]
}

// checkNode panics on an index outside the mesh: a bug in the test.
func (nw *Network) checkNode(i int) {
	if i < 0 || i >= len(nw.proxies) {
		panic(fmt.Sprintf("chaos: REQUIRES 0 <= node < %d, got %d", len(nw.proxies), i))
	}
}

// cut stops bytes travelling from -> to, whichever side dialled: the
// forward half of from's link to to, and the backward half of to's link
// to from.
func (nw *Network) cut(from, to int) {
	apply := func(p *Proxy, d Direction) {
		if nw.cfg.Mode == PartitionStall {
			p.Stall(d)
		} else {
			p.Drop(d)
		}
	}
	apply(nw.Proxy(from, to), Forward)
	apply(nw.Proxy(to, from), Backward)
}

// uncut undoes cut (and only the Drop/Stall part of other faults).
func (nw *Network) uncut(from, to int) {
	unblock := func(f *Faults) { f.Drop, f.Stall = false, false }
	nw.Proxy(from, to).update(Forward, unblock)
	nw.Proxy(to, from).update(Backward, unblock)
}

// Partition cuts every link between groupA and groupB, both ways. Links
// inside each group are untouched.
func (nw *Network) Partition(groupA, groupB []int) {
	for _, a := range groupA {
		for _, b := range groupB {
			if a == b {
				panic(fmt.Sprintf("chaos: REQUIRES disjoint groups, node %d in both", a))
			}
			nw.cut(a, b)
			nw.cut(b, a)
		}
	}
}

// PartitionOneWay cuts bytes from -> to only; to -> from still flows. It
// models an asymmetric fault (a bad NIC queue, a one-way firewall rule).
func (nw *Network) PartitionOneWay(from, to int) { nw.cut(from, to) }

// Isolate cuts node off from every other node, both ways.
func (nw *Network) Isolate(node int) {
	nw.checkNode(node)
	var others []int
	for i := range nw.proxies {
		if i != node {
			others = append(others, i)
		}
	}
	nw.Partition([]int{node}, others)
}

// Sever closes every connection to and from node and refuses new ones
// until Heal, as if the node's host had crashed: peers see resets rather
// than silence. (The node process itself is the test's to stop.)
func (nw *Network) Sever(node int) {
	nw.checkNode(node)
	for i := range nw.proxies {
		if i != node {
			nw.Proxy(i, node).Sever()
			nw.Proxy(node, i).Sever()
		}
	}
}

// Flap partitions a and b (both ways) and heals them, alternating every
// period, until Heal or Close. A second Flap of the same pair replaces
// the first. While it runs, the flapper owns the a<->b links: its heal
// steps also lift a Partition placed on them.
func (nw *Network) Flap(a, b int, period time.Duration) {
	nw.checkNode(a)
	nw.checkNode(b)
	if a == b || period <= 0 {
		panic(fmt.Sprintf("chaos: REQUIRES a != b and period > 0, got %d, %d, %v", a, b, period))
	}
	key := [2]int{min(a, b), max(a, b)}
	stop := make(chan struct{})
	nw.mu.Lock()
	if nw.mu.closed {
		nw.mu.Unlock()
		return
	}
	if old, ok := nw.mu.flaps[key]; ok {
		close(old)
	}
	nw.mu.flaps[key] = stop
	nw.flapWG.Add(1)
	nw.mu.Unlock()
	go nw.flap(a, b, period, stop)
}

// flap is the goroutine behind Flap.
func (nw *Network) flap(a, b int, period time.Duration, stop <-chan struct{}) {
	defer nw.flapWG.Done()
	t := time.NewTicker(period)
	defer t.Stop()
	down := false
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		down = !down
		if down {
			nw.cut(a, b)
			nw.cut(b, a)
		} else {
			nw.uncut(a, b)
			nw.uncut(b, a)
		}
		nw.transitions.Add(1)
	}
}

// FlapTransitions counts partition/heal steps taken by all flappers.
func (nw *Network) FlapTransitions() int64 { return nw.transitions.Load() }

// stopFlaps stops every flapper and waits for them to exit.
func (nw *Network) stopFlaps() {
	nw.mu.Lock()
	for k, stop := range nw.mu.flaps {
		close(stop)
		delete(nw.mu.flaps, k)
	}
	nw.mu.Unlock()
	nw.flapWG.Wait()
}

// Heal stops flapping and clears every fault on every proxy.
func (nw *Network) Heal() {
	nw.stopFlaps()
	nw.each(func(p *Proxy) { p.Heal() })
}

// Close stops flapping and closes every proxy, waiting for their
// goroutines. Idempotent.
func (nw *Network) Close() error {
	nw.mu.Lock()
	nw.mu.closed = true
	nw.mu.Unlock()
	nw.stopFlaps()
	nw.each(func(p *Proxy) { _ = p.Close() })
	return nil
}

// each calls fn on every proxy of the mesh.
func (nw *Network) each(fn func(*Proxy)) {
	for i := range nw.proxies {
		for _, p := range nw.proxies[i] {
			if p != nil {
				fn(p)
			}
		}
	}
}
