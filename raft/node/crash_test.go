package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/internal/crashfs"
	"github.com/raftpipe/raftpipe/wal"
)

// The crash-point driver. Each scenario runs a workload on a node whose
// every durable write goes through a crashfs.FS (Config.FS). Just before
// every sync and rename of that node, the driver takes two crash images
// (only what was synced; and a torn one, where a random half of the unsynced
// blocks survive) together with what the node had acknowledged by then.
// Each image is then started as a node on its own, and must start and hold
// every acknowledged write. The WAL's own driver (wal package) covers
// truncation; this one covers the node's compositions of WAL, Pebble and
// snapshot files.

// ackedWrite is a write whose Put returned OK.
type ackedWrite struct {
	key, value string
	index      uint64
}

// crashImage is one crash image and what was acknowledged before it.
type crashImage struct {
	point crashfs.Point
	torn  bool
	img   *vfs.MemFS
	// acked is the writes acknowledged before the point.
	acked []ackedWrite
	// durable is the node's durable log index (what it had acknowledged
	// to a leader) before the point.
	durable uint64
}

// crashDriver collects images from one scenario and checks them on a
// separate goroutine, so memory stays bounded by the channel.
type crashDriver struct {
	t      *testing.T
	fs     *crashfs.FS
	images chan crashImage
	done   chan struct{}
	// check restarts one image and returns what is wrong with it, or "".
	check func(im crashImage) string

	mu struct {
		sync.Mutex
		acked []ackedWrite
		node  *Node // the node under test once started, for its durable index
	}
	points, checked int
	failures        []string
}

func newCrashDriver(t *testing.T, check func(im crashImage) string) *crashDriver {
	d := &crashDriver{t: t, fs: crashfs.New(), images: make(chan crashImage, 4), done: make(chan struct{}), check: check}
	go func() {
		defer close(d.done)
		for im := range d.images {
			if why := im.checkWith(d.check); why != "" {
				d.failures = append(d.failures, why)
			}
			d.checked++
		}
	}()
	d.fs.OnPoint(func(p crashfs.Point) {
		d.mu.Lock()
		acked := slices.Clone(d.mu.acked)
		var durable uint64
		if n := d.mu.node; n != nil {
			n.r0.persistedAt.Lock()
			durable = n.r0.persistedAt.index
			n.r0.persistedAt.Unlock()
		}
		d.mu.Unlock()
		d.points = p.N
		for _, torn := range []bool{false, true} {
			d.images <- crashImage{point: p, torn: torn, img: d.fs.Image(torn, uint64(p.N)), acked: acked, durable: durable}
		}
	})
	return d
}

func (im crashImage) checkWith(check func(crashImage) string) string {
	if why := check(im); why != "" {
		return fmt.Sprintf("crash at %v (torn %v): %s", im.point, im.torn, why)
	}
	return ""
}

// ack records an acknowledged write.
func (d *crashDriver) ack(w ackedWrite) {
	d.mu.Lock()
	d.mu.acked = append(d.mu.acked, w)
	d.mu.Unlock()
}

// watch makes the driver record n's durable index at every point.
func (d *crashDriver) watch(n *Node) {
	d.mu.Lock()
	d.mu.node = n
	d.mu.Unlock()
}

// finish stops taking images, waits for every check, and reports.
func (d *crashDriver) finish(name string) {
	d.fs.OnPoint(nil)
	close(d.images)
	<-d.done
	for _, f := range d.failures {
		d.t.Error(f)
	}
	d.t.Logf("%s: %d crash points, %d images checked, %d failed", name, d.points, d.checked, len(d.failures))
	if d.points == 0 {
		d.t.Errorf("%s: the scenario hit no sync or rename point", name)
	}
}

// crashNodeConfig is a node configuration for the driver: fast ticks,
// tiny WAL segments, and everything on fs.
func crashNodeConfig(t *testing.T, id uint64, members []Member, fs vfs.FS) Config {
	var me Member
	for _, m := range members {
		if m.ID == id {
			me = m
		}
	}
	return Config{
		ID: id, ClusterID: 7, DataDir: "/data", FS: fs,
		PeerAddr: me.PeerAddr, Members: members, Bootstrap: true,
		TickInterval: 2 * time.Millisecond,
		WAL:          wal.Options{SegmentBytes: 16 << 10},
	}
}

// restartImage starts a node on an image with no reachable peer (every
// peer address resolves to a port nobody listens on), so a restarted copy
// can never talk to the live cluster it was taken from.
func restartImage(t *testing.T, cfg Config, im crashImage) (*Node, error) {
	cfg.FS = im.img
	cfg.WAL.FS, cfg.KV.FS = nil, nil
	cfg.PeerAddr, cfg.ClientAddr = freeAddr(t), ""
	dead := freeAddr(t)
	cfg.ResolvePeerAddr = func(uint64, string) string { return dead }
	return Start(cfg)
}

