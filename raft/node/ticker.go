package node

import (
	"context"
	"time"
)

// One ticker per host drives every replica's core clock. A time.Ticker per
// replica (what a single-group node had) would wake a thousand goroutines
// twenty times a second even with every group quiesced; the host ticker
// wakes only the replicas that are not quiesced, and a quiesced replica
// accounts for the ticks it missed (RawNode.TickQuiesced, O(1)) before its
// next input, which gives the core exactly the state it would have had if
// it had been ticked all along (raft/doc.go, "Quiescence").

// runTicker is the host's ticker goroutine: each TickInterval it counts a
// tick and signals every replica that is awake. A replica that is busy
// misses the signal (tickc holds one), as a time.Ticker drops ticks: in
// ReadIndex mode a missed tick only delays a timer, and lease mode counts
// ticks by elapsed time anyway (clock.go).
func (n *Node) runTicker() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stopc:
			return
		case <-t.C:
		}
		n.ticks.Add(1)
		n.balanceTokens.Store(balanceTransfersPerTick)
		for _, rep := range n.replicas {
			if rep.quiesced.Load() {
				continue
			}
			select {
			case rep.tickc <- struct{}{}:
			default:
			}
		}
	}
}

// onTick handles one host tick on the loop.
func (rep *replica) onTick() {
	if rep.quiescedLoop {
		// Signalled just before it quiesced: account, don't tick twice.
		rep.beforeInput()
		return
	}
	rep.ticksSeen = rep.host.ticks.Load()
	rep.tick()
	rep.maybeBalance()
}

// beforeInput runs before every input the loop hands the core (a message,
// a proposal, a read, an event): a quiesced core first accounts for the
// ticks it was not given. Cheap when the replica is awake (one branch).
func (rep *replica) beforeInput() {
	if !rep.quiescedLoop {
		return
	}
	now := rep.host.ticks.Load()
	var n uint64
	if rep.cfg.ReadMode == ReadModeLease {
		n = uint64(rep.clock.due(time.Now())) // lease mode counts by elapsed time
	} else if now > rep.ticksSeen {
		n = now - rep.ticksSeen
	}
	rep.ticksSeen = now
	if n > 0 {
		rep.rn.TickQuiesced(n)
	}
}

// noteQuiesced publishes the core's quiescence to the host ticker at the
// end of a loop turn.
func (rep *replica) noteQuiesced() {
	q := rep.rn.Quiesced()
	if q == rep.quiescedLoop {
		return
	}
	rep.quiescedLoop = q
	if q {
		rep.ticksSeen = rep.host.ticks.Load()
		rep.metrics.groupsQuiesced.Add(1)
	} else {
		rep.metrics.groupsQuiesced.Add(-1)
	}
	rep.quiesced.Store(q)
}

// onPeerDown is the transport's PeerDown callback: the connection to peer
// id broke. Every group tells its core (ReportUnreachable), which wakes a
// quiesced leader that has id as a member and a quiesced follower whose
// leader is id: nothing else would, since a quiesced group sends nothing.
// Only with quiescence on, so that a node without it behaves as before.
// The events are queued from a goroutine of their own: the callback runs
// on the transport's writer and must not wait for a thousand loops.
func (n *Node) onPeerDown(id uint64) {
	if n.cfg.QuiesceAfterTicks <= 0 {
		return
	}
	// At most one report per peer in flight: a flapping link calls this
	// on every failed reconnect, and each report visits every replica.
	if _, busy := n.peerDownPending.LoadOrStore(id, struct{}{}); busy {
		return
	}
	go func() {
		defer n.peerDownPending.Delete(id)
		for _, rep := range n.replicas {
			rep := rep
			if !rep.submitEvent(context.Background(), func() { rep.rn.ReportUnreachable(id) }) {
				return // stopping
			}
		}
	}()
}
