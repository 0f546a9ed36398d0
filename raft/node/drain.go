package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// ErrRemoved is Err's value once the node stopped because it was removed
// from the cluster: it applied the configuration change removing it, or a
// member that applied it told it so (a removed node is not sent the log
// any more, so usually it learns the second way). raftnode run exits with
// status 3 on it.
var ErrRemoved = errors.New("node: removed from the cluster")

// removalNoticeContext marks the runtime-made message that tells a removed
// node about its removal (MsgHeartbeat with Term 0, which a core that
// gets it anyway ignores).
var removalNoticeContext = []byte("raftpipe/removed")

// removedPeerGrace is how long a member keeps a removed node's peer link
// after applying its removal, answering each of its messages with a
// removal notice, so that a removed node that was briefly away still
// learns it. A node that stays away longer keeps its stale membership and
// campaigns in vain (PreVote and CheckQuorum keep it from disturbing
// anyone) until it is stopped by hand.
const removedPeerGrace = 30 * time.Second

// drainPollInterval is how often Drain checks its conditions.
const drainPollInterval = 5 * time.Millisecond

// Drain prepares a planned stop, before Stop, bounded by ctx:
//
//  1. Stops taking new work: the client port accepts no new connections;
//     new requests (Submit, Do) are answered at once with StatusBusy while
//     this node leads and StatusNotLeader (with the leader's address) once
//     it does not, both safe to retry elsewhere.
//  2. Waits until every write and linearizable read accepted before it is
//     answered: writes with their result once applied (or the definite
//     refusal the node would give anyway).
//  3. If this node leads, hands leadership to the most up-to-date voting
//     follower and waits until it has.
//  4. Lets each client connection write out every answer, then closes it.
//
// Requests still unanswered when ctx ends are left to Stop (writes then
// get StatusUnknown). Drain returns ctx's error wrapped with the step that
// did not finish, nil if all did; the node keeps running either way.
func (n *Node) Drain(ctx context.Context) error {
	n.draining.Store(true)
	if n.srv != nil {
		n.srv.stopAccepting()
	}
	var errs []error
	inFlight := func() (writes, reads int64) {
		for _, rep := range n.replicas {
			writes, reads = writes+rep.ap.pending.Load(), reads+rep.readsPending.Load()
		}
		return writes, reads
	}
	if err := n.waitDrain(ctx, func() bool { w, r := inFlight(); return w == 0 && r == 0 }); err != nil {
		w, r := inFlight()
		errs = append(errs, fmt.Errorf("node: drain: %d writes and %d reads still in flight: %w", w, r, err))
	}
	if err := n.handOff(ctx); err != nil {
		errs = append(errs, err)
	}
	if n.srv != nil {
		if err := n.srv.flushAndClose(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node: drain: client answers not all written: %w", err))
		}
	}
	n.log.Info("drained", "leader", n.Leader(), "err", errors.Join(errs...))
	return errors.Join(errs...)
}

// waitDrain polls cond until it holds, ctx ends or the node stops.
func (n *Node) waitDrain(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(drainPollInterval)
	defer t.Stop()
	for !cond() {
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.r0.loopDone:
			return ErrStopped
		}
	}
	return nil
}

