package node

import (
	"bytes"
	"context"
	"fmt"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"io"
	"time"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2/vfs"
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
	// maxSnapshotSends bounds concurrent outgoing snapshot transfers of
	// one group.
	maxSnapshotSends = 2
	// maxHostSnapshotSends bounds them over all groups of a host: each
	// holds a checkpoint file and a snapshot connection, and a receiver
	// takes transport.DefaultMaxInboundSnapshots (4) at a time anyway, so
	// a thousand groups catching up one wiped follower go four at a time
	// instead of checkpointing all at once. The excess is reported failed
	// to its core, which asks again later.
	maxHostSnapshotSends = 4
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
func (rep *replica) startSnapshotSend(m wire.Message) {
	if rep.snaps.sending == nil {
		rep.snaps.sending = map[uint64]bool{}
	}
	if rep.snaps.sending[m.To] || len(rep.snaps.sending) >= maxSnapshotSends {
		// One transfer per follower; it reports when done and the core
		// asks again if needed. Refuse the excess so it retries later.
		if !rep.snaps.sending[m.To] {
			rep.rn.ReportSnapshot(m.To, true)
		}
		return
	}
	select {
	case rep.host.snapSends <- struct{}{}:
	default:
		rep.rn.ReportSnapshot(m.To, true) // the host's bound: retried later
		return
	}
	rep.snaps.sending[m.To] = true
	rep.wg.Add(1)
	go func() {
		defer rep.wg.Done()
		defer func() { <-rep.host.snapSends }()
		start := time.Now()
		err := rep.sendSnapshot(m)
		rep.metrics.snapshotSent(start, err)
		if err != nil {
			rep.log.Warn("snapshot send failed", "to", m.To, "err", err)
		}
		rep.submitEvent(context.Background(), func() {
			delete(rep.snaps.sending, m.To)
			rep.rn.ReportSnapshot(m.To, err != nil)
		})
	}()
}

// sendSnapshot checkpoints the state machine into a file and streams it
// behind the runtime's frame (snapframe.go). The state machine reports the
// index and term its checkpoint covers, and memberHist the membership at
// that index, so nothing is looked up in the log, which may have been
// compacted past that index meanwhile.
func (rep *replica) sendSnapshot(m wire.Message) error {
	name := rep.host.snapFileName(snapOutDir, "to", m.To)
	defer rep.fs.Remove(name)
	f, err := rep.fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	info, err := rep.sm.WriteSnapshot(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	blob, err := rep.memberHist.at(info.Index)
	if err != nil {
		return err
	}
	ms, err := decodeMembership(blob)
	if err != nil {
		return err
	}
	if f, err = rep.fs.Open(name); err != nil {
		return err
	}
	defer f.Close()
	hdr := appendSnapFrame(nil, snapFrame{index: info.Index, term: info.Term, membership: blob})
	m.Snapshot = wire.SnapshotMeta{Index: info.Index, Term: info.Term, Conf: ms.conf}
	ctx, cancel := context.WithTimeout(context.Background(), snapshotSendTimeout)
	defer cancel()
	go func() {
		select {
		case <-rep.stopc:
			cancel()
		case <-ctx.Done():
		}
	}()
	rep.log.Info("sending snapshot", "to", m.To, "index", info.Index, "term", info.Term)
	body := io.MultiReader(bytes.NewReader(hdr), f)
	return rep.tr.SendSnapshot(ctx, &m, countingReader{body, &rep.metrics.snapSentBytes})
}

// stageSnapshot stages a snapshot stream the host routed to this group in
// a file, then lets the loop step the snapshot's metadata into the core.
// The state machine is restored only when the core says so
// (Ready.Snapshot).
func (rep *replica) stageSnapshot(meta *wire.Message, body io.Reader) error {
	name := rep.host.snapFileName(snapInDir, "from", meta.From)
	f, err := rep.fs.Create(name, vfs.WriteCategoryUnspecified)
	defer func(start time.Time) { rep.metrics.snapshotReceived(start, err) }(time.Now())
	if err != nil {
		return err
	}
	_, err = io.Copy(f, countingReader{body, &rep.metrics.snapRecvBytes})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		rep.fs.Remove(name)
		return err
	}
	m := *meta
	m.SnapData = nil
	ok := rep.submitEvent(context.Background(), func() {
		if rep.snaps.staged == nil {
			rep.snaps.staged = map[uint64]string{}
		}
		for idx, old := range rep.snaps.staged {
			if len(rep.snaps.staged) < maxStagedSnapshots {
				break
			}
			rep.fs.Remove(old)
			delete(rep.snaps.staged, idx)
		}
		if old, ok := rep.snaps.staged[m.Snapshot.Index]; ok {
			rep.fs.Remove(old)
		}
		rep.snaps.staged[m.Snapshot.Index] = name
		rep.step(wire.Message{Type: wire.MsgSnap, From: m.From, To: m.To, Term: m.Term, Group: m.Group, Snapshot: m.Snapshot})
	})
	if !ok {
		rep.fs.Remove(name)
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
//  3. the state machine's Restore replaces it (atomic by itself);
//  4. installFile is removed.
//
// A crash before 2 leaves the old log and state (the leader sends the
// snapshot again); between 2 and 4 start-up restores installFile, because
// the state machine is then behind the log's base.
func (rep *replica) installSnapshot(s wire.SnapshotMeta) error {
	name, ok := rep.snaps.staged[s.Index]
	if !ok {
		return fmt.Errorf("node: core accepted snapshot %d but no data was staged for it", s.Index)
	}
	delete(rep.snaps.staged, s.Index)
	if !rep.ap.barrier() {
		rep.fs.Remove(name)
		return ErrStopped
	}
	frame, err := rep.readSnapFrame(name)
	if err != nil {
		rep.fs.Remove(name)
		return fmt.Errorf("node: staged snapshot %d: %w", s.Index, err)
	}
	if frame.index != s.Index || frame.term != s.Term {
		rep.fs.Remove(name)
		return fmt.Errorf("node: staged snapshot holds (%d, %d), its metadata says (%d, %d)", frame.index, frame.term, s.Index, s.Term)
	}
	ms, err := decodeMembership(frame.membership)
	if err != nil {
		rep.fs.Remove(name)
		return err
	}
	for _, m := range ms.members {
		rep.members.setMember(m)
		rep.host.addPeer(m)
	}
	rep.members.conf = s.Conf

	install := rep.fs.PathJoin(rep.cfg.DataDir, installFileName(rep.group))
	if err := rep.fs.Rename(name, install); err != nil {
		return fmt.Errorf("node: stage snapshot install: %w", err)
	}
	if err := vfsutil.SyncDir(rep.fs, rep.cfg.DataDir); err != nil {
		return err
	}
	base := encodeMembership(nil, &rep.members)
	if err := rep.wal.Reset(s.Index, s.Term, base); err != nil {
		return err
	}
	if err := rep.restoreFrom(install, s.Index); err != nil {
		return err
	}
	rep.memberHist.reset(s.Index, base)
	rep.ap.reloadApplied()
	rep.ap.dropForSnapshot(s.Index, s.Term)
	rep.log.Info("installed snapshot", "index", s.Index, "term", s.Term)
	return nil
}

// readSnapFrame reads the runtime frame at the start of a snapshot file.
func (rep *replica) readSnapFrame(name string) (snapFrame, error) {
	f, err := rep.fs.Open(name)
	if err != nil {
		return snapFrame{}, err
	}
	defer f.Close()
	return readSnapFrame(f)
}

// restoreFrom restores the state machine from the snapshot file install,
// which must hold index, then removes the file. The frame is read first
// (exactly its bytes), so the state machine reads only its own.
func (rep *replica) restoreFrom(install string, index uint64) error {
	f, err := rep.fs.Open(install)
	if err != nil {
		return fmt.Errorf("node: open snapshot install: %w", err)
	}
	if _, err = readSnapFrame(f); err == nil {
		_, err = rep.sm.Restore(f)
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("node: restore snapshot %d: %w", index, err)
	}
	if got := rep.sm.AppliedIndex(); got != index {
		return fmt.Errorf("node: snapshot data is at index %d, the log's base is %d", got, index)
	}
	if err := rep.fs.Remove(install); err != nil {
		return fmt.Errorf("node: remove finished snapshot install: %w", err)
	}
	return vfsutil.SyncDir(rep.fs, rep.cfg.DataDir)
}

// finishInstall repairs, at start-up, a snapshot install that a crash
// interrupted (see installSnapshot). The state machine behind the log's
// base can only come from an interrupted install: compaction never moves
// the base past what the state machine made durable. It then restores the
// pending installFile, which must hold exactly the base. A leftover
// installFile with the state machine already at or past it is removed.
func (rep *replica) finishInstall() error {
	install := rep.fs.PathJoin(rep.cfg.DataDir, installFileName(rep.group))
	_, err := rep.fs.Stat(install)
	pending := err == nil
	if err != nil && !oserror.IsNotExist(err) {
		return fmt.Errorf("node: %s: %w", install, err)
	}
	base, applied := rep.wal.FirstIndex()-1, rep.sm.AppliedIndex()
	if applied >= base {
		if !pending {
			return nil
		}
		rep.log.Info("removing a snapshot install the state machine already holds", "applied", applied, "base", base)
		if err := rep.fs.Remove(install); err != nil {
			return err
		}
		return vfsutil.SyncDir(rep.fs, rep.cfg.DataDir)
	}
	if !pending {
		return fmt.Errorf("node: state machine at index %d is behind the log's base %d and no snapshot install is pending: the data directory is damaged", applied, base)
	}
	frame, err := rep.readSnapFrame(install)
	if err != nil {
		return fmt.Errorf("node: pending snapshot install: %w", err)
	}
	if frame.index != base {
		return fmt.Errorf("node: pending snapshot install holds index %d, the log's base is %d", frame.index, base)
	}
	rep.log.Warn("finishing a snapshot install that a crash interrupted", "index", base)
	return rep.restoreFrom(install, base)
}

// compact moves the log's base up to RetainEntries behind the durable
// applied index `flushed`, recording the membership there in the same
// durable record.
func (rep *replica) compact(flushed uint64) {
	if flushed <= rep.cfg.RetainEntries {
		return
	}
	c := flushed - rep.cfg.RetainEntries
	if c <= rep.wal.FirstIndex()-1 {
		return
	}
	ms := rep.members.clone()
	ms.conf = rep.rn.ConfStateAt(c)
	if err := rep.wal.CompactPrefix(c, encodeMembership(nil, &ms)); err != nil {
		rep.failFatal(err)
		return
	}
	rep.metrics.compactions.Add(1)
	rep.log.Debug("compacted log", "index", c)
}
