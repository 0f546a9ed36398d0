package raft

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/raftpipe/raftpipe/wire"
)

// interaction_test.go: consensus scenarios as scripts in testdata/*.txt,
// run with github.com/cockroachdb/datadriven. Regenerate the expected
// output with: go test ./raft -run TestInteraction -rewrite
//
// Commands (ids are node IDs):
//
//	add-nodes <n> [prevote=<bool>] [checkquorum=<bool>] [max-msg-bytes=<n>] [quiesce-after=<ticks>]
//	                      add n nodes; the first call makes them the founding
//	                      voters, later calls add empty nodes that can join
//	set-log <id> terms=(t1,t2,...) [term=<t>]
//	                      replace a node's durable log (and restart it)
//	campaign <id> | tick <id>... [n=<k>] (no ids: all)
//	propose <id> <data>... | propose-conf-change <id> <add-voter|add-learner|remove> <node>
//	transfer-leadership <from> <to> | read-index <id> <ctx>
//	wake <id>... | report-unreachable <id> <peer>
//	process-ready [<id>...]   handle Readys (persisting synchronously)
//	deliver [from=<id>] [to=<id>] [type=<MsgApp...>] [n=<k>]   deliver queued messages
//	drop [from=<id>] [to=<id>]  drop queued messages
//	partition (<ids>) (<ids>)... | heal | crash <id> | restart <id>
//	compact <id>               snapshot + compact the node's storage at its applied index
//	stabilize [quiet]          process and deliver until nothing is left
//	status [<id>...] | log [<id>...] | reads <id>

func TestInteraction(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		s := &script{}
		datadriven.RunTest(t, path, s.handle)
	})
}

// script is the state of one scenario file.
type script struct {
	c   *cluster
	out *strings.Builder
	// opts for nodes added later.
	preVote, checkQuorum bool
	maxMsgBytes          uint64
	quiesceAfter         int
}

var msgTypeNames = map[wire.MsgType]string{
	wire.MsgApp: "MsgApp", wire.MsgAppResp: "MsgAppResp", wire.MsgHeartbeat: "MsgHeartbeat",
	wire.MsgHeartbeatResp: "MsgHeartbeatResp", wire.MsgVote: "MsgVote", wire.MsgVoteResp: "MsgVoteResp",
	wire.MsgPreVote: "MsgPreVote", wire.MsgPreVoteResp: "MsgPreVoteResp", wire.MsgSnap: "MsgSnap",
	wire.MsgTimeoutNow: "MsgTimeoutNow",
}

// describeMessage renders a message on one line.
func describeMessage(m wire.Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d->%d %s Term:%d", m.From, m.To, msgTypeNames[m.Type], m.Term)
	switch m.Type {
	case wire.MsgApp:
		fmt.Fprintf(&b, " Log:%d/%d Commit:%d", m.LogTerm, m.Index, m.Commit)
		if len(m.Entries) > 0 {
			parts := make([]string, len(m.Entries))
			for i, e := range m.Entries {
				parts[i] = fmt.Sprintf("%d/%d", e.Term, e.Index)
				if len(e.Data) > 0 && e.Type == wire.EntryNormal {
					parts[i] += " " + string(e.Data)
				}
			}
			fmt.Fprintf(&b, " Entries:[%s]", strings.Join(parts, ", "))
		}
	case wire.MsgAppResp:
		fmt.Fprintf(&b, " Index:%d", m.Index)
		if m.Reject {
			fmt.Fprintf(&b, " Rejected (Hint: %d/%d)", m.HintTerm, m.RejectHint)
		}
	case wire.MsgHeartbeat:
		fmt.Fprintf(&b, " Commit:%d", m.Commit)
		if n := len(m.Context); n > 0 && m.Context[n-1] == quiesceNoticeMarker {
			b.WriteString(" (quiesce)")
		}
	case wire.MsgHeartbeatResp:
		if _, _, q, ok := decodeReadRound(m.Context); ok && q {
			b.WriteString(" (quiesced)")
		}
	case wire.MsgVote, wire.MsgPreVote:
		fmt.Fprintf(&b, " Log:%d/%d", m.LogTerm, m.Index)
		if len(m.Context) > 0 {
			b.WriteString(" (transfer)")
		}
	case wire.MsgVoteResp, wire.MsgPreVoteResp:
		if m.Reject {
			b.WriteString(" Rejected")
		}
	case wire.MsgSnap:
		fmt.Fprintf(&b, " Snapshot: Index:%d Term:%d Voters:%v Learners:%v", m.Snapshot.Index, m.Snapshot.Term, m.Snapshot.Conf.Voters, m.Snapshot.Conf.Learners)
	}
	return b.String()
}