// handOff hands off every group this node leads, all at once (each
// waits up to an election timeout per attempt, so one after the other
// would take minutes with many groups).
func (n *Node) handOff(ctx context.Context) error {
	errs := make([]error, len(n.replicas))
	var wg sync.WaitGroup
	for g, rep := range n.replicas {
		if !rep.isLeader.Load() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[g] = rep.handOff(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// handOff transfers leadership of the group to the voting follower with
// the highest match index, if this replica leads, and waits until it no
// longer leads.
func (rep *replica) handOff(ctx context.Context) error {
	n := rep.host
	if !rep.isLeader.Load() {
		return nil
	}
	st, err := rep.status(ctx)
	if err != nil {
		return fmt.Errorf("node: drain: group %d: hand-off skipped: %w", rep.group, err)
	}
	var to, best uint64
	for id, f := range st.Followers {
		if !f.Learner && (to == 0 || f.Match > best || (f.Match == best && id < to)) {
			to, best = id, f.Match
		}
	}
	if to == 0 {
		return nil // no other voter: nobody to hand off to
	}
	for rep.isLeader.Load() {
		// A transfer aborts after an election timeout; ask again until ctx ends.
		if err := rep.transferLeadership(ctx, to); err != nil && rep.isLeader.Load() {
			return fmt.Errorf("node: drain: group %d: hand-off to %d: %w", rep.group, to, err)
		}
		wait := n.cfg.TickInterval * time.Duration(n.cfg.ElectionTicks)
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := n.waitDrain(wctx, func() bool { return !rep.isLeader.Load() })
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("node: drain: group %d: hand-off to %d did not complete: %w", rep.group, to, ctx.Err())
		}
		if errors.Is(err, ErrStopped) {
			return err
		}
	}
	if rep.group == 0 {
		n.log.Info("handed leadership off", "to", to)
	}
	return nil
}

// refuseDraining answers a request that arrives while draining.
func (rep *replica) refuseDraining(id uint64, cb func(*wire.ClientResponse)) {
	if rep.isLeader.Load() {
		rep.metrics.busy.Add(1)
		cb(&wire.ClientResponse{ID: id, Status: wire.StatusBusy, Err: "node is draining"})
		return
	}
	cb(&wire.ClientResponse{ID: id, Status: wire.StatusNotLeader, LeaderHint: rep.leaderHint()})
}

// onRemovedSelf stops the node once it knows it is no longer a member.
// Runs on the loop. With one group per host a removed member has nothing
// left to serve, so the whole host stops.
func (rep *replica) onRemovedSelf(why string, args ...any) {
	rep.log.Warn("removed from the cluster, stopping: "+why, args...)
	rep.host.stopWith(ErrRemoved)
}

// stopAfterApplied stops the node once every apply task queued so far
// (among them the batch holding the change that removes this node) has
// been applied and has answered its writers, so that a leader that
// removed itself answers the RemoveMember call first. Runs on the loop,
// right after that batch is queued: a barrier task queued behind it closes
// when it is done. The wait runs on its own goroutine, which ends with the
// node (Stop waits for it), and hands the stop to the loop without ever
// dropping it.
func (rep *replica) stopAfterApplied(index uint64) {
	done := make(chan struct{})
	rep.ap.enqueue(applyTask{barrier: done})
	rep.wg.Add(1) // the loop is in wg, so Stop's Wait has not returned
	go func() {
		defer rep.wg.Done()
		select {
		case <-done:
		case <-rep.stopc:
			return
		}
		rep.submitEvent(context.Background(), func() {
			rep.onRemovedSelf("applied the configuration change removing this node", "index", index)
		})
	}()
}

// onRemovedPeer runs (on the loop) when this node applies the removal of
// another node: tell it, and drop its link after removedPeerGrace.
func (rep *replica) onRemovedPeer(id uint64) {
	rep.removedPeers[id] = struct{}{}
	rep.sendRemovalNotice(id)
	time.AfterFunc(removedPeerGrace, func() { rep.tr.RemovePeer(id) })
}

// sendRemovalNotice tells node id that this node applied its removal.
func (rep *replica) sendRemovalNotice(id uint64) {
	rep.tr.Send(&wire.Message{Type: wire.MsgHeartbeat, Group: rep.group, To: id, From: rep.cfg.ID, Context: removalNoticeContext})
}

// stepMembership handles, before the core, messages that concern
// membership rather than the protocol; it reports whether m was consumed.
func (rep *replica) stepMembership(m *wire.Message) bool {
	if _, gone := rep.removedPeers[m.From]; gone {
		rep.sendRemovalNotice(m.From)
		return true
	}
	if m.Type == wire.MsgHeartbeat && m.Term == 0 && string(m.Context) == string(removalNoticeContext) {
		rep.onRemovedSelf("a member applied the configuration change removing this node", "told_by", m.From)
		return true
	}
	return false
}
