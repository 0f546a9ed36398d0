package wire

// MsgType identifies what a frame's payload holds.
//
// Part of the format: a value, once assigned, never changes meaning. New
// message types take new values.
type MsgType uint8

// Raft peer messages carry one Message; client and handshake frames carry
// their own structs. Values are part of the wire format.
const (
	// MsgHandshake opens every connection: cluster, node, version, features.
	MsgHandshake MsgType = 1
	// MsgApp is an AppendEntries request: a batch of entries after (Index, LogTerm).
	MsgApp MsgType = 2
	// MsgAppResp acknowledges durable entries up to Index, or rejects with a hint.
	MsgAppResp MsgType = 3
	// MsgHeartbeat is a compact AppendEntries with no entries: term, commit, context.
	MsgHeartbeat MsgType = 4
	// MsgHeartbeatResp answers a heartbeat; it echoes Context for ReadIndex.
	MsgHeartbeatResp MsgType = 5
	// MsgVote is a RequestVote request.
	MsgVote MsgType = 6
	// MsgVoteResp grants or rejects a vote.
	MsgVoteResp MsgType = 7
	// MsgPreVote asks whether a vote would be granted, without changing terms.
	MsgPreVote MsgType = 8
	// MsgPreVoteResp answers a PreVote.
	MsgPreVoteResp MsgType = 9
	// MsgSnap is one InstallSnapshot chunk (or, inside the core, the whole
	// snapshot's metadata with no data).
	MsgSnap MsgType = 10
	// MsgSnapResp acknowledges a snapshot chunk or reports a failed transfer.
	MsgSnapResp MsgType = 11
	// MsgTimeoutNow tells the leadership-transfer target to campaign at once.
	MsgTimeoutNow MsgType = 12

	// MsgClientRequest is one pipelined client operation.
	MsgClientRequest MsgType = 32
	// MsgClientResponse answers the client request with the same ID.
	MsgClientResponse MsgType = 33
)

// EntryType says how the state machine interprets an entry's Data.
// Part of the format.
type EntryType uint8

const (
	// EntryNormal carries an application command (for raftpipe, a KV command).
	EntryNormal EntryType = 0
	// EntryConfChange carries an encoded ConfChange.
	EntryConfChange EntryType = 1
	// EntryNoop is the empty entry a new leader appends to commit its term.
	EntryNoop EntryType = 2
)

// Entry is one Raft log entry.
//
// After decoding, Data aliases the frame's payload buffer; see the package
// doc for who owns that buffer and for how long.
type Entry struct {
	// Term is the leader term in which the entry was created.
	Term uint64
	// Index is the entry's position in the log, starting at 1.
	Index uint64
	// Type selects how Data is interpreted.
	Type EntryType
	// Data is the opaque command (or encoded ConfChange).
	Data []byte
}

// HardState is the state Raft must make durable before it answers a vote or
// acknowledges entries. It is not sent on the wire; it lives here because
// the core produces it and the WAL stores it, and both import wire.
type HardState struct {
	// Term is the latest term this node has seen.
	Term uint64
	// Vote is the node voted for in Term, or 0.
	Vote uint64
	// Commit is the highest index known committed (persisted lazily).
	Commit uint64
}

// IsEmpty reports whether h is the zero HardState.
func (h HardState) IsEmpty() bool { return h == HardState{} }

// ConfState is the cluster membership as of a snapshot or an applied
// configuration change.
type ConfState struct {
	// Voters count towards quorum.
	Voters []uint64
	// Learners receive the log but neither vote nor count towards commit.
	Learners []uint64
}

// SnapshotMeta identifies a snapshot: the last index and term it covers and
// the membership at that index.
type SnapshotMeta struct {
	// Index is the last log index included in the snapshot.
	Index uint64
	// Term is the term of the entry at Index.
	Term uint64
	// Conf is the membership as of Index.
	Conf ConfState
}

// ConfChangeType is the kind of single-server membership change.
// Part of the format.
type ConfChangeType uint8

