package node

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// Snapshot staging directories under DataDir; both are emptied at start-up.
const (
	// snapInDir holds snapshots received from a leader until the core
	// accepts them.
	snapInDir = "snap-in"
	// snapOutDir holds snapshots being sent to followers.
	snapOutDir = "snap-out"
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

// sendSnapshot checkpoints the state machine into a file and streams it.
func (n *Node) sendSnapshot(m wire.Message) error {
	f, err := os.CreateTemp(filepath.Join(n.cfg.DataDir, snapOutDir), fmt.Sprintf("to-%d-*", m.To))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	info, err := n.kv.WriteSnapshot(f)
	if err != nil {
		return err
	}
	index, meta := info.Index, info.Meta
	ms, err := decodeMembership(meta)
	if err != nil {
		return err
	}
	term, err := n.wal.Term(index)
	if err != nil {
		return fmt.Errorf("term of snapshot index %d: %w", index, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	m.Snapshot = wire.SnapshotMeta{Index: index, Term: term, Conf: ms.conf}
	ctx, cancel := context.WithTimeout(context.Background(), snapshotSendTimeout)
	defer cancel()
	go func() {
		select {
		case <-n.stopc:
			cancel()
		case <-ctx.Done():
		}
	}()
	n.log.Info("sending snapshot", "to", m.To, "index", index)
	return n.tr.SendSnapshot(ctx, &m, countingReader{f, &n.metrics.snapSentBytes})
}

// onSnapshot is the transport's snapshot handler: stage the stream in a
// file, then let the loop step the snapshot's metadata into the core. The
// state machine is restored only when the core says so (Ready.Snapshot).
func (n *Node) onSnapshot(meta *wire.Message, body io.Reader) error {
	dir := filepath.Join(n.cfg.DataDir, snapInDir)
	f, err := os.CreateTemp(dir, fmt.Sprintf("from-%d-*", meta.From))
	defer func(start time.Time) { n.metrics.snapshotReceived(start, err) }(time.Now())
	if err != nil {
		return err
	}
	name := f.Name()
	_, err = io.Copy(f, countingReader{body, &n.metrics.snapRecvBytes})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
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
			os.Remove(old)
			delete(n.snaps.staged, idx)
		}
		if old, ok := n.snaps.staged[m.Snapshot.Index]; ok {
			os.Remove(old)
		}
		n.snaps.staged[m.Snapshot.Index] = name
		n.step(wire.Message{Type: wire.MsgSnap, From: m.From, To: m.To, Term: m.Term, Group: m.Group, Snapshot: m.Snapshot})
	})
	if !ok {
		os.Remove(name)
		return ErrStopped
	}
	return nil
}

// installSnapshot restores the state machine from the staged snapshot the
// core accepted, then re-bases the log on it. Order matters for crash
// safety: state machine first (atomic in kv.Restore), then the conf point,
// then the WAL (alignLogBase repeats the last step after a crash).
func (n *Node) installSnapshot(s wire.SnapshotMeta) error {
	name, ok := n.snaps.staged[s.Index]
	if !ok {
		return fmt.Errorf("node: core accepted snapshot %d but no data was staged for it", s.Index)
	}
	delete(n.snaps.staged, s.Index)
	defer os.Remove(name)
	if !n.ap.barrier() {
		return ErrStopped
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	_, err = n.kv.Restore(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("node: restore snapshot %d: %w", s.Index, err)
	}
	if got := n.kv.AppliedIndex(); got != s.Index {
		return fmt.Errorf("node: snapshot data is at index %d, metadata says %d", got, s.Index)
	}
	ms, err := decodeMembership(n.kv.Meta())
	if err != nil {
		return err
	}
	for _, m := range ms.members {
		n.members.setMember(m)
		n.addPeer(m)
	}
	n.members.conf = s.Conf
	cp := confPoint{Index: s.Index, Term: s.Term, Members: n.members.clone()}
	if err := writeConfPoint(n.cfg.DataDir, &cp); err != nil {
		return err
	}
	n.store.setPoint(cp)
	if err := n.wal.Reset(s.Index, s.Term, nil); err != nil {
		return err
	}
	n.ap.reloadApplied()
	n.ap.dropForSnapshot(s.Index, s.Term)
	n.log.Info("installed snapshot", "index", s.Index, "term", s.Term)
	return nil
}

// compact moves the log's base up to RetainEntries behind the durable
// applied index `flushed`, recording the membership there first.
func (n *Node) compact(flushed uint64) {
	if flushed <= n.cfg.RetainEntries {
		return
	}
	c := flushed - n.cfg.RetainEntries
	if c <= n.wal.FirstIndex()-1 {
		return
	}
	term, err := n.wal.Term(c)
	if err != nil {
		n.log.Warn("compaction skipped", "index", c, "err", err)
		return
	}
	ms := n.members.clone()
	ms.conf = n.rn.ConfStateAt(c)
	cp := confPoint{Index: c, Term: term, Members: ms}
	if err := writeConfPoint(n.cfg.DataDir, &cp); err != nil {
		n.failFatal(err)
		return
	}
	n.store.setPoint(cp)
	if err := n.wal.CompactPrefix(c, nil); err != nil {
		n.failFatal(err)
		return
	}
	n.metrics.compactions.Add(1)
	n.log.Debug("compacted log", "index", c)
}