// checkAcked waits until n has applied every acked write and reads them
// back from its state machine.
func checkAcked(n *Node, acked []ackedWrite) string {
	var last uint64
	for _, w := range acked {
		last = max(last, w.index)
	}
	deadline := time.Now().Add(10 * time.Second)
	for n.r0.sm.AppliedIndex() < last {
		if time.Now().After(deadline) {
			return fmt.Sprintf("applied %d, want at least %d (the last acknowledged write)", n.r0.sm.AppliedIndex(), last)
		}
		time.Sleep(time.Millisecond)
	}
	for _, w := range acked {
		v, ok, err := n.r0.sm.Lookup([]byte(w.key))
		if err != nil || !ok || string(v) != w.value {
			return fmt.Sprintf("acknowledged write %s=%s (index %d) reads back %q, %v, %v", w.key, w.value, w.index, v, ok, err)
		}
	}
	return ""
}

// singleNodeScenario runs writes on a one-node cluster on the driver's FS
// and checks that every image restarts with every acknowledged write.
func singleNodeScenario(t *testing.T, name string, writes, valueBytes int, tune func(*Config)) {
	members := []Member{{ID: 1, PeerAddr: freeAddr(t)}}
	cfgFor := func(fs vfs.FS) Config {
		cfg := crashNodeConfig(t, 1, members, fs)
		if tune != nil {
			tune(&cfg)
		}
		return cfg
	}
	d := newCrashDriver(t, func(im crashImage) string {
		n, err := restartImage(t, cfgFor(nil), im)
		if err != nil {
			return fmt.Sprintf("node does not start: %v", err)
		}
		defer n.Stop()
		return checkAcked(n, im.acked)
	})
	n, err := Start(cfgFor(d.fs))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the node to lead", n.IsLeader)
	value := make([]byte, valueBytes)
	for i := 0; i < writes; i++ {
		for j := range value {
			value[j] = byte('a' + (i+j)%26)
		}
		key := fmt.Sprintf("%s-%d", name, i)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		idx, err := n.Put(ctx, []byte(key), value)
		cancel()
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		d.ack(ackedWrite{key: key, value: string(value), index: idx})
	}
	n.Stop()
	d.finish(name)
}

// TestCrashPointsBootstrap crashes a founding node at every point of its
// first start (WAL and store creation, the bootstrap batch). Every image
// must start, redoing an interrupted bootstrap, with the whole membership.
func TestCrashPointsBootstrap(t *testing.T) {
	members := []Member{{ID: 1, PeerAddr: freeAddr(t)}, {ID: 2, PeerAddr: freeAddr(t)}, {ID: 3, PeerAddr: freeAddr(t)}}
	d := newCrashDriver(t, func(im crashImage) string {
		n, err := restartImage(t, crashNodeConfig(t, 1, members, nil), im)
		if err != nil {
			return fmt.Sprintf("node does not start: %v", err)
		}
		defer n.Stop()
		st, err := n.Status(context.Background())
		if err != nil {
			return err.Error()
		}
		if !slices.Equal(st.Voters, []uint64{1, 2, 3}) {
			return fmt.Sprintf("voters %v after restart, want [1 2 3]", st.Voters)
		}
		return ""
	})
	n, err := Start(crashNodeConfig(t, 1, members, d.fs))
	if err != nil {
		t.Fatal(err)
	}
	n.Stop()
	d.finish("bootstrap")
}

// TestCrashPointsAppendRoll crashes at every point of a run of writes
// whose WAL rolls to a new segment every few entries.
func TestCrashPointsAppendRoll(t *testing.T) {
	singleNodeScenario(t, "append-roll", 24, 2<<10, nil)
}

// TestCrashPointsCompactFlush crashes at every point of a run in which the
// state machine is flushed and the log compacted every few entries.
func TestCrashPointsCompactFlush(t *testing.T) {
	singleNodeScenario(t, "compact-flush", 30, 100, func(cfg *Config) {
		cfg.SnapshotEntries = 6
		cfg.RetainEntries = 2
	})
}