const (
	// ConfAddVoter adds a voter, or promotes a learner to voter.
	ConfAddVoter ConfChangeType = 1
	// ConfAddLearner adds a non-voting member that receives the log.
	ConfAddLearner ConfChangeType = 2
	// ConfRemove removes a voter or learner.
	ConfRemove ConfChangeType = 3
)

// ConfChange is the payload of an EntryConfChange entry.
type ConfChange struct {
	// Type is the kind of change.
	Type ConfChangeType
	// NodeID is the member being changed.
	NodeID uint64
	// Context is opaque to the core; the node runtime stores the member's
	// peer and client addresses here so that every node learns them.
	Context []byte
}

// Message is one Raft peer message. Which fields are meaningful depends on
// Type; unused fields are zero and are not encoded. One struct for all types
// keeps the core's step functions and the transport simple (as in etcd's
// raftpb.Message); the encoder writes only the fields a type uses.
type Message struct {
	// Type selects the layout.
	Type MsgType
	// Group is the Raft group the message belongs to; 0 for the single group.
	// Carried now so that many groups can later share one host link.
	Group uint64
	// From is the sender's node ID.
	From uint64
	// To is the recipient's node ID.
	To uint64
	// Term is the sender's current term (for PreVote: the term it would
	// campaign in).
	Term uint64
	// LogTerm is, for MsgApp, the term of the entry at Index; for
	// MsgVote/MsgPreVote, the candidate's last log term.
	LogTerm uint64
	// Index is, for MsgApp, the index just before Entries; for
	// MsgVote/MsgPreVote, the candidate's last log index; for MsgAppResp, the
	// follower's durable match index (success) or the rejected index.
	Index uint64
	// Commit is the leader's commit index (MsgApp, MsgHeartbeat), bounded by
	// the recipient's match index for heartbeats.
	Commit uint64
	// Entries is the batch carried by MsgApp.
	Entries []Entry
	// Reject is set on a negative MsgAppResp, MsgVoteResp or MsgPreVoteResp.
	Reject bool
	// RejectHint is, on a rejected MsgAppResp, the first index of the
	// conflicting term (or the follower's last index + 1 if its log is short).
	RejectHint uint64
	// HintTerm is, on a rejected MsgAppResp, the follower's term at
	// RejectHint's conflict, so the leader backs up a term at a time.
	HintTerm uint64
	// Context is opaque bytes echoed back: the ReadIndex request context on
	// heartbeats, and a leadership-transfer marker on votes.
	Context []byte
	// Snapshot is the snapshot's metadata (MsgSnap).
	Snapshot SnapshotMeta
	// SnapOffset is the byte offset of SnapData within the snapshot stream.
	SnapOffset uint64
	// SnapData is one chunk of the snapshot stream (MsgSnap).
	SnapData []byte
	// SnapDone marks the last chunk of a snapshot stream (MsgSnap).
	SnapDone bool
}

// Handshake is the first frame on every connection, in both directions.
type Handshake struct {
	// ClusterID must match on both sides or the connection is refused.
	ClusterID uint64
	// NodeID is the sender's ID (0 for a client).
	NodeID uint64
	// Version is the sender's protocol version; a mismatch is refused.
	Version uint8
	// Kind says what the connection carries (peer messages, snapshots, client).
	Kind ConnKind
	// Features is the set of optional features the sender supports; each side
	// uses only what both offered.
	Features Features
}

// ConnKind is the purpose of a connection. Part of the format.
type ConnKind uint8

const (
	// ConnPeer carries Raft messages between nodes.
	ConnPeer ConnKind = 1
	// ConnSnapshot carries InstallSnapshot chunks on their own connection so
	// that a large transfer never delays heartbeats.
	ConnSnapshot ConnKind = 2
	// ConnClient carries client requests and responses.
	ConnClient ConnKind = 3
)

// Features is a bit set of optional protocol features. Part of the format.
type Features uint32

const (
	// FeatureS2 means the sender can decode S2-compressed payloads.
	FeatureS2 Features = 1 << 0
	// FeatureZstd means the sender can decode zstd-compressed payloads.
	FeatureZstd Features = 1 << 1
)

// Op is a client operation. Part of the format.
type Op uint8

