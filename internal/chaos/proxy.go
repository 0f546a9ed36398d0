package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Direction names one half of a proxied TCP connection. It is a bit set so
// that one call can change both halves.
type Direction uint8

const (
	// Forward carries bytes from the dialer (the side that connected to the
	// proxy) to the target. On the Network's link from i to j this is i->j.
	Forward Direction = 1 << iota
	// Backward carries bytes from the target back to the dialer: on the
	// link from i to j this is j->i (responses on i's connection).
	Backward
	// Both is Forward|Backward, for faults that hit a link symmetrically.
	Both = Forward | Backward
)

// String names the direction set for logs and test failures.
func (d Direction) String() string {
	switch d {
	case Forward:
		return "forward"
	case Backward:
		return "backward"
	case Both:
		return "both"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// dirIndex maps a single direction to its slot in per-direction arrays.
// REQUIRES: d is exactly Forward or Backward.
func dirIndex(d Direction) int {
	switch d {
	case Forward:
		return 0
	case Backward:
		return 1
	}
	panic(fmt.Sprintf("chaos: invariant violated: dirIndex needs a single direction, got %v", d))
}

// eachDir calls fn for every single direction in the set d.
func eachDir(d Direction, fn func(i int)) {
	if d&Forward != 0 {
		fn(0)
	}
	if d&Backward != 0 {
		fn(1)
	}
}

// Faults is the fault state of one direction of a proxy. The zero value
// forwards bytes unchanged. When several are set, Drop wins over Stall, and
// Stall wins over Delay/Jitter/BandwidthBytesPerSec (which combine).
type Faults struct {
	// Drop discards bytes (a blackhole) while keeping the connections open,
	// so a partition looks like silence rather than a reset. TCP never
	// delivers a stream with a hole, so a connection that lost bytes in a
	// direction is closed as soon as that direction forwards again (on
	// Heal or on the next byte); the peers must reconnect, as they would
	// after a real partition long enough to time TCP out.
	Drop bool
	// Stall holds bytes instead of discarding them: up to the proxy's
	// buffer limit, then backpressure (the proxy stops reading). When the
	// stall ends the held bytes arrive late but intact, like a short
	// partition that TCP retransmission survives.
	Stall bool
	// Delay is a fixed latency added to every chunk read from the sender
	// after it is set (bytes already queued keep their delivery time,
	// except that clearing Delay and Jitter releases them at once).
	Delay time.Duration
	// Jitter adds a uniformly random extra latency in [0, Jitter] per
	// chunk, drawn from the proxy's seeded source. Chunks still arrive in
	// order: a chunk never overtakes the one queued before it.
	Jitter time.Duration
	// BandwidthBytesPerSec limits throughput (0 means unlimited), to model
	// a slow link or a congested switch port.
	BandwidthBytesPerSec int64
}

// Default limits for a proxy; ProxyConfig fields override them.
const (
	// DefaultMaxBufferedBytes bounds the bytes one direction of one
	// connection may hold while delaying, stalling or pacing. Beyond it the
	// proxy stops reading, so the sender sees TCP backpressure.
	DefaultMaxBufferedBytes = 1 << 20
	// DefaultReadChunkBytes is the most bytes read from a socket at once;
	// it is also the granularity at which delay is applied.
	DefaultReadChunkBytes = 32 << 10
	// DefaultDialTimeout bounds the proxy's dial to its target.
	DefaultDialTimeout = 2 * time.Second
	// paceSlicesPerSec sets the granularity of bandwidth limiting: a write
	// is at most 1/paceSlicesPerSec seconds' worth of bytes, so a
	// bandwidth-limited stream moves in steps of about 20 ms.
	paceSlicesPerSec = 50
	// acceptRetryDelay spaces retries after a transient Accept error.
	acceptRetryDelay = 5 * time.Millisecond
)

// Sentinel errors returned by NewProxy and NewNetwork.
var (
	// ErrNotLoopback is returned when a target is not a 127.0.0.1 address:
	// the harness never touches a real network.
	ErrNotLoopback = errors.New("chaos: target must be a 127.0.0.1 address")
	// ErrClosed is returned by operations on a closed Proxy or Network.
	ErrClosed = errors.New("chaos: closed")
)

// ProxyConfig configures a Proxy. Zero fields take the defaults above.
type ProxyConfig struct {
	// Target is the 127.0.0.1:port the proxy forwards to.
	Target string
	// Seed makes jitter reproducible: the same seed gives the same
	// sequence of jitter samples (the schedule of the OS does not repeat,
	// so a run as a whole is not deterministic).
	Seed uint64
	// MaxBufferedBytes bounds the bytes held per direction per connection.
	MaxBufferedBytes int
	// ReadChunkBytes is the largest single read from a socket.
	ReadChunkBytes int
	// DialTimeout bounds the dial to Target for each accepted connection.
	DialTimeout time.Duration
}

// DirStats counts what one direction of a proxy did, over all connections,
// so tests can wait for a fault to have taken effect instead of sleeping.
type DirStats struct {
	// ForwardedBytes were written to the receiving side.
	ForwardedBytes int64
	// DroppedBytes were discarded by Drop.
	DroppedBytes int64
}

// Stats is a snapshot of a proxy's counters.
type Stats struct {
	// Forward and Backward count bytes per direction.
	Forward, Backward DirStats
	// Accepted counts connections accepted and forwarded to the target.
	Accepted int64
	// Refused counts connections accepted and closed at once because the
	// proxy was severed or the target could not be dialled.
	Refused int64
	// Severed counts connections closed by Sever.
	Severed int64
	// TaintClosed counts connections closed because they had lost bytes to
	// Drop and their direction started forwarding again.
	TaintClosed int64
	// Open is the number of connections open now.
	Open int
	// HeldBytes is the bytes the proxy holds now (queued or being paced),
	// over all connections and both directions. Each direction of each
	// connection holds at most MaxBufferedBytes.
	HeldBytes int
}

// Proxy is a fault-injecting TCP proxy for one peer link, on loopback only.
// A test owns it: it listens on 127.0.0.1:0, forwards every accepted
// connection to Target, and applies the faults set per direction. Faults
// may change at any time; they apply to existing and new connections.
//
// Goroutines: one accept loop, and per connection one reader and one
// writer per direction. Close stops them all and waits.
type Proxy struct {
	// cfg is immutable after NewProxyConfig.
	cfg ProxyConfig
	// ln is the listener whose address dialers use.
	ln net.Listener
	// ctx is cancelled by Close, to abort dials in progress.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts every goroutine the proxy started; Close waits on it.
	wg sync.WaitGroup

	// stats are updated without the lock by the connection goroutines.
	stats struct {
		forwarded, dropped                      [2]atomic.Int64
		accepted, refused, severed, taintClosed atomic.Int64
	}

	// mu guards the fault state, the connection set and the random source.
	mu struct {
		sync.Mutex
		// faults is the current fault state per direction.
		faults [2]Faults
		// severed makes the proxy close every connection, old and new,
		// until Heal.
		severed bool
		// changed is closed (and replaced) on every fault change, to wake
		// writers waiting out a delay or a stall.
		changed chan struct{}
		// conns is the set of open connections.
		conns map[*proxyConn]struct{}
		// closed is set by Close; no connection is registered after it.
		closed bool
		// rng draws jitter; seeded from cfg.Seed.
		rng *rand.Rand
	}
}

// NewProxy starts a proxy on 127.0.0.1:0 that forwards to target, with
// default limits and seed 1.
func NewProxy(target string) (*Proxy, error) {
	return NewProxyConfig(ProxyConfig{Target: target, Seed: 1})
}

// NewProxyConfig starts a proxy with explicit configuration.
func NewProxyConfig(cfg ProxyConfig) (*Proxy, error) {
	if err := checkLoopback(cfg.Target); err != nil {
		return nil, err
	}
	if cfg.MaxBufferedBytes <= 0 {
		cfg.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if cfg.ReadChunkBytes <= 0 {
		cfg.ReadChunkBytes = DefaultReadChunkBytes
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("chaos: proxy listen: %w", err)
	}
	p := &Proxy{cfg: cfg, ln: ln}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.mu.changed = make(chan struct{})
	p.mu.conns = make(map[*proxyConn]struct{})
	p.mu.rng = rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// checkLoopback refuses any target that is not 127.0.0.1:port.
func checkLoopback(target string) error {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrNotLoopback, target, err)
	}
	if host != "127.0.0.1" {
		return fmt.Errorf("%w: %q", ErrNotLoopback, target)
	}
	return nil
}

// Addr is the address to dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.cfg.Target }

// Set replaces the faults of the directions in dir.
func (p *Proxy) Set(dir Direction, f Faults) {
	p.update(dir, func(cur *Faults) { *cur = f })
}

// Faults returns the current faults of one direction (Forward or Backward).
func (p *Proxy) Faults(dir Direction) Faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.faults[dirIndex(dir)]
}

// Pass clears every fault in dir (Sever is cleared only by Heal).
func (p *Proxy) Pass(dir Direction) { p.Set(dir, Faults{}) }

// Drop blackholes dir: bytes are read and discarded; connections stay up.
func (p *Proxy) Drop(dir Direction) {
	p.update(dir, func(f *Faults) { f.Drop = true })
}

// Stall holds bytes in dir (bounded, then backpressure) until cleared.
func (p *Proxy) Stall(dir Direction) {
	p.update(dir, func(f *Faults) { f.Stall = true })
}

// Delay adds fixed plus uniformly random [0, jitter] latency per chunk in
// dir, preserving order.
func (p *Proxy) Delay(dir Direction, fixed, jitter time.Duration) {
	p.update(dir, func(f *Faults) { f.Delay, f.Jitter = fixed, jitter })
}

// Slow limits dir to bytesPerSec (0 removes the limit).
func (p *Proxy) Slow(dir Direction, bytesPerSec int64) {
	p.update(dir, func(f *Faults) { f.BandwidthBytesPerSec = bytesPerSec })
}

// Sever closes every current connection and closes new ones as soon as
// they are accepted, until Heal: a crashed link or a restarted peer.
func (p *Proxy) Sever() {
	p.mu.Lock()
	p.mu.severed = true
	victims := p.connsLocked()
	p.mu.Unlock()
	for _, c := range victims {
		if c.close() {
			p.stats.severed.Add(1)
		}
	}
}

// Heal clears every fault in both directions and ends a Sever.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.mu.severed = false
	p.mu.Unlock()
	p.Set(Both, Faults{})
}

