package client

import (
	"bytes"
	"crypto/tls"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// fakeServer is a loopback stand-in for a node's client port: it speaks the
// handshake and answers requests from an in-memory map. Knobs make it
// misbehave in the ways the client must survive.
//
// Alone it is a node from before shard maps: one group, and OpShardMap is
// an unknown op. Joined to a fakeShards (newFakeCluster) it is one of
// several nodes serving G groups: it answers OpShardMap, and a keyed
// request for a group it does not lead gets StatusNotLeader with that
// group's leader as the hint.
type fakeServer struct {
	t    testing.TB
	ln   net.Listener
	addr string
	// clusterID is what the server puts in its handshake and expects.
	clusterID uint64
	// tls, if set before the first connection, wraps accepted sockets.
	tls *tls.Config
	// wg counts the accept loop and per-connection goroutines.
	wg sync.WaitGroup
	// received counts requests read, including ones never answered, but
	// not OpShardMap requests: those are answered before every knob below
	// and counted in shardMapReqs, so the single-group tests count exactly
	// the requests they make.
	received atomic.Int64
	// shardMapReqs counts OpShardMap requests.
	shardMapReqs atomic.Int64
	// holdShardMap makes the server never answer OpShardMap, like a node
	// that hangs.
	holdShardMap atomic.Bool
	// notLeaderSent counts StatusNotLeader answers given for groups this
	// node does not lead (shards only).
	notLeaderSent atomic.Int64
	// shards, if set, makes this node one of a multi-group cluster. Set
	// before the first connection.
	shards *fakeShards
	// dropNext: while positive, each request is applied (writes) and then
	// the connection is closed without an answer; decremented per drop.
	dropNext atomic.Int64
	// dropEvery: when positive, every dropEvery-th request received is
	// applied and then its connection is closed without an answer.
	dropEvery atomic.Int64
	// busyNext: while positive, each request is answered StatusBusy.
	busyNext atomic.Int64
	// discard makes the server answer every request StatusOK without
	// touching the map, so it allocates nothing per request (for the
	// client's zero-allocation benchmark).
	discard atomic.Bool

	mu struct {
		sync.Mutex
		// conns are the open server-side sockets, closed by close.
		conns map[net.Conn]struct{}
		// data is the key-value state.
		data map[string][]byte
		// index is the last "applied" log index.
		index uint64
		// notLeader makes the server refuse non-stale requests with
		// StatusNotLeader and hint.
		notLeader bool
		// hint is the LeaderHint sent with StatusNotLeader.
		hint string
		// reorder, when > 1, makes each connection answer in groups of
		// reorder requests, each group in reverse order.
		reorder int
		// hold makes requests wait unanswered until release.
		hold bool
		// held are the requests waiting for release, with their answer
		// functions.
		held []func()
		// maxGroupSeen is the largest reversed group answered, to prove
		// requests were in flight together.
		maxGroupSeen int
	}
}

func newFakeServer(t testing.TB, clusterID uint64) *fakeServer {
	t.Helper()
	return newFakeServerTLS(t, clusterID, nil)
}

func newFakeServerTLS(t testing.TB, clusterID uint64, tcfg *tls.Config) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, addr: ln.Addr().String(), clusterID: clusterID, tls: tcfg}
	s.mu.conns = make(map[net.Conn]struct{})
	s.mu.data = make(map[string][]byte)
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) setNotLeader(on bool, hint string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.notLeader, s.mu.hint = on, hint
}

func (s *fakeServer) setReorder(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.reorder = n
}

func (s *fakeServer) setHold(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.hold = on
}

// release answers every held request (on connections still open).
func (s *fakeServer) release() {
	s.mu.Lock()
	held := s.mu.held
	s.mu.held = nil
	s.mu.hold = false
	s.mu.Unlock()
	for _, f := range held {
		f()
	}
}

func (s *fakeServer) value(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.mu.data[key]
	return v, ok
}

func (s *fakeServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.mu.conns {
		_ = c.Close()
	}
	s.mu.held = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// openConns is the number of server-side connections still open.
func (s *fakeServer) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.conns)
}

func (s *fakeServer) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		if s.tls != nil {
			nc = tls.Server(nc, s.tls)
		}
		s.mu.Lock()
		s.mu.conns[nc] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(nc)
	}
}

// srvConn is the server side of one connection: a reader (serve) and a
// writer goroutine that sends batched responses.
type srvConn struct {
	// nc is the server side of the socket.
	nc net.Conn
	// kick wakes the writer when out becomes non-empty.
	kick chan struct{}
	// mu guards the fields in it.
	mu struct {
		sync.Mutex
		// out holds encoded responses not yet written.
		out []byte
		// closed is set when the connection ends; late (held) answers are
		// then dropped.
		closed bool
	}
}