func (s *script) ids(t *testing.T, d *datadriven.TestData) []uint64 {
	var ids []uint64
	for _, a := range d.CmdArgs {
		if len(a.Vals) == 0 {
			id, err := strconv.ParseUint(a.Key, 10, 64)
			if err != nil {
				d.Fatalf(t, "bad id %q", a.Key)
			}
			ids = append(ids, id)
		}
	}
	return ids
}

// firstID parses the first positional argument as a node ID.
func (s *script) firstID(t *testing.T, d *datadriven.TestData) uint64 {
	if len(d.CmdArgs) == 0 {
		d.Fatalf(t, "%s needs a node id", d.Cmd)
	}
	id, err := strconv.ParseUint(d.CmdArgs[0].Key, 10, 64)
	if err != nil {
		d.Fatalf(t, "bad id %q", d.CmdArgs[0].Key)
	}
	return id
}

func (s *script) idsOrAll(t *testing.T, d *datadriven.TestData) []uint64 {
	if ids := s.ids(t, d); len(ids) > 0 {
		return ids
	}
	return s.c.ids
}

func (s *script) node(t *testing.T, d *datadriven.TestData, id uint64) *testNode {
	nd := s.c.nodes[id]
	if nd == nil {
		d.Fatalf(t, "no node %d", id)
	}
	return nd
}

func (s *script) handle(t *testing.T, d *datadriven.TestData) string {
	s.out = &strings.Builder{}
	defer func() {
		if r := recover(); r != nil {
			d.Fatalf(t, "panic: %v", r)
		}
	}()
	switch d.Cmd {
	case "add-nodes":
		s.addNodes(t, d)
	case "set-log":
		s.setLog(t, d)
	case "campaign":
		for _, id := range s.ids(t, d) {
			if err := s.node(t, d, id).rn.Campaign(); err != nil {
				fmt.Fprintf(s.out, "%d: %v\n", id, err)
			}
		}
	case "tick":
		n := 1
		d.MaybeScanArgs(t, "n", &n)
		for i := 0; i < n; i++ {
			for _, id := range s.idsOrAll(t, d) {
				if nd := s.node(t, d, id); !nd.down {
					nd.rn.Tick()
				}
			}
		}
	case "propose":
		var data [][]byte
		for _, a := range d.CmdArgs[1:] {
			data = append(data, []byte(a.Key))
		}
		if err := s.node(t, d, s.firstID(t, d)).rn.Propose(data...); err != nil {
			fmt.Fprintf(s.out, "error: %v\n", err)
		}
	case "propose-conf-change":
		s.proposeConfChange(t, d)
	case "transfer-leadership":
		ids := s.ids(t, d)
		s.node(t, d, ids[0]).rn.TransferLeadership(ids[1])
	case "wake":
		for _, id := range s.ids(t, d) {
			s.node(t, d, id).rn.Wake()
		}
	case "report-unreachable":
		ids := s.ids(t, d)
		s.node(t, d, ids[0]).rn.ReportUnreachable(ids[1])
	case "read-index":
		id := s.firstID(t, d)
		if err := s.node(t, d, id).rn.ReadIndex([]byte(d.CmdArgs[1].Key)); err != nil {
			fmt.Fprintf(s.out, "error: %v\n", err)
		}
	case "process-ready":
		for _, id := range s.idsOrAll(t, d) {
			if nd := s.node(t, d, id); !nd.down && nd.rn.HasReady() {
				s.c.handleReady(nd)
			}
		}
	case "deliver", "drop":
		s.deliver(t, d, d.Cmd == "drop")
	case "partition":
		s.c.heal()
		var groups [][]uint64
		for _, a := range d.CmdArgs {
			var g []uint64
			for _, v := range a.Vals {
				id, _ := strconv.ParseUint(v, 10, 64)
				g = append(g, id)
			}
			if len(a.Vals) == 0 {
				for _, f := range strings.Split(strings.Trim(a.Key, "()"), ",") {
					id, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
					if err != nil {
						d.Fatalf(t, "bad partition group %q", a.Key)
					}
					g = append(g, id)
				}
			}
			groups = append(groups, g)
		}
		for i, g := range groups {
			for j, h := range groups {
				if i == j {
					continue
				}
				for _, a := range g {
					for _, b := range h {
						s.c.cut[[2]uint64{a, b}] = true
					}
				}
			}
		}
	case "heal":
		s.c.heal()
	case "crash":
		for _, id := range s.ids(t, d) {
			s.c.crash(id)
		}
	case "restart":
		for _, id := range s.ids(t, d) {
			s.c.restart(id)
		}
	case "compact":
		for _, id := range s.ids(t, d) {
			nd := s.node(t, d, id)
			si := nd.appliedIndex
			if _, err := nd.storage.CreateSnapshot(si, nd.appliedConf); err != nil {
				d.Fatalf(t, "%v", err)
			}
			if err := nd.storage.Compact(si); err != nil {
				d.Fatalf(t, "%v", err)
			}
			fmt.Fprintf(s.out, "%d: snapshot and compaction at %d\n", id, si)
		}
	case "stabilize":
		s.stabilize(d.HasArg("quiet"))
	case "status":
		for _, id := range s.idsOrAll(t, d) {
			s.status(s.node(t, d, id))
		}
	case "log":
		for _, id := range s.idsOrAll(t, d) {
			nd := s.node(t, d, id)
			fmt.Fprintf(s.out, "%d: %s\n", id, nd.logString())
		}
	case "reads":
		nd := s.node(t, d, s.firstID(t, d))
		for _, rs := range nd.readStates {
			fmt.Fprintf(s.out, "read %s at index %d\n", rs.Ctx, rs.Index)
		}
		nd.readStates = nil
	default:
		d.Fatalf(t, "unknown command %q", d.Cmd)
	}
	if len(s.c.errs) > 0 {
		d.Fatalf(t, "safety: %v", s.c.errs)
	}
	if s.out.Len() == 0 {
		return "ok\n"
	}
	return s.out.String()
}

