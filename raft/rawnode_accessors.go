package raft

import "github.com/raftpipe/raftpipe/wire"

// Cheap accessors for the runtime's hot path. Status copies the membership
// and the progress map, which is too costly per proposal batch.

// LastIndex is the index of the last entry in the log (durable or not). After
// a successful Propose(data...) the n proposed entries are the last n.
func (rn *RawNode) LastIndex() uint64 { return rn.r.log.lastIndex() }

// Term is the current term; entries proposed now carry it.
func (rn *RawNode) Term() uint64 { return rn.r.term }

// Lead is the known leader, 0 if none.
func (rn *RawNode) Lead() uint64 { return rn.r.lead }

// IsLeader reports whether this node is the leader.
func (rn *RawNode) IsLeader() bool { return rn.r.role == RoleLeader }

// ConfStateAt is the membership in effect at log index i, for i at or above
// the log's base (the runtime records it when it compacts the log at i).
func (rn *RawNode) ConfStateAt(i uint64) wire.ConfState { return cloneConfState(rn.r.confs.at(i)) }

// Quiesced reports whether the node's timers are stopped
// (Config.QuiesceAfterTicks): a quiesced leader sends no heartbeats and a
// quiesced follower does not campaign, so Tick only counts and HasReady
// stays false until an input arrives. A runtime with many groups may skip
// ticking quiesced groups if it accounts for the skipped ticks with
// TickQuiesced before their next input.
func (rn *RawNode) Quiesced() bool { return rn.r.quiesced }