func (sc *srvConn) send(resp *wire.ClientResponse) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.mu.closed {
		return
	}
	wasEmpty := len(sc.mu.out) == 0
	out, err := wire.AppendClientResponse(sc.mu.out, resp, nil)
	if err != nil {
		panic(err)
	}
	sc.mu.out = out
	if wasEmpty {
		select {
		case sc.kick <- struct{}{}:
		default:
		}
	}
}

func (sc *srvConn) writeLoop(done <-chan struct{}) {
	var spare []byte
	for {
		select {
		case <-sc.kick:
		case <-done:
			return
		}
		runtime.Gosched() // let other answers queue up: bigger writes
		sc.mu.Lock()
		buf := sc.mu.out
		sc.mu.out = spare[:0]
		sc.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		if _, err := sc.nc.Write(buf); err != nil {
			return
		}
		spare = buf
	}
}

func (s *fakeServer) serve(nc net.Conn) {
	defer s.wg.Done()
	defer func() {
		_ = nc.Close()
		s.mu.Lock()
		delete(s.mu.conns, nc)
		s.mu.Unlock()
	}()
	r := wire.NewReader(nc, wire.DefaultOptions())
	f, err := r.Next(nil)
	if err != nil || f.Type != wire.MsgHandshake {
		return
	}
	var hs wire.Handshake
	if wire.DecodeHandshake(f.Payload, &hs) != nil || hs.ClusterID != s.clusterID ||
		hs.Version != wire.ProtocolVersion || hs.Kind != wire.ConnClient {
		return
	}
	my := wire.Handshake{ClusterID: s.clusterID, NodeID: 1, Version: wire.ProtocolVersion, Kind: wire.ConnClient, Features: wire.SupportedFeatures()}
	if _, err := nc.Write(wire.AppendHandshake(nil, &my)); err != nil {
		return
	}

	sc := &srvConn{nc: nc, kick: make(chan struct{}, 1)}
	done := make(chan struct{})
	writerDone := make(chan struct{})
	go func() { sc.writeLoop(done); close(writerDone) }()
	defer func() {
		sc.mu.Lock()
		sc.mu.closed = true
		sc.mu.Unlock()
		close(done)
		<-writerDone
	}()

	var group []wire.ClientResponse
	buf := make([]byte, 4096)
	for {
		f, err := r.Next(buf)
		if err != nil || f.Type != wire.MsgClientRequest {
			return
		}
		var req wire.ClientRequest
		if err := wire.DecodeClientRequest(f.Payload, &req); err != nil {
			return
		}
		if req.Op == wire.OpShardMap {
			s.shardMapReqs.Add(1)
			if !s.holdShardMap.Load() {
				sc.send(s.shardMapAnswer(req.ID))
			}
			continue
		}
		nrecv := s.received.Add(1)
		if every := s.dropEvery.Load(); every > 0 && nrecv%every == 0 {
			s.apply(&req)
			return
		}
		if s.busyNext.Add(-1) >= 0 {
			sc.send(&wire.ClientResponse{ID: req.ID, Status: wire.StatusBusy})
			continue
		}
		s.busyNext.Store(0) // keep it from going further negative
		if s.dropNext.Add(-1) >= 0 {
			s.apply(&req)
			return
		}
		s.dropNext.Store(0)

		if s.discard.Load() {
			sc.send(&wire.ClientResponse{ID: req.ID, Status: wire.StatusOK})
			continue
		}
		s.mu.Lock()
		hold := s.mu.hold
		reorder := s.mu.reorder
		s.mu.Unlock()
		if hold {
			// Copy: req aliases buf, which the next frame overwrites.
			req := cloneRequest(&req)
			s.mu.Lock()
			s.mu.held = append(s.mu.held, func() {
				resp := s.apply(req)
				sc.send(&resp)
			})
			s.mu.Unlock()
			continue
		}
		resp := s.apply(&req)
		resp.Value = bytes.Clone(resp.Value)
		if reorder <= 1 {
			sc.send(&resp)
			continue
		}
		group = append(group, resp)
		if len(group) == reorder {
			for i := len(group) - 1; i >= 0; i-- {
				sc.send(&group[i])
			}
			s.mu.Lock()
			s.mu.maxGroupSeen = max(s.mu.maxGroupSeen, len(group))
			s.mu.Unlock()
			group = group[:0]
		}
	}
}

func cloneRequest(r *wire.ClientRequest) *wire.ClientRequest {
	c := *r
	c.Key = bytes.Clone(r.Key)
	c.Value = bytes.Clone(r.Value)
	c.Expect = bytes.Clone(r.Expect)
	return &c
}