const (
	// OpPut sets Key to Value.
	OpPut Op = 1
	// OpGet reads Key (linearizable unless FlagStale is set).
	OpGet Op = 2
	// OpDelete removes Key.
	OpDelete Op = 3
	// OpCAS sets Key to Value if its current value equals Expect (or, with
	// FlagExpectAbsent, if it does not exist).
	OpCAS Op = 4
	// OpNoop is a replicated write that changes nothing (for benchmarks).
	// Its Key, if any, only chooses the group (see GroupOf) and is not
	// stored; without one it goes to group 0.
	OpNoop Op = 5
	// OpShardMap asks the node for the cluster's shard map. It carries no
	// key, flags or value, is answered by any node from what that node
	// knows (no consensus round), and is never replicated. The answer is
	// StatusOK with Value = the map encoded by AppendShardMap. A node that
	// predates it answers StatusBadRequest, which a client reads as "one
	// group".
	OpShardMap Op = 6
)

// ReqFlags modify a client request. Part of the format.
type ReqFlags uint8

const (
	// FlagStale lets a get be served from the local state machine without
	// a ReadIndex round; it may return stale data.
	FlagStale ReqFlags = 1 << 0
	// FlagExpectAbsent makes a CAS succeed only when the key does not exist.
	FlagExpectAbsent ReqFlags = 1 << 1
)

// ClientRequest is one client operation. Many may be in flight on one
// connection; responses are matched by ID.
type ClientRequest struct {
	// ID is chosen by the client, unique among its in-flight requests.
	ID uint64
	// Op is the operation.
	Op Op
	// Flags modify the operation.
	Flags ReqFlags
	// Key is the key operated on. It also routes the request: the node
	// hands it to group GroupOf(Key, groups). Empty for OpShardMap, and
	// optional for OpNoop.
	Key []byte
	// Value is the new value (OpPut, OpCAS).
	Value []byte
	// Expect is the value a CAS compares against.
	Expect []byte
}

// Status is the outcome of a client request. Part of the format.
type Status uint8

const (
	// StatusOK means the operation was applied (or the read succeeded).
	StatusOK Status = 0
	// StatusNotFound means a get found no such key.
	StatusNotFound Status = 1
	// StatusNotLeader means this node is not the leader of the request's
	// group (the group its Key maps to); LeaderHint names that group's
	// leader's client address if known. The request was not applied.
	StatusNotLeader Status = 2
	// StatusBusy means the node shed load; the request was not applied.
	StatusBusy Status = 3
	// StatusCASFailed means a CAS found a different current value (returned
	// in Value).
	StatusCASFailed Status = 4
	// StatusBadRequest means the request was malformed or over a limit.
	StatusBadRequest Status = 5
	// StatusUnknown means the outcome is unknown (for example, leadership was
	// lost after the write was proposed); the write may or may not apply.
	StatusUnknown Status = 6
	// StatusError is an internal error; Err says what.
	StatusError Status = 7
)

// ClientResponse answers the ClientRequest with the same ID.
type ClientResponse struct {
	// ID matches the request.
	ID uint64
	// Status is the outcome.
	Status Status
	// Value is the value read (OpGet), the current value on
	// StatusCASFailed, or the encoded ShardMap (OpShardMap).
	Value []byte
	// LeaderHint is, on StatusNotLeader, the client address of the leader
	// of the request's group, if known.
	LeaderHint string
	// Index is the log index at which a write applied, or the read index.
	Index uint64
	// Err describes StatusError and StatusBadRequest.
	Err string
}

// ShardMap is how keys are spread over Raft groups, as one node knows it:
// the answer to OpShardMap. Keys map to groups by GroupOf(key, Groups);
// the group count is fixed by the cluster's bootstrap configuration, while
// the leaders change with elections, so a client caches Groups and treats
// Leaders as hints that StatusNotLeader answers correct.
type ShardMap struct {
	// Groups is the number of groups, 1 to MaxShardGroups.
	Groups uint32
	// Leaders has Groups entries: Leaders[g] is the client address of group
	// g's leader as the answering node knows it, or "" if it does not know.
	Leaders []string
}