// Stats returns a snapshot of the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	open := len(p.mu.conns)
	held := 0
	for c := range p.mu.conns {
		for _, pp := range c.pipes {
			held += pp.held()
		}
	}
	p.mu.Unlock()
	return Stats{
		HeldBytes:   held,
		Forward:     DirStats{ForwardedBytes: p.stats.forwarded[0].Load(), DroppedBytes: p.stats.dropped[0].Load()},
		Backward:    DirStats{ForwardedBytes: p.stats.forwarded[1].Load(), DroppedBytes: p.stats.dropped[1].Load()},
		Accepted:    p.stats.accepted.Load(),
		Refused:     p.stats.refused.Load(),
		Severed:     p.stats.severed.Load(),
		TaintClosed: p.stats.taintClosed.Load(),
		Open:        open,
	}
}

// Close stops accepting, closes every connection and returns after every
// goroutine of the proxy has exited. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	already := p.mu.closed
	p.mu.closed = true
	victims := p.connsLocked()
	p.mu.Unlock()
	if !already {
		p.cancel()
		_ = p.ln.Close()
	}
	for _, c := range victims {
		c.close()
	}
	p.wg.Wait()
	return nil
}

// update applies fn to the faults of each direction in dir, wakes waiting
// writers, and closes connections that lost bytes in a direction that no
// longer drops (see Faults.Drop).
func (p *Proxy) update(dir Direction, fn func(*Faults)) {
	p.mu.Lock()
	eachDir(dir, func(i int) { fn(&p.mu.faults[i]) })
	close(p.mu.changed)
	p.mu.changed = make(chan struct{})
	var victims []*proxyConn
	for c := range p.mu.conns {
		for i := range 2 {
			if !p.mu.faults[i].Drop && c.tainted[i] {
				victims = append(victims, c)
				break
			}
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		if c.close() {
			p.stats.taintClosed.Add(1)
		}
	}
}

// connsLocked lists the open connections. REQUIRES: p.mu held.
func (p *Proxy) connsLocked() []*proxyConn {
	out := make([]*proxyConn, 0, len(p.mu.conns))
	for c := range p.mu.conns {
		out = append(out, c)
	}
	return out
}

// acceptLoop accepts until the listener is closed.
func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return // listener closed by Close
		}
		if err != nil {
			// Transient (for example, out of file descriptors): retry
			// rather than leave a proxy that silently accepts nothing.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(acceptRetryDelay):
			}
			continue
		}
		p.mu.Lock()
		refuse := p.mu.severed || p.mu.closed
		p.mu.Unlock()
		if refuse {
			p.stats.refused.Add(1)
			_ = client.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

// serve dials the target for one accepted connection and starts its pipes.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.DialTimeout)
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", p.cfg.Target)
	cancel()
	if err != nil {
		p.stats.refused.Add(1)
		_ = client.Close()
		return
	}
	c := &proxyConn{p: p, client: client, server: server, done: make(chan struct{})}
	c.pipes = [2]*pipe{newPipe(c, Forward, client, server), newPipe(c, Backward, server, client)}
	p.mu.Lock()
	if p.mu.closed || p.mu.severed {
		p.mu.Unlock()
		p.stats.refused.Add(1)
		_ = client.Close()
		_ = server.Close()
		return
	}
	p.mu.conns[c] = struct{}{}
	p.mu.Unlock()
	p.stats.accepted.Add(1)
	p.wg.Add(4)
	for _, pp := range c.pipes {
		go pp.readLoop()
		go pp.writeLoop()
	}
}