// apply executes req against the map, as a leader would after commit.
func (s *fakeServer) apply(req *wire.ClientRequest) wire.ClientResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := wire.ClientResponse{ID: req.ID}
	stale := req.Op == wire.OpGet && req.Flags&wire.FlagStale != 0
	if s.mu.notLeader && !stale {
		resp.Status = wire.StatusNotLeader
		resp.LeaderHint = s.mu.hint
		return resp
	}
	if s.shards == nil && req.Op == wire.OpNoop && len(req.Key) > 0 {
		// As raft/kv does: a single-group node refuses a no-op with a key.
		resp.Status = wire.StatusBadRequest
		resp.Err = "noop with a key"
		return resp
	}
	if s.shards != nil && !stale {
		if leader, hint := s.shards.leaderOf(req.Key); leader != s {
			s.notLeaderSent.Add(1)
			resp.Status = wire.StatusNotLeader
			resp.LeaderHint = hint
			return resp
		}
	}
	key := string(req.Key)
	switch req.Op {
	case wire.OpPut:
		s.mu.index++
		s.mu.data[key] = bytes.Clone(req.Value)
	case wire.OpGet:
		v, ok := s.mu.data[key]
		if !ok {
			resp.Status = wire.StatusNotFound
		}
		resp.Value = v
	case wire.OpDelete:
		s.mu.index++
		delete(s.mu.data, key)
	case wire.OpCAS:
		s.mu.index++
		v, ok := s.mu.data[key]
		match := ok && bytes.Equal(v, req.Expect)
		if req.Flags&wire.FlagExpectAbsent != 0 {
			match = !ok
		}
		if !match {
			resp.Status = wire.StatusCASFailed
			resp.Value = v
			break
		}
		s.mu.data[key] = bytes.Clone(req.Value)
	case wire.OpNoop:
		s.mu.index++
	default:
		resp.Status = wire.StatusBadRequest
		resp.Err = "unknown op"
	}
	resp.Index = s.mu.index
	return resp
}

// fakeShards is the shard map shared by the nodes of a fake multi-group
// cluster: which node leads each group.
type fakeShards struct {
	mu struct {
		sync.Mutex
		// leaders has one entry per group.
		leaders []*fakeServer
		// hintless makes NotLeader answers carry no hint.
		hintless bool
		// blankMap makes OpShardMap answers name no leaders, so the client
		// must learn every group's leader from hints.
		blankMap bool
		// rawMap, if set, is sent as the OpShardMap answer's Value as is.
		rawMap []byte
	}
}

// newFakeCluster starts nodes fake servers serving groups groups; group g
// is led by node g % nodes.
func newFakeCluster(t testing.TB, nodes int, groups uint32) ([]*fakeServer, *fakeShards) {
	t.Helper()
	sh := &fakeShards{}
	srvs := make([]*fakeServer, nodes)
	for i := range srvs {
		srvs[i] = newFakeServer(t, testClusterID)
		srvs[i].shards = sh // before any client connects
	}
	sh.mu.leaders = make([]*fakeServer, groups)
	for g := range sh.mu.leaders {
		sh.mu.leaders[g] = srvs[g%nodes]
	}
	return srvs, sh
}

func (sh *fakeShards) setLeader(g uint32, s *fakeServer) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.mu.leaders[g] = s
}

func (sh *fakeShards) leader(g uint32) *fakeServer {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.mu.leaders[g]
}

// leaderOf returns the leader of key's group and the hint a follower gives.
func (sh *fakeShards) leaderOf(key []byte) (*fakeServer, string) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	l := sh.mu.leaders[wire.GroupOf(key, uint32(len(sh.mu.leaders)))]
	if sh.mu.hintless {
		return l, ""
	}
	return l, l.addr
}

// shardMapAnswer is the answer to OpShardMap: the map, or for a node
// without shards what an old node says to an op it does not know.
func (s *fakeServer) shardMapAnswer(id uint64) *wire.ClientResponse {
	if s.shards == nil {
		return &wire.ClientResponse{ID: id, Status: wire.StatusBadRequest, Err: "unknown op"}
	}
	sh := s.shards
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.mu.rawMap != nil {
		return &wire.ClientResponse{ID: id, Status: wire.StatusOK, Value: sh.mu.rawMap}
	}
	m := wire.ShardMap{Groups: uint32(len(sh.mu.leaders)), Leaders: make([]string, len(sh.mu.leaders))}
	for g, l := range sh.mu.leaders {
		if !sh.mu.blankMap {
			m.Leaders[g] = l.addr
		}
	}
	v, err := wire.AppendShardMap(nil, &m)
	if err != nil {
		panic(err)
	}
	return &wire.ClientResponse{ID: id, Status: wire.StatusOK, Value: v}
}
