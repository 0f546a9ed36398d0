package chaos

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftpipe/raftpipe/internal/testcluster"
	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/raft/node"
	"github.com/raftpipe/raftpipe/wal"
	"github.com/raftpipe/raftpipe/wire"
)

// Flags of the cluster chaos tests. Every schedule prints its seed; rerun
// one with -run 'Chaos/<name>' -chaos.seed <seed>.
var (
	flagSeed = flag.Uint64("chaos.seed", 0,
		"base seed of the chaos schedules (0 picks one from the clock and prints it)")
	flagDuration = flag.Duration("chaos.duration", 0,
		"how long each chaos schedule injects faults (0 means the short default, see defaultScheduleDuration)")
	flagVizDir = flag.String("chaos.vizdir", "",
		"directory for porcupine HTML visualizations of failing histories (default: the test's temp dir, printed on failure)")
	flagReport = flag.String("chaos.report", "",
		"if set, append one Markdown table row per schedule to this file (used for results/chaos-*.md)")
)

// Bounds of the cluster harness.
const (
	// defaultScheduleDuration keeps `go test -race ./internal/chaos` within its
	// budget: eight schedules of this length plus setup and checks take
	// well under three minutes. -chaos.duration lengthens it.
	defaultScheduleDuration = 8 * time.Second
	// chaosClusterID is the cluster ID of every test cluster.
	chaosClusterID = 7
	// chaosTick is the core tick: 10 ticks give a 250-500 ms election
	// timeout, short enough that a schedule sees many elections.
	chaosTick = 25 * time.Millisecond
	// chaosSnapshotEntries and chaosRetainEntries make compaction frequent
	// so that restarted and wiped nodes catch up by snapshot as well as by
	// log.
	chaosSnapshotEntries = 400
	chaosRetainEntries   = 100
	// convergeDeadline bounds waiting for the healed cluster to elect a
	// leader and for every node to apply the leader's commit index. It is
	// generous because the machine is shared; a correct run never nears it.
	convergeDeadline = 60 * time.Second
	// nemesisWaitDeadline bounds the nemesis's own waits (a leader to
	// appear, a node to catch up) inside a schedule. Missing it is not a
	// failure: the nemesis moves on and the final checks judge the run.
	nemesisWaitDeadline = 10 * time.Second
)

// scheduleDuration is the fault-injection time of one schedule.
func scheduleDuration() time.Duration {
	if *flagDuration > 0 {
		return *flagDuration
	}
	if testing.Short() {
		return defaultScheduleDuration / 2
	}
	return defaultScheduleDuration
}

// slowFS is the WAL file system of a chaos node: the operating system's,
// with a controllable delay before every file and directory sync (a slow
// or overloaded disk). The delay applies to syncs started after it is set.
type slowFS struct {
	vfs.FS
	// delayNs is the injected delay per sync in nanoseconds; 0 is none.
	// Shared with the test goroutine, which changes it while the WAL runs.
	delayNs *atomic.Int64
}

// slowFile delays Sync and SyncData by its FS's current delay.
type slowFile struct {
	vfs.File
	// delayNs is the owning slowFS's delay.
	delayNs *atomic.Int64
}

func (fs slowFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return slowFile{File: f, delayNs: fs.delayNs}, nil
}

func (fs slowFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.Create(name, c))
}
func (fs slowFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.Open(name, opts...))
}
func (fs slowFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenReadWrite(name, c, opts...))
}

// OpenDir wraps directories too: their syncs are delayed like a file's.
func (fs slowFS) OpenDir(name string) (vfs.File, error) { return fs.wrap(fs.FS.OpenDir(name)) }

func (f slowFile) delay() {
	if d := f.delayNs.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
}

// Sync sleeps for the injected delay, then syncs.
func (f slowFile) Sync() error {
	f.delay()
	return f.File.Sync()
}

// SyncData sleeps for the injected delay, then syncs (the WAL's segment fdatasync).
func (f slowFile) SyncData() error {
	f.delay()
	return f.File.SyncData()
}

// chaosCluster is an in-process cluster whose peer links all go through a
// fault-injecting Network: node i dials node j at nw.Addr(i, j). Clients
// reach the nodes' client ports directly (faults are on peer links only).
// The embedded testcluster.Cluster starts, stops and wipes the nodes; it
// is used by the test goroutine (the nemesis) only, and workload
// goroutines never touch nodes.
type chaosCluster struct {
	*testcluster.Cluster
	t testing.TB
	// nw holds one proxy per directed pair of slots.
	nw *Network
	// syncDelayNs[id-1] is the WAL sync delay in nanoseconds injected into
	// node id (0 is none), read by its slowFS across restarts. Allocated
	// once: the atomics must not move.
	syncDelayNs []atomic.Int64
}