func (s *script) addNodes(t *testing.T, d *datadriven.TestData) {
	n, err := strconv.Atoi(d.CmdArgs[0].Key)
	if err != nil {
		d.Fatalf(t, "add-nodes <n>")
	}
	if s.c == nil {
		s.preVote, s.checkQuorum = true, true
	}
	d.MaybeScanArgs(t, "prevote", &s.preVote)
	d.MaybeScanArgs(t, "checkquorum", &s.checkQuorum)
	d.MaybeScanArgs(t, "max-msg-bytes", &s.maxMsgBytes)
	d.MaybeScanArgs(t, "quiesce-after", &s.quiesceAfter)
	cfgFn := func(cfg *Config) {
		cfg.PreVote, cfg.CheckQuorum = s.preVote, s.checkQuorum
		cfg.QuiesceAfterTicks = s.quiesceAfter
		if s.maxMsgBytes > 0 {
			cfg.MaxSizePerMsgBytes = s.maxMsgBytes
		}
	}
	if s.c == nil {
		s.c = newCluster(n, 1, cfgFn)
		s.c.async = false
		// Deterministic but distinct election timeouts: node i times out
		// after 10+i ticks, so scripts can rely on the order.
		for _, id := range s.c.ids {
			s.c.nodes[id].rn.r.randomizedElectionTimeout = 10 + int(id)
			s.c.nodes[id].rn.r.rand = rand.New(rand.NewPCG(id, 1))
		}
	} else {
		s.c.cfgFn = cfgFn
		first := uint64(len(s.c.ids) + 1)
		// Nodes added to a running cluster join it: they start empty and
		// learn the membership from the log.
		for id := first; id < first+uint64(n); id++ {
			s.c.addNode(id, wire.ConfState{})
		}
	}
	for _, id := range s.c.ids {
		s.status(s.c.nodes[id])
	}
}

func (s *script) setLog(t *testing.T, d *datadriven.TestData) {
	id := s.firstID(t, d)
	nd := s.node(t, d, id)
	var terms []uint64
	d.ScanArgs(t, "terms", &terms)
	var term uint64
	if len(terms) > 0 {
		term = terms[len(terms)-1]
	}
	d.MaybeScanArgs(t, "term", &term)
	_, conf, _ := nd.storage.InitialState()
	if len(conf.Voters) == 0 {
		conf = nd.rn.r.confs.at(uint64(len(s.c.ids)))
	}
	st := NewMemoryStorageWithBase(conf)
	ents := make([]wire.Entry, len(terms))
	for i, tm := range terms {
		ents[i] = wire.Entry{Term: tm, Index: uint64(i + 1)}
	}
	if err := st.Append(ents); err != nil {
		d.Fatalf(t, "%v", err)
	}
	st.SetHardState(wire.HardState{Term: term})
	nd.storage = st
	nd.cfg.Storage = st
	nd.appliedIndex = 0
	s.c.restart(id)
	nd.rn.r.randomizedElectionTimeout = 10 + int(id)
	fmt.Fprintf(s.out, "%d: %s\n", id, nd.logString())
}

