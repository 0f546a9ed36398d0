package chaos

// An end-to-end use of the harness on a toy replicated register, as the
// cluster-level chaos tests will use it on raftpipe nodes: node 0 is a
// primary that replicates writes to node 1 over a Network link, clients
// read from node 1, every operation goes into a History, faults hit the
// link, and Check judges the result.

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftpipe/raftpipe/internal/testutil"
)

// toyReplyTimeout is how long a toy client waits for an answer before it
// records the operation as indeterminate.
const toyReplyTimeout = 200 * time.Millisecond

// toyKeys is how many keys the toy workload spreads over. The checker
// partitions histories by key, and every indeterminate write stays open to
// the end of its key's history, so with few keys a loaded machine (more
// timeouts) made the check exponential: 2 keys timed out after a minute on
// a 240-operation history. Eight keeps each partition small.
const toyKeys = 8

// toyBackup is node 1: a line-protocol register store ("SET k v" -> "OK",
// "GET k" -> "VAL v" or "NONE").
type toyBackup struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	data  map[string]string
	conns map[net.Conn]struct{}
}

func newToyBackup(t *testing.T) *toyBackup {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &toyBackup{ln: ln, data: make(map[string]string), conns: make(map[net.Conn]struct{})}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Add(1)
			go b.serve(c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			_ = c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *toyBackup) serve(c net.Conn) {
	defer b.wg.Done()
	defer c.Close()
	r := bufio.NewScanner(c)
	for r.Scan() {
		f := strings.Fields(r.Text())
		var reply string
		b.mu.Lock()
		switch {
		case len(f) == 3 && f[0] == "SET":
			b.data[f[1]] = f[2]
			reply = "OK"
		case len(f) == 2 && f[0] == "GET":
			if v, ok := b.data[f[1]]; ok {
				reply = "VAL " + v
			} else {
				reply = "NONE"
			}
		default:
			reply = "ERR"
		}
		b.mu.Unlock()
		if _, err := fmt.Fprintln(c, reply); err != nil {
			return
		}
	}
}

// toyLink is one connection with a line reader; a nil conn is redialled.
type toyLink struct {
	t    *testing.T
	addr string
	conn net.Conn
	r    *bufio.Reader
}

// call sends one line and waits for the reply; ok is false if the outcome
// is unknown (the link is then dropped and redialled next time).
func (l *toyLink) call(line string) (reply string, ok bool) {
	if l.conn == nil {
		c, err := net.DialTimeout("tcp", l.addr, toyReplyTimeout)
		if err != nil {
			return "", false
		}
		l.conn, l.r = c, bufio.NewReader(c)
	}
	_ = l.conn.SetDeadline(time.Now().Add(toyReplyTimeout))
	if _, err := fmt.Fprintln(l.conn, line); err != nil {
		l.reset()
		return "", false
	}
	s, err := l.r.ReadString('\n')
	if err != nil {
		l.reset()
		return "", false
	}
	return strings.TrimSpace(s), true
}

func (l *toyLink) reset() {
	if l.conn != nil {
		_ = l.conn.Close()
		l.conn = nil
	}
}

// toyCluster is the primary (in-process) plus the backup behind a Network.
func toyCluster(t *testing.T, seed uint64) (*toyBackup, *Network) {
	t.Helper()
	primary := newEchoServer(t) // node 0 receives nothing in this toy
	backup := newToyBackup(t)
	nw, err := NewNetwork([]string{primary.addr(), backup.ln.Addr().String()}, NetworkConfig{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nw.Close() })
	return backup, nw
}

// TestToyAsyncReplicationIsCaught: a primary that acknowledges before the
// backup has the write, with a one-way partition between them, serves a
// stale read from the backup, and the check says so.
func TestToyAsyncReplicationIsCaught(t *testing.T) {
	const seed = 21
	backup, nw := toyCluster(t, seed)
	h := NewHistory()
	repl := &toyLink{t: t, addr: nw.Addr(0, 1)}
	reader := &toyLink{t: t, addr: backup.ln.Addr().String()}
	defer repl.reset()
	defer reader.reset()
	id := h.Invoke(0, put("x", "0"))
	if _, ok := repl.call("SET x 0"); !ok { // replicated synchronously while healthy
		t.Fatal("initial replication failed")
	}
	h.Return(id, ack)

	nw.PartitionOneWay(0, 1)
	// The primary acknowledges at once and replicates in the background.
	id = h.Invoke(0, put("x", "1"))
	if _, err := fmt.Fprintln(repl.conn, "SET x 1"); err != nil {
		t.Fatal(err)
	}
	h.Return(id, ack)
	testutil.Wait(t, "the replication bytes to be lost", func() bool {
		return nw.Proxy(0, 1).Stats().Forward.DroppedBytes >= int64(len("SET x 1\n"))
	})
	id = h.Invoke(1, get("x"))
	reply, ok := reader.call("GET x")
	if !ok {
		t.Fatal("read from the backup failed")
	}
	h.Return(id, found(strings.TrimPrefix(reply, "VAL ")))

	res, err := CheckOperations(h.Operations(), CheckConfig{Seed: seed, VisualizationDir: t.TempDir()})
	if res != porcupine.Illegal || !errors.Is(err, ErrNotLinearizable) {
		t.Fatalf("check = %v, %v; the stale read should be caught", res, err)
	}
	t.Logf("caught as expected: %v", err)
}

// TestToySyncReplicationSurvivesFaults: with synchronous replication the
// toy is linearizable, and stays so while the link is delayed, dropped
// and severed, with many operations ending indeterminate.
func TestToySyncReplicationSurvivesFaults(t *testing.T) {
	// Clients run at least minOpsPerClient operations and until the fault
	// schedule is done (so every fault meets traffic), but never more
	// than maxOpsPerClient, which bounds the history.
	const seed, clients, minOpsPerClient, maxOpsPerClient = 22, 4, 60, 1500
	backup, nw := toyCluster(t, seed)
	nw.Proxy(0, 1).Delay(Both, time.Millisecond, 2*time.Millisecond)
	h := NewHistory()
	faultsDone := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			repl := &toyLink{t: t, addr: nw.Addr(0, 1)}
			reader := &toyLink{t: t, addr: backup.ln.Addr().String()}
			defer repl.reset()
			defer reader.reset()
			id := c
			for i := range maxOpsPerClient {
				if i >= minOpsPerClient {
					select {
					case <-faultsDone:
						return
					default:
					}
				}
				k := fmt.Sprintf("k%d", rng.IntN(toyKeys))
				if rng.IntN(2) == 0 {
					v := fmt.Sprintf("c%d-%d", c, i)
					op := h.Invoke(id, put(k, v))
					if _, ok := repl.call("SET " + k + " " + v); ok {
						h.Return(op, ack)
					} else {
						h.Indeterminate(op)
						id += clients
					}
					continue
				}
				op := h.Invoke(id, get(k))
				reply, ok := reader.call("GET " + k)
				switch {
				case !ok:
					h.Indeterminate(op)
					id += clients
				case reply == "NONE":
					h.Return(op, absent)
				default:
					h.Return(op, found(strings.TrimPrefix(reply, "VAL ")))
				}
			}
		}()
	}
	// Faults while the clients run, each step waiting for evidence that
	// it bit before moving on.
	p := nw.Proxy(0, 1)
	nw.Partition([]int{0}, []int{1})
	testutil.Wait(t, "the partition to drop a write", func() bool { return p.Stats().Forward.DroppedBytes > 0 })
	nw.Heal()
	p.Delay(Both, time.Millisecond, 2*time.Millisecond)
	before := p.Stats().Accepted
	testutil.Wait(t, "clients to reconnect", func() bool { return p.Stats().Accepted > before })
	p.Sever()
	testutil.Wait(t, "a refused reconnect", func() bool { return p.Stats().Refused > 0 })
	p.Heal()
	close(faultsDone)
	wg.Wait()

	res, err := CheckOperations(h.Operations(), CheckConfig{Seed: seed, Timeout: time.Minute, VisualizationDir: t.TempDir()})
	if res != porcupine.Ok {
		t.Fatalf("check = %v, %v", res, err)
	}
}