// newChaosCluster starts voters bootstrapped nodes, with spare extra
// slots (addresses and proxies reserved, not started) for membership
// changes. opts, if not nil, adjusts every node's configuration.
// t.Cleanup stops everything.
func newChaosCluster(t testing.TB, voters, spare int, seed uint64, opts func(*node.Config)) *chaosCluster {
	t.Helper()
	c := &chaosCluster{t: t, syncDelayNs: make([]atomic.Int64, voters+spare)}
	tc, err := testcluster.Start(testcluster.Options{
		Voters: voters, Spares: spare, Dir: t.TempDir(), ClusterID: chaosClusterID,
		Network: func(peers []string) (testcluster.Network, error) {
			nw, err := NewNetwork(peers, NetworkConfig{Seed: seed})
			if err != nil {
				return nil, err
			}
			c.nw = nw
			return nw, nil
		},
		Configure: func(cfg *node.Config) {
			cfg.TickInterval = chaosTick
			cfg.SnapshotEntries = chaosSnapshotEntries
			cfg.RetainEntries = chaosRetainEntries
			cfg.WAL = wal.Options{FS: slowFS{FS: vfs.Default, delayNs: &c.syncDelayNs[cfg.ID-1]}}
			if opts != nil {
				opts(cfg)
			}
		},
	})
	if err != nil {
		t.Fatalf("chaos cluster: %v", err)
	}
	c.Cluster = tc
	t.Cleanup(func() {
		if err := tc.Close(); err != nil {
			t.Logf("close chaos cluster: %v", err)
		}
	})
	return c
}

// stop stops node id if it runs (a clean crash: the WAL acknowledged
// only what it had synced, so nothing acknowledged is lost). A failing
// Stop is logged, not fatal: the node is gone either way.
func (c *chaosCluster) stop(id uint64) {
	if err := c.StopNode(id); err != nil {
		c.t.Logf("%v", err)
	}
}

// status returns node id's status, bounded by a short deadline.
func (c *chaosCluster) status(id uint64) (node.Status, error) {
	n := c.Node(id)
	if n == nil {
		return node.Status{}, node.ErrStopped
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return n.Status(ctx)
}

// leader returns the running node that believes it leads with the highest
// term (a deposed leader on the minority side may still believe it), or 0.
func (c *chaosCluster) leader() uint64 {
	var best, bestTerm uint64
	for _, id := range c.Running() {
		if !c.Node(id).IsLeader() {
			continue
		}
		st, err := c.status(id)
		if err != nil || st.Role != "leader" {
			continue
		}
		if best == 0 || st.Term > bestTerm {
			best, bestTerm = id, st.Term
		}
	}
	return best
}

// waitLeader waits up to d for a leader and returns it, or 0.
func (c *chaosCluster) waitLeader(d time.Duration) uint64 {
	var l uint64
	testutil.Poll(d, func() bool { l = c.leader(); return l != 0 })
	return l
}

// caughtUp reports whether node id has applied everything the leader has
// committed.
func (c *chaosCluster) caughtUp(leader, id uint64) bool {
	lst, err := c.status(leader)
	if err != nil {
		return false
	}
	st, err := c.status(id)
	return err == nil && st.Applied >= lst.Commit
}

// fenceKey is written by converge so that the leader commits an entry of
// its own term (Raft commits earlier terms' entries only through one).
// It is outside the workload's key set, so the history never sees it.
const fenceKey = "chaos-fence"

// converge heals every fault, restarts stopped nodes that are still
// members, waits for one leader that all running nodes agree on, commits a
// fence entry through it, and waits until every running node has applied
// the leader's commit index. It returns the leader.
func (c *chaosCluster) converge(members []uint64) (uint64, error) {
	c.nw.Heal()
	for i := range c.syncDelayNs {
		c.syncDelayNs[i].Store(0)
	}
	for _, id := range members {
		if c.Node(id) == nil {
			if err := c.StartNode(id, false); err != nil {
				return 0, err
			}
		}
	}
	deadline := time.Now().Add(convergeDeadline)
	var leader uint64
	for {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("converge: no leader committed the fence entry within %v", convergeDeadline)
		}
		leader = c.waitLeader(time.Until(deadline))
		if leader == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fence := []byte(fenceKey)
		if g := c.groups(); g > 1 {
			fence = groupFenceKey(0, uint32(g))
		}
		_, err := c.Node(leader).Put(ctx, fence, []byte(fmt.Sprint(time.Now().UnixNano())))
		cancel()
		if err == nil {
			break
		}
	}
	for _, id := range members {
		ok := testutil.Poll(time.Until(deadline), func() bool {
			return c.caughtUp(leader, id) && c.Node(id).Leader() == leader
		})
		if !ok {
			st, _ := c.status(id)
			lst, _ := c.status(leader)
			return 0, fmt.Errorf("converge: node %d did not catch up with leader %d within %v: node %+v, leader commit %d",
				id, leader, convergeDeadline, st, lst.Commit)
		}
	}
	for g := uint64(1); g < uint64(c.groups()); g++ {
		if err := c.convergeGroup(g, members, deadline); err != nil {
			return 0, err
		}
	}
	return leader, nil
}

// groups is the number of Raft groups the cluster's nodes host.
func (c *chaosCluster) groups() int {
	for _, id := range c.Running() {
		return c.Node(id).Groups()
	}
	return 1
}

