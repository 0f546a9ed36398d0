package wire

import (
	"bytes"
	"fmt"
)

// sampleMessages returns one fully populated message of every Raft type,
// with only the fields each type encodes set, in a fixed order. Golden
// files and fuzz seeds are generated from them, so changing a value here
// changes the golden bytes.
func sampleMessages() []Message {
	ents := []Entry{
		{Term: 5, Index: 101, Type: EntryNormal, Data: []byte("put k1 v1")},
		{Term: 5, Index: 102, Type: EntryConfChange, Data: AppendConfChange(nil, &ConfChange{Type: ConfAddLearner, NodeID: 4, Context: []byte("10.0.0.4:7000")})},
		{Term: 6, Index: 103, Type: EntryNoop},
	}
	return []Message{
		{Type: MsgApp, Group: 7, From: 1, To: 2, Term: 6, LogTerm: 5, Index: 100, Commit: 99, Entries: ents},
		{Type: MsgAppResp, Group: 7, From: 2, To: 1, Term: 6, Index: 90, Reject: true, RejectHint: 80, HintTerm: 4},
		{Type: MsgHeartbeat, Group: 7, From: 1, To: 3, Term: 6, Commit: 99, Context: []byte("read-17")},
		{Type: MsgHeartbeatResp, Group: 7, From: 3, To: 1, Term: 6, Context: []byte("read-17")},
		{Type: MsgVote, Group: 7, From: 2, To: 3, Term: 7, LogTerm: 6, Index: 103, Context: []byte("transfer")},
		{Type: MsgVoteResp, Group: 7, From: 3, To: 2, Term: 7, Reject: true},
		{Type: MsgPreVote, Group: 7, From: 2, To: 1, Term: 8, LogTerm: 6, Index: 103},
		{Type: MsgPreVoteResp, Group: 7, From: 1, To: 2, Term: 8},
		{Type: MsgSnap, Group: 7, From: 1, To: 4, Term: 6,
			Snapshot:   SnapshotMeta{Index: 1000, Term: 6, Conf: ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}},
			SnapOffset: 65536, SnapData: []byte("snapshot chunk bytes"), SnapDone: true},
		{Type: MsgSnapResp, Group: 7, From: 4, To: 1, Term: 6, Index: 1000, SnapOffset: 65556, Reject: false},
		{Type: MsgTimeoutNow, Group: 7, From: 1, To: 2, Term: 6},
	}
}

func sampleHandshake() Handshake {
	return Handshake{ClusterID: 0xC1A5_7E12, NodeID: 3, Version: ProtocolVersion, Kind: ConnPeer, Features: FeatureS2 | FeatureZstd}
}

func sampleClientRequest() ClientRequest {
	return ClientRequest{ID: 42, Op: OpCAS, Flags: FlagExpectAbsent, Key: []byte("user/17"), Value: []byte("alice"), Expect: []byte("bob")}
}

func sampleClientResponse() ClientResponse {
	return ClientResponse{ID: 42, Status: StatusNotLeader, Value: []byte("old"), LeaderHint: "10.0.0.2:8000", Index: 1234, Err: "not leader"}
}

func sampleConfChange() ConfChange {
	return ConfChange{Type: ConfAddVoter, NodeID: 5, Context: []byte("peer=10.0.0.5:7000 client=10.0.0.5:8000")}
}

// textish returns n bytes of log-line-like text: JSON-ish KV commands with
// structured keys, small counters and a 64-bit random-looking token per
// line. Compressible the way real commands are (S2 gets about 4x on it),
// not the 10x+ of a repeated constant. Deterministic in seed.
func textish(n int, seed int) []byte {
	var b bytes.Buffer
	x := uint64(seed)*0x9E3779B97F4A7C15 + 1
	for i := 0; b.Len() < n; i++ {
		x ^= x << 13 // xorshift64
		x ^= x >> 7
		x ^= x << 17
		fmt.Fprintf(&b, `{"op":"put","key":"user/%08d","field":"profile.name","value":"name-%d-%d","token":"%016x"}`+"\n", seed*1000+i, seed, i%17, x)
	}
	return b.Bytes()[:n]
}

// sampleShardMap is a map of 8 groups led by three nodes, one group with no
// known leader: every branch of the encoding (shared addresses, index 0).
func sampleShardMap() ShardMap {
	a, b, c := "10.0.0.1:8000", "10.0.0.2:8000", "node-3.example:8000"
	return ShardMap{Groups: 8, Leaders: []string{a, b, a, c, "", b, c, a}}
}
