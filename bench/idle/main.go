// Command idle measures what idle Raft groups cost a host: it starts an
// embedded 3-node cluster (one process, real WALs and Pebble, loopback
// TCP) with -groups G, writes one key into every group, waits until every
// group on every node has quiesced, and then measures, over -window:
//
//   - CPU: user+sys time of the process (getrusage), as a share of one core
//     per node (the process holds 3 nodes, so the total is divided by 3);
//   - peer messages delivered over all nodes (0 when quiescence holds);
//   - memory per replica: the Go heap in use plus goroutine stacks after a
//     GC, minus the same figure for a 2-group cluster measured first in
//     the same process (so the hosts, with their shared kv.Engine, are
//     subtracted), divided by the 3·(G-2) extra replicas.
//
// Usage: go run ./bench/idle -groups 1000 -window 30s (make idle writes
// results/idle-DATE.md with the command line).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftpipe/raftpipe/bench/cluster"
	"github.com/raftpipe/raftpipe/raft/node"
	"github.com/raftpipe/raftpipe/wire"
)

func main() {
	groups := flag.Int("groups", 1000, "Raft groups per node (every node hosts a replica of each)")
	window := flag.Duration("window", 30*time.Second, "measurement window once every group has quiesced")
	settle := flag.Duration("settle", 5*time.Minute, "bound on the wait for every group to elect, take its write and quiesce")
	dir := flag.String("dir", "", "parent of the temporary data directories (default os.TempDir())")
	flag.Parse()
	if *groups < 3 || *groups > node.MaxGroups {
		fail(fmt.Errorf("-groups %d: want 3..%d (2 groups are the baseline, measured first)", *groups, node.MaxGroups))
	}
	base, err := measure(2, *window, *settle, *dir)
	if err != nil {
		fail(fmt.Errorf("baseline (2 groups): %w", err))
	}
	m, err := measure(*groups, *window, *settle, *dir)
	if err != nil {
		fail(fmt.Errorf("%d groups: %w", *groups, err))
	}
	extra := 3 * (*groups - 2)
	perReplica := float64(int64(m.memBytes)-int64(base.memBytes)) / float64(extra)
	fmt.Printf("| groups per node | quiesced after | CPU, %% of one core per node | peer messages in window | heap+stacks | RSS | goroutines |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range []result{base, m} {
		fmt.Printf("| %d | %s | %.3f %% | %d | %.1f MiB | %.1f MiB | %d |\n", r.groups, r.settled.Round(time.Millisecond), r.cpuPct, r.msgs, float64(r.memBytes)/(1<<20), float64(r.rssBytes)/(1<<20), r.goroutines)
	}
	fmt.Printf("\nmemory per extra group replica: %.1f KiB ((%d - %d bytes) / %d replicas)\n", perReplica/1024, m.memBytes, base.memBytes, extra)
	fmt.Printf("RSS per extra group replica: %.1f KiB (RSS also holds memory the Go runtime has not returned to the OS)\n", float64(int64(m.rssBytes)-int64(base.rssBytes))/float64(extra)/1024)
}

// result is one measured cluster.
type result struct {
	groups     int
	settled    time.Duration
	cpuPct     float64
	msgs       uint64
	memBytes   uint64
	rssBytes   uint64
	goroutines int
}

func measure(groups int, window, settle time.Duration, dir string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), settle+window+time.Minute)
	defer cancel()
	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{Dir: dir, Tune: func(cfg *node.Config) { cfg.Groups = groups }})
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	if err := writeEveryGroup(ctx, c, groups); err != nil {
		return result{}, err
	}
	if err := waitQuiesced(ctx, c, groups, settle); err != nil {
		return result{}, err
	}
	r := result{groups: groups, settled: time.Since(start)}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.memBytes = ms.HeapInuse + ms.StackInuse
	r.goroutines = runtime.NumGoroutine()
	r.rssBytes = rss()

	msgs0 := received(c)
	cpu0, err := cpuNow()
	if err != nil {
		return result{}, err
	}
	t0 := time.Now()
	time.Sleep(window)
	cpu1, err := cpuNow()
	if err != nil {
		return result{}, err
	}
	elapsed := time.Since(t0)
	r.msgs = received(c) - msgs0
	r.cpuPct = 100 * float64(cpu1-cpu0) / float64(elapsed) / float64(len(c.Nodes))
	return r, nil
}

// writeEveryGroup puts one key into each group through that group's
// leader, retrying while leaders are still being elected or balanced.
func writeEveryGroup(ctx context.Context, c *cluster.Cluster, groups int) error {
	for g := 0; g < groups; g++ {
		key := keyIn(uint32(g), uint32(groups))
		for {
			var err error = fmt.Errorf("no leader for group %d yet", g)
			for _, n := range c.Nodes {
				if n.IsGroupLeader(uint64(g)) {
					wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_, err = n.Put(wctx, key, []byte("v"))
					cancel()
					break
				}
			}
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("write to group %d: %w (last: %v)", g, ctx.Err(), err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// keyIn returns a key that wire.GroupOf puts in group g.
func keyIn(g, groups uint32) []byte {
	for i := 0; ; i++ {
		k := []byte(fmt.Sprintf("idle-%d-%d", g, i))
		if wire.GroupOf(k, groups) == g {
			return k
		}
	}
}

// waitQuiesced waits until every node reports every group quiesced.
func waitQuiesced(ctx context.Context, c *cluster.Cluster, groups int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		done := true
		least := groups
		for _, n := range c.Nodes {
			q := n.GroupsQuiesced()
			least = min(least, q)
			if q < groups {
				done = false
			}
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s, a node has only %d of %d groups quiesced", d, least, groups)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func received(c *cluster.Cluster) uint64 {
	var s uint64
	for _, n := range c.Nodes {
		s += n.PeerMessagesReceived()
	}
	return s
}

// cpuNow is this process's user+sys CPU time.
func cpuNow() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// rss is the process's resident set size from /proc/self/status (0 where
// that file does not exist).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "idle:", err)
	os.Exit(1)
}