// convergeGroup is converge for group g > 0 of a multi-group cluster:
// once a leader of g commits a fence entry of its term (a key that
// wire.GroupOf puts in g), every member must apply g's commit index.
func (c *chaosCluster) convergeGroup(g uint64, members []uint64, deadline time.Time) error {
	fence := groupFenceKey(g, uint32(c.groups()))
	var leader uint64
	for {
		if time.Now().After(deadline) {
			return fmt.Errorf("converge: no leader of group %d committed its fence entry within %v", g, convergeDeadline)
		}
		leader = 0
		for _, id := range c.Running() {
			if c.Node(id).IsGroupLeader(g) {
				leader = id
			}
		}
		if leader == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Node(leader).Put(ctx, fence, []byte(fmt.Sprint(time.Now().UnixNano())))
		cancel()
		if err == nil {
			break
		}
	}
	groupStatus := func(id uint64) (node.Status, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Node(id).GroupStatus(ctx, g)
	}
	for _, id := range members {
		ok := testutil.Poll(time.Until(deadline), func() bool {
			lst, err := groupStatus(leader)
			if err != nil {
				return false
			}
			st, err := groupStatus(id)
			return err == nil && st.Applied >= lst.Commit
		})
		if !ok {
			return fmt.Errorf("converge: node %d did not apply group %d's commit index of leader %d within %v", id, g, leader, convergeDeadline)
		}
	}
	return nil
}

// groupFenceKey is group g's fence key: outside the workload's key set,
// and one that wire.GroupOf puts in g.
func groupFenceKey(g uint64, groups uint32) []byte {
	for i := 0; ; i++ {
		k := []byte(fmt.Sprintf("%s-%d-%d", fenceKey, g, i))
		if uint64(wire.GroupOf(k, groups)) == g {
			return k
		}
	}
}

// staleGet reads key from node id's local state machine.
func (c *chaosCluster) staleGet(id uint64, key string) (string, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Node(id).Do(ctx, &wire.ClientRequest{Op: wire.OpGet, Flags: wire.FlagStale, Key: []byte(key)})
	if err != nil {
		return "", false, err
	}
	switch r.Status {
	case wire.StatusOK:
		return string(r.Value), true, nil
	case wire.StatusNotFound:
		return "", false, nil
	}
	return "", false, fmt.Errorf("stale get %s on node %d: status %d %s", key, id, r.Status, r.Err)
}

// storeDigest is what a stopped node's state machine holds.
type storeDigest struct {
	// applied is the last applied index; hash covers all user data.
	applied, hash uint64
}

// stopAndDigest stops the given nodes cleanly (the store flushes on
// close) and opens each one's state machine directly to read its applied
// index and its user-data hash. After converge every node applied the same
// index, so the digests must be identical.
//
// Every node is isolated first. Otherwise the nodes still running while
// the first ones stop elect new leaders, whose no-op entries the stopped
// nodes never apply: with many groups per node, stopping one node takes
// long enough for that to happen (found by TestChaosGroups).
func (c *chaosCluster) stopAndDigest(ids []uint64) (map[uint64]storeDigest, error) {
	out := map[uint64]storeDigest{}
	for i := 0; i < c.nw.Size(); i++ {
		c.nw.Isolate(i)
	}
	if groups := c.groups(); groups > 1 {
		for _, id := range ids {
			c.stop(id)
			d, err := engineDigest(filepath.Join(c.NodeDir(id), "engine"), groups)
			if err != nil {
				return nil, fmt.Errorf("node %d: %w", id, err)
			}
			out[id] = d
		}
		return out, nil
	}
	for _, id := range ids {
		c.stop(id)
		st, err := kv.Open(filepath.Join(c.NodeDir(id), "kv"), kv.Options{DisableWAL: true})
		if err != nil {
			return nil, fmt.Errorf("open node %d's store: %w", id, err)
		}
		h, err := st.Hash()
		d := storeDigest{applied: st.AppliedIndex(), hash: h}
		if cerr := st.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("hash node %d's store: %w", id, err)
		}
		out[id] = d
	}
	return out, nil
}

// engineDigest is storeDigest for a multi-group node's kv.Engine: applied
// is the sum of the groups' applied indexes, and hash mixes every group's
// applied index and user-data hash in group order, so two engines digest
// alike only if every group matches.
func engineDigest(dir string, groups int) (storeDigest, error) {
	e, err := kv.OpenEngine(dir, kv.Options{DisableWAL: true})
	if err != nil {
		return storeDigest{}, fmt.Errorf("open engine: %w", err)
	}
	defer e.Close()
	var d storeDigest
	mix := fnv.New64a()
	for g := 0; g < groups; g++ {
		grp, err := e.Group(uint64(g))
		if err != nil {
			return storeDigest{}, err
		}
		h, err := grp.Hash()
		applied := grp.AppliedIndex()
		if cerr := grp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return storeDigest{}, fmt.Errorf("hash group %d: %w", g, err)
		}
		d.applied += applied
		fmt.Fprintf(mix, "%d:%d:%d;", g, applied, h)
	}
	d.hash = mix.Sum64()
	return d, nil
}
