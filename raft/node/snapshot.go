package node

import (
	"context"
	"fmt"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"io"
	"time"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/wire"
)

// Snapshot files under DataDir. Every one is written through Config.FS.
const (
	// snapInDir holds snapshots received from a leader until the core
	// accepts them; emptied at start-up.
	snapInDir = "snap-in"
	// snapOutDir holds snapshots being sent to followers; emptied at
	// start-up.
	snapOutDir = "snap-out"
	// installFile is the snapshot being installed: the staged file the
	// core accepted, renamed here (durably) before the log is reset on it,
	// and removed once the state machine holds it. Start-up finishes an
	// install that a crash interrupted (finishInstall).
	installFile = "snapshot.install"
	// maxSnapshotSends bounds concurrent outgoing snapshot transfers.
	maxSnapshotSends = 2
	// snapshotSendTimeout bounds one whole transfer.
	snapshotSendTimeout = 10 * time.Minute
	// maxStagedSnapshots bounds received snapshots kept for the core.
	maxStagedSnapshots = 2
)

// snapshotState is the loop's record of transfers. Owned by the loop.
type snapshotState struct {
	// sending is the set of followers with a transfer in flight.
	sending map[uint64]bool
	// staged maps a received snapshot's index to its file.
	staged map[uint64]string
}

// startSnapshotSend streams a fresh state-machine checkpoint to m.To. The
// core names a snapshot at the log's base; the checkpoint covers that and
// more (the state machine's applied index), so its own index and term are
// sent instead. The core learns the outcome through ReportSnapshot and the
// follower's append response.
func (n *Node) startSnapshotSend(m wire.Message) {
	if n.snaps.sending == nil {
		n.snaps.sending = map[uint64]bool{}
	}
	if n.snaps.sending[m.To] || len(n.snaps.sending) >= maxSnapshotSends {
		// One transfer per follower; it reports when done and the core
		// asks again if needed. Refuse the excess so it retries later.
		if !n.snaps.sending[m.To] {
			n.rn.ReportSnapshot(m.To, true)
		}
		return
	}
	n.snaps.sending[m.To] = true
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		start := time.Now()
		err := n.sendSnapshot(m)
		n.metrics.snapshotSent(start, err)
		if err != nil {
			n.log.Warn("snapshot send failed", "to", m.To, "err", err)
		}
		n.submitEvent(context.Background(), func() {
			delete(n.snaps.sending, m.To)
			n.rn.ReportSnapshot(m.To, err != nil)
		})
	}()
}

// snapFileName returns a fresh name in DataDir/dir for a snapshot file.
func (n *Node) snapFileName(dir, prefix string, peer uint64) string {
	return n.fs.PathJoin(n.cfg.DataDir, dir, fmt.Sprintf("%s-%d-%d", prefix, peer, n.snapSeq.Add(1)))
}

// sendSnapshot checkpoints the state machine into a file and streams it.
// The checkpoint records its own index, term and membership (kv keeps the
// applied term beside the applied index), so nothing is looked up in the
// log, which may have been compacted past that index meanwhile.
func (n *Node) sendSnapshot(m wire.Message) error {
	name := n.snapFileName(snapOutDir, "to", m.To)
	defer n.fs.Remove(name)
	f, err := n.fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	info, err := n.kv.WriteSnapshot(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	ms, err := decodeMembership(info.Meta)
	if err != nil {
		return err
	}
	if f, err = n.fs.Open(name); err != nil {
		return err
	}
	defer f.Close()
	m.Snapshot = wire.SnapshotMeta{Index: info.Index, Term: info.Term, Conf: ms.conf}
	ctx, cancel := context.WithTimeout(context.Background(), snapshotSendTimeout)
	defer cancel()
	go func() {
		select {
		case <-n.stopc:
			cancel()
		case <-ctx.Done():
		}
	}()
	n.log.Info("sending snapshot", "to", m.To, "index", info.Index, "term", info.Term)
	return n.tr.SendSnapshot(ctx, &m, countingReader{f, &n.metrics.snapSentBytes})
}

// onSnapshot is the transport's snapshot handler: stage the stream in a
// file, then let the loop step the snapshot's metadata into the core. The
// state machine is restored only when the core says so (Ready.Snapshot).
func (n *Node) onSnapshot(meta *wire.Message, body io.Reader) error {
	name := n.snapFileName(snapInDir, "from", meta.From)
	f, err := n.fs.Create(name, vfs.WriteCategoryUnspecified)
	defer func(start time.Time) { n.metrics.snapshotReceived(start, err) }(time.Now())
	if err != nil {
		return err
	}
	_, err = io.Copy(f, countingReader{body, &n.metrics.snapRecvBytes})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		n.fs.Remove(name)
		return err
	}
	m := *meta
	m.SnapData = nil
	ok := n.submitEvent(context.Background(), func() {
		if n.snaps.staged == nil {
			n.snaps.staged = map[uint64]string{}
		}
		for idx, old := range n.snaps.staged {
			if len(n.snaps.staged) < maxStagedSnapshots {
				break
			}
			n.fs.Remove(old)
			delete(n.snaps.staged, idx)
		}
		if old, ok := n.snaps.staged[m.Snapshot.Index]; ok {
			n.fs.Remove(old)
		}
		n.snaps.staged[m.Snapshot.Index] = name
		n.step(wire.Message{Type: wire.MsgSnap, From: m.From, To: m.To, Term: m.Term, Group: m.Group, Snapshot: m.Snapshot})
	})
	if !ok {
		n.fs.Remove(name)
		return ErrStopped
	}
	return nil
}

