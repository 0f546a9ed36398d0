package node

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// unknownGroupLogInterval bounds how often a message for an unknown group
// is logged: a misconfigured peer sends one per heartbeat per group, which
// would otherwise flood the log; the counter still sees every one.
const unknownGroupLogInterval = 10 * time.Second

// replicaFor returns the replica of group, or nil if this host has none.
// No lock: replicas is written once, before the transport starts.
func (n *Node) replicaFor(group uint64) *replica {
	if group >= uint64(len(n.replicas)) {
		return nil
	}
	return n.replicas[group]
}

// onPeerMessage is the transport's handler: queue the message for its
// group's loop, or drop it (a full inbox, or a group this host does not
// have). Raft tolerates lost messages, so neither stops the node.
func (n *Node) onPeerMessage(m *wire.Message) {
	rep := n.replicaFor(m.Group)
	if rep == nil {
		n.unknownGroup.drop(n, "message", m)
		return
	}
	select {
	case rep.inbox <- *m:
	default:
		n.metrics.inboxDropped.Add(1)
	}
}

// onSnapshot is the transport's snapshot handler: route the stream to its
// group's replica, which stages it. A snapshot for an unknown group is
// refused (the transport closes the stream) and counted.
func (n *Node) onSnapshot(meta *wire.Message, body io.Reader) error {
	rep := n.replicaFor(meta.Group)
	if rep == nil {
		n.unknownGroup.drop(n, "snapshot", meta)
		return fmt.Errorf("node: snapshot for group %d, which this node does not host", meta.Group)
	}
	return rep.stageSnapshot(meta, body)
}

// unknownGroupDrops counts peer traffic for groups this host does not have
// and logs it at most once per unknownGroupLogInterval, with the number
// dropped since the last line.
type unknownGroupDrops struct {
	// count is every message and snapshot dropped (exported on /metrics).
	count atomic.Uint64
	// loggedAt is the monotonic time (monoNanos) of the last log line;
	// sinceLog counts drops not yet reported in one.
	loggedAt atomic.Int64
	sinceLog atomic.Uint64
}

// drop counts one dropped message (what: "message" or "snapshot") and logs
// it unless a line went out less than unknownGroupLogInterval ago.
func (u *unknownGroupDrops) drop(n *Node, what string, m *wire.Message) {
	u.count.Add(1)
	u.sinceLog.Add(1)
	now, last := monoNanos(), u.loggedAt.Load()
	if last != 0 && now-last < int64(unknownGroupLogInterval) {
		return
	}
	if !u.loggedAt.CompareAndSwap(last, now) {
		return // another goroutine is logging this interval
	}
	n.log.Warn("dropping peer "+what+" for a group this node does not host",
		"group", m.Group, "hosted_groups", len(n.replicas), "from", m.From, "type", m.Type,
		"dropped_since_last_log", u.sinceLog.Swap(0))
}