// TestCrashPointsSnapshotInstall crashes a follower at every point of
// catching up by snapshot: staging, the durable install file, the log's
// reset (marker and membership in one record), the state machine's
// restore, then the appends that follow. Every image must start (before
// the fix, an image between kv.Restore and the log's reset could not:
// "applied beyond last index") and hold at least what it had acknowledged.
func TestCrashPointsSnapshotInstall(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotEntries = 20
		cfg.RetainEntries = 5
		cfg.WAL.SegmentBytes = 16 << 10
	})
	const victim = 3
	// restartCfg is written once, before the victim starts (and so before
	// any crash point), and only read by the checker afterwards.
	var restartCfg Config
	d := newCrashDriver(t, func(im crashImage) string {
		n, err := restartImage(t, restartCfg, im)
		if err != nil {
			return fmt.Sprintf("node does not start: %v", err)
		}
		defer n.Stop()
		if got := max(n.wal.LastIndex(), n.r0.sm.AppliedIndex()); got < im.durable {
			return fmt.Sprintf("log ends at %d and state machine at %d, but the node had acknowledged up to %d", n.wal.LastIndex(), n.r0.sm.AppliedIndex(), im.durable)
		}
		return ""
	})
	c.stop(victim)
	putAll(t, c, "before", 80)
	waitFor(t, 20*time.Second, "every running node's log compacted", func() bool {
		for id, n := range c.nodes {
			if id != victim && n != nil && n.wal.FirstIndex() <= 1 {
				return false
			}
		}
		return true
	})
	// The victim restarts empty on the crash FS and catches up by snapshot.
	restartCfg = c.config(victim, false)
	restartCfg.DataDir = "/data"
	victimCfg := restartCfg
	victimCfg.FS = d.fs
	n, err := Start(victimCfg)
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[victim] = n
	d.watch(n)
	waitFor(t, 20*time.Second, "the victim restored from a snapshot", func() bool { return n.wal.FirstIndex() > 1 })
	putAll(t, c, "after", 10)
	leader := c.leader()
	waitFor(t, 20*time.Second, "the victim caught up", func() bool { return n.r0.sm.AppliedIndex() >= leader.r0.sm.AppliedIndex() })
	c.stop(victim)
	d.finish("snapshot-install")
}

// TestCrashPointsGroups crashes a one-node, three-group host at every
// point of its first start (the groups' bootstrap batches share fsyncs),
// then of writes to every group in turn with flushes and compactions
// every few entries (every group's log compacted on the one shared WAL,
// one Pebble engine for all groups). Every image must start with the
// group count it was made with and hold every acknowledged write in its
// key's group.
func TestCrashPointsGroups(t *testing.T) {
	const G = 3
	members := []Member{{ID: 1, PeerAddr: freeAddr(t)}}
	cfgFor := func(fs vfs.FS) Config {
		cfg := crashNodeConfig(t, 1, members, fs)
		cfg.Groups = G
		cfg.SnapshotEntries = 4
		cfg.RetainEntries = 1
		return cfg
	}
	d := newCrashDriver(t, func(im crashImage) string {
		n, err := restartImage(t, cfgFor(nil), im)
		if err != nil {
			return fmt.Sprintf("node does not start: %v", err)
		}
		defer n.Stop()
		return checkAckedGroups(n, im.acked)
	})
	n, err := Start(cfgFor(d.fs))
	if err != nil {
		t.Fatal(err)
	}
	for g := uint64(0); g < G; g++ {
		waitFor(t, 10*time.Second, fmt.Sprintf("the node to lead group %d", g), func() bool { return n.IsGroupLeader(g) })
	}
	keys := groupKeys("crash", G, 6)
	for i := 0; i < 6; i++ {
		for g := 0; g < G; g++ {
			key := keys[g][i]
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			idx, err := n.Put(ctx, []byte(key), []byte("v-"+key))
			cancel()
			if err != nil {
				t.Fatalf("put %s: %v", key, err)
			}
			d.ack(ackedWrite{key: key, value: "v-" + key, index: idx})
		}
	}
	n.Stop()
	d.finish("groups")
}

// checkAckedGroups is checkAcked for a multi-group node: each write is
// looked up in its key's group once that group applied its index.
func checkAckedGroups(n *Node, acked []ackedWrite) string {
	last := map[uint64]uint64{}
	for _, w := range acked {
		g := n.GroupOf([]byte(w.key))
		last[g] = max(last[g], w.index)
	}
	deadline := time.Now().Add(10 * time.Second)
	for g, idx := range last {
		for n.replicas[g].sm.AppliedIndex() < idx {
			if time.Now().After(deadline) {
				return fmt.Sprintf("group %d applied %d, want at least %d (its last acknowledged write)", g, n.replicas[g].sm.AppliedIndex(), idx)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for _, w := range acked {
		g := n.GroupOf([]byte(w.key))
		v, ok, err := n.replicas[g].sm.Lookup([]byte(w.key))
		if err != nil || !ok || string(v) != w.value {
			return fmt.Sprintf("group %d: acknowledged write %s=%s (index %d) reads back %q, %v, %v", g, w.key, w.value, w.index, v, ok, err)
		}
	}
	return ""
}