// installSnapshot installs the staged snapshot the core accepted. Every
// prefix of it is recoverable (finishInstall completes it at start-up),
// because the log's marker becomes durable before the state it describes:
//
//  1. the staged file (already synced) is renamed to installFile and the
//     directory synced: the data to finish with is durable;
//  2. wal.Reset makes the log continue after the snapshot, with the
//     membership at its base, in one durable record;
//  3. kv.Restore replaces the state machine (atomic by itself);
//  4. installFile is removed.
//
// A crash before 2 leaves the old log and state (the leader sends the
// snapshot again); between 2 and 4 start-up restores installFile, because
// the state machine is then behind the log's base.
func (n *Node) installSnapshot(s wire.SnapshotMeta) error {
	name, ok := n.snaps.staged[s.Index]
	if !ok {
		return fmt.Errorf("node: core accepted snapshot %d but no data was staged for it", s.Index)
	}
	delete(n.snaps.staged, s.Index)
	if !n.ap.barrier() {
		n.fs.Remove(name)
		return ErrStopped
	}
	info, err := n.readSnapshotInfo(name)
	if err != nil {
		n.fs.Remove(name)
		return fmt.Errorf("node: staged snapshot %d: %w", s.Index, err)
	}
	if info.Index != s.Index || info.Term != s.Term {
		n.fs.Remove(name)
		return fmt.Errorf("node: staged snapshot holds (%d, %d), its metadata says (%d, %d)", info.Index, info.Term, s.Index, s.Term)
	}
	ms, err := decodeMembership(info.Meta)
	if err != nil {
		n.fs.Remove(name)
		return err
	}
	for _, m := range ms.members {
		n.members.setMember(m)
		n.addPeer(m)
	}
	n.members.conf = s.Conf

	install := n.fs.PathJoin(n.cfg.DataDir, installFile)
	if err := n.fs.Rename(name, install); err != nil {
		return fmt.Errorf("node: stage snapshot install: %w", err)
	}
	if err := vfsutil.SyncDir(n.fs, n.cfg.DataDir); err != nil {
		return err
	}
	if err := n.wal.Reset(s.Index, s.Term, encodeMembership(nil, &n.members)); err != nil {
		return err
	}
	if err := n.restoreFrom(install, s.Index); err != nil {
		return err
	}
	n.ap.reloadApplied()
	n.ap.dropForSnapshot(s.Index, s.Term)
	n.log.Info("installed snapshot", "index", s.Index, "term", s.Term)
	return nil
}

// readSnapshotInfo reads the header of a snapshot file.
func (n *Node) readSnapshotInfo(name string) (kv.SnapshotInfo, error) {
	f, err := n.fs.Open(name)
	if err != nil {
		return kv.SnapshotInfo{}, err
	}
	defer f.Close()
	return kv.ReadSnapshotInfo(f)
}

// restoreFrom restores the state machine from the snapshot file install,
// which must hold index, then removes the file.
func (n *Node) restoreFrom(install string, index uint64) error {
	f, err := n.fs.Open(install)
	if err != nil {
		return fmt.Errorf("node: open snapshot install: %w", err)
	}
	_, err = n.kv.Restore(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("node: restore snapshot %d: %w", index, err)
	}
	if got := n.kv.AppliedIndex(); got != index {
		return fmt.Errorf("node: snapshot data is at index %d, the log's base is %d", got, index)
	}
	if err := n.fs.Remove(install); err != nil {
		return fmt.Errorf("node: remove finished snapshot install: %w", err)
	}
	return vfsutil.SyncDir(n.fs, n.cfg.DataDir)
}

// finishInstall repairs, at start-up, a snapshot install that a crash
// interrupted (see installSnapshot). The state machine behind the log's
// base can only come from an interrupted install: compaction never moves
// the base past what the state machine made durable. It then restores the
// pending installFile, which must hold exactly the base. A leftover
// installFile with the state machine already at or past it is removed.
func (n *Node) finishInstall() error {
	install := n.fs.PathJoin(n.cfg.DataDir, installFile)
	_, err := n.fs.Stat(install)
	pending := err == nil
	if err != nil && !oserror.IsNotExist(err) {
		return fmt.Errorf("node: %s: %w", install, err)
	}
	base, applied := n.wal.FirstIndex()-1, n.kv.AppliedIndex()
	if applied >= base {
		if !pending {
			return nil
		}
		n.log.Info("removing a snapshot install the state machine already holds", "applied", applied, "base", base)
		if err := n.fs.Remove(install); err != nil {
			return err
		}
		return vfsutil.SyncDir(n.fs, n.cfg.DataDir)
	}
	if !pending {
		return fmt.Errorf("node: state machine at index %d is behind the log's base %d and no snapshot install is pending: the data directory is damaged", applied, base)
	}
	info, err := n.readSnapshotInfo(install)
	if err != nil {
		return fmt.Errorf("node: pending snapshot install: %w", err)
	}
	if info.Index != base {
		return fmt.Errorf("node: pending snapshot install holds index %d, the log's base is %d", info.Index, base)
	}
	n.log.Warn("finishing a snapshot install that a crash interrupted", "index", base)
	return n.restoreFrom(install, base)
}

// compact moves the log's base up to RetainEntries behind the durable
// applied index `flushed`, recording the membership there in the same
// durable record.
func (n *Node) compact(flushed uint64) {
	if flushed <= n.cfg.RetainEntries {
		return
	}
	c := flushed - n.cfg.RetainEntries
	if c <= n.wal.FirstIndex()-1 {
		return
	}
	ms := n.members.clone()
	ms.conf = n.rn.ConfStateAt(c)
	if err := n.wal.CompactPrefix(c, encodeMembership(nil, &ms)); err != nil {
		n.failFatal(err)
		return
	}
	n.metrics.compactions.Add(1)
	n.log.Debug("compacted log", "index", c)
}