func (s *script) proposeConfChange(t *testing.T, d *datadriven.TestData) {
	id := s.firstID(t, d)
	var cc wire.ConfChange
	switch d.CmdArgs[1].Key {
	case "add-voter":
		cc.Type = wire.ConfAddVoter
	case "add-learner":
		cc.Type = wire.ConfAddLearner
	case "remove":
		cc.Type = wire.ConfRemove
	default:
		d.Fatalf(t, "unknown conf change %q", d.CmdArgs[1].Key)
	}
	node, err := strconv.ParseUint(d.CmdArgs[2].Key, 10, 64)
	if err != nil {
		d.Fatalf(t, "bad node %q", d.CmdArgs[2].Key)
	}
	cc.NodeID = node
	if err := s.node(t, d, id).rn.ProposeConfChange(cc); err != nil {
		fmt.Fprintf(s.out, "error: %v\n", err)
	}
}

// deliver delivers (or drops) the queued messages matching the filters,
// in order; messages they cause are queued, not delivered.
func (s *script) deliver(t *testing.T, d *datadriven.TestData, drop bool) {
	var from, to uint64
	var typ string
	n := -1
	d.MaybeScanArgs(t, "from", &from)
	d.MaybeScanArgs(t, "to", &to)
	d.MaybeScanArgs(t, "type", &typ)
	d.MaybeScanArgs(t, "n", &n)
	msgs := s.c.msgs
	s.c.msgs = nil
	var keep []wire.Message
	for _, m := range msgs {
		match := (from == 0 || m.From == from) && (to == 0 || m.To == to) && (typ == "" || msgTypeNames[m.Type] == typ) && n != 0
		if !match {
			keep = append(keep, m)
			continue
		}
		if n > 0 {
			n--
		}
		if drop {
			fmt.Fprintf(s.out, "dropped: %s\n", describeMessage(m))
			s.c.lost(m)
			continue
		}
		fmt.Fprintf(s.out, "%s\n", describeMessage(m))
		s.c.msgs = append(s.c.msgs, m)
		s.c.deliverOne(len(s.c.msgs) - 1)
	}
	s.c.msgs = append(keep, s.c.msgs...)
}

// stabilize processes Readys and delivers messages until quiet.
func (s *script) stabilize(quiet bool) {
	for round := 0; round < 1000; round++ {
		did := s.c.process()
		if len(s.c.msgs) == 0 {
			if !did {
				return
			}
			continue
		}
		msgs := s.c.msgs
		s.c.msgs = nil
		for _, m := range msgs {
			if !quiet {
				fmt.Fprintf(s.out, "%s\n", describeMessage(m))
			}
			s.c.msgs = append(s.c.msgs, m)
			s.c.deliverOne(len(s.c.msgs) - 1)
		}
	}
	fmt.Fprintf(s.out, "not stable after 1000 rounds\n")
}

func (s *script) status(nd *testNode) {
	st := nd.rn.Status()
	role := st.Role.String()
	if isMember(st.Conf, nd.id) && !isVoter(st.Conf, nd.id) {
		role += " (learner)"
	}
	if nd.down {
		role = "down"
	} else if st.Quiesced {
		role += " (quiesced)"
	}
	fmt.Fprintf(s.out, "%d: %s term=%d lead=%d commit=%d applied=%d last=%d voters=%v", nd.id, role, st.Term, st.Lead, st.Commit, st.Applied, st.LastIndex, st.Conf.Voters)
	if len(st.Conf.Learners) > 0 {
		fmt.Fprintf(s.out, " learners=%v", st.Conf.Learners)
	}
	if st.Role == RoleLeader {
		ids := make([]uint64, 0, len(st.Progress))
		for id := range st.Progress {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		var parts []string
		for _, id := range ids {
			p := st.Progress[id]
			parts = append(parts, fmt.Sprintf("%d:%s match=%d next=%d", id, p.State, p.Match, p.Next))
		}
		fmt.Fprintf(s.out, "\n   progress: %s", strings.Join(parts, ", "))
	}
	s.out.WriteString("\n")
}
