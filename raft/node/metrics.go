package node

import (
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftpipe/raftpipe/raft"
	"github.com/raftpipe/raftpipe/wire"
)

// counters are the node's own event counts and latency histograms,
// exported on /metrics by the collector in http.go.
//
// The zero value is ready: Start needs no set-up, and every recording
// method is a few atomic adds with no allocation, so the event sites in
// the loop, the apply goroutine and the client server call them inline.
// Cost choices, per event:
//   - proposal-to-apply latency is sampled: one proposal batch in flight
//     at a time carries a timestamp (applySampler). Timing every entry would
//     cost a clock read per entry and a place to keep it; at the target of
//     230k writes/s a sample every few milliseconds is plenty for a p99.
//   - apply duration is one observation per apply batch, not per entry.
//   - client requests are one atomic add per answered request (there is no
//     batch to count them at); the same add also feeds nothing else.
//   - peer RTT is measured on heartbeats only (a few per second per peer).
type counters struct {
	// applied counts entries applied to the state machine.
	applied atomic.Uint64
	// busy counts requests refused with StatusBusy.
	busy atomic.Uint64
	// readBatches counts confirmed linearizable read batches by how the
	// leader confirmed them: [0] heartbeat round, [1] lease (ReadModeLease).
	readBatches [2]atomic.Uint64
	// inboxDropped counts peer messages dropped because the loop's inbox
	// was full.
	inboxDropped atomic.Uint64
	// compactions counts log compactions.
	compactions atomic.Uint64
	// groupsQuiesced is how many of the host's groups are quiesced now
	// (each replica's loop adds 1 when its core quiesces, -1 when it wakes).
	groupsQuiesced atomic.Int64
	// leaderTransfers counts leadership hand-offs started by leader
	// balancing (balance.go).
	leaderTransfers atomic.Uint64

	// leaderChanges counts a new, non-zero leader seen (as etcd's
	// leader_changes_seen_total: leader A, then none, then A again is two).
	leaderChanges atomic.Uint64
	// elections counts campaigns this node started: [0] pre-vote rounds
	// entered, [1] real elections (each new term as candidate).
	elections [2]atomic.Uint64
	// proposalsFailed counts writes that did not apply, by failReason.
	proposalsFailed [numFailReasons]atomic.Uint64
	// clientRequests counts answered client requests by op and status.
	clientRequests [numOpLabels][numStatusLabels]atomic.Uint64

	// proposeToApply is the sampled proposal-to-apply latency (leader).
	proposeToApply durationHist[fastBuckets]
	// sampler carries the one proposal batch being timed.
	sampler applySampler
	// applyBatch is the time to apply one committed batch.
	applyBatch durationHist[fastBuckets]

	// snapSent and snapRecv count snapshot transfers: [0] ok, [1] failed.
	snapSent, snapRecv [2]atomic.Uint64
	// snapSentBytes and snapRecvBytes count snapshot payload bytes moved.
	snapSentBytes, snapRecvBytes atomic.Uint64
	// snapSendTime and snapRecvTime time whole transfers.
	snapSendTime, snapRecvTime durationHist[slowBuckets]

	// rtt times heartbeats to each peer.
	rtt peerRTT

	// adminRefused counts admin requests refused, by refusal reason
	// (adminauth.go).
	adminRefused [numRefusedReasons]atomic.Uint64

	// Owned by the loop goroutine (observeReady):
	// lead is the last leader seen; role and term the last role and term.
	lead uint64
	role raft.Role
	term uint64
}

// failReason labels raftpipe_proposals_failed_total.
type failReason int

const (
	// failNotLeader: this node did not lead when the write arrived or was
	// proposed; not appended, safe to retry.
	failNotLeader failReason = iota
	// failBusy: refused by backpressure (pending bound, full queue, the
	// core's uncommitted-bytes bound, a leadership transfer).
	failBusy
	// failOverwritten: appended, then replaced by another leader's entry.
	failOverwritten
	// failTimeout: the caller's context ended first (Node.Do); outcome
	// unknown.
	failTimeout
	// failStopped: the node stopped with the write pending; outcome unknown.
	failStopped
	// failError: anything else.
	failError
	numFailReasons
)

var failReasonNames = [numFailReasons]string{"not_leader", "busy", "overwritten", "timeout", "stopped", "error"}

// failReasonOf maps the status a refused write is answered with.
func failReasonOf(s wire.Status) failReason {
	switch s {
	case wire.StatusNotLeader:
		return failNotLeader
	case wire.StatusBusy:
		return failBusy
	}
	return failError
}

// proposalFailed counts k writes that failed for reason r.
func (c *counters) proposalFailed(r failReason, k int) {
	c.proposalsFailed[r].Add(uint64(k))
}

// proposalBusy counts one write refused by backpressure: both the busy
// total (reads included) and the proposals-failed reason.
func (c *counters) proposalBusy() {
	c.busy.Add(1)
	c.proposalsFailed[failBusy].Add(1)
}

// Labels of raftpipe_client_requests_total. The op label tells stale gets
// apart: they cost no consensus round and are served on any node.
const (
	numOpLabels     = 7 // put, get, get_stale, delete, cas, noop, other
	numStatusLabels = 9 // wire.StatusOK..StatusError, other
	opLabelStale    = 2
	opLabelOther    = 6
)

var (
	opLabelNames     = [numOpLabels]string{"put", "get", "get_stale", "delete", "cas", "noop", "other"}
	statusLabelNames = [numStatusLabels]string{"ok", "not_found", "not_leader", "busy", "cas_failed", "bad_request", "unknown", "error", "other"}
)

// opLabel maps a request to its op label index.
func opLabel(op wire.Op, flags wire.ReqFlags) int {
	switch op {
	case wire.OpPut:
		return 0
	case wire.OpGet:
		if flags&wire.FlagStale != 0 {
			return opLabelStale
		}
		return 1
	case wire.OpDelete:
		return 3
	case wire.OpCAS:
		return 4
	case wire.OpNoop:
		return 5
	}
	return opLabelOther
}

// clientAnswered counts one answered client request. op is opLabel's
// result, taken when the request arrived (the response does not carry it).
func (c *counters) clientAnswered(op int, s wire.Status) {
	si := int(s)
	if si < 0 || si >= numStatusLabels-1 {
		si = numStatusLabels - 1
	}
	c.clientRequests[op][si].Add(1)
}

// observeApply records one apply batch that began at start (monoNanos).
// Called as `defer n.metrics.observeApply(monoNanos())` at the top of the
// batch.
func (c *counters) observeApply(start int64) {
	c.applyBatch.observe(time.Duration(monoNanos() - start))
}

// observeApplied lets the sampler see a batch of applied entries.
func (c *counters) observeApplied(ents []wire.Entry) {
	c.sampler.applied(ents, &c.proposeToApply)
}

// observeReady notes leader changes and campaigns from a Ready. Called by
// the loop for every Ready, before the Ready is handled.
func (c *counters) observeReady(rd *raft.Ready) {
	if ss := rd.SoftState; ss != nil {
		if ss.Lead != 0 && ss.Lead != c.lead {
			c.leaderChanges.Add(1)
		}
		c.lead = ss.Lead
		if ss.Role != c.role {
			if ss.Role == raft.RolePreCandidate {
				c.elections[0].Add(1)
			}
			// Heartbeats in flight belong to the old role; a response to
			// one after a later term's heartbeat would time the wrong pair.
			c.rtt.reset()
		}
		c.role = ss.Role
	}
	// A candidate raises its term once per campaign (a split vote campaigns
	// again in the same role, so SoftState alone would miss it).
	if t := rd.HardState.Term; t > c.term {
		if c.role == raft.RoleCandidate {
			c.elections[1].Add(1)
		}
		c.term = t
	}
}

// snapshotSent records one outgoing transfer that began at start.
func (c *counters) snapshotSent(start time.Time, err error) {
	c.snapSendTime.observe(time.Since(start))
	c.snapSent[b2i(err != nil)].Add(1)
}

// snapshotReceived records one incoming transfer that began at start.
func (c *counters) snapshotReceived(start time.Time, err error) {
	c.snapRecvTime.observe(time.Since(start))
	c.snapRecv[b2i(err != nil)].Add(1)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// countingReader counts the bytes read through it into n.
type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n *atomic.Uint64
}

func (cr countingReader) Read(p []byte) (int, error) {
	k, err := cr.r.Read(p)
	cr.n.Add(uint64(k))
	return k, err
}

// clockBase anchors the monotonic nanosecond stamps kept in atomics.
var clockBase = time.Now()

// monoNanos is a monotonic clock reading that fits an atomic.
func monoNanos() int64 { return int64(time.Since(clockBase)) }

// applySampler times one proposal batch at a time from proposal to apply.
// The loop arms it (proposed) only when it is idle; the apply goroutine
// disarms it (applied) once the batch's last index is applied. Invariant:
// only the loop writes while index is 0, only the applier while it is not.
type applySampler struct {
	index, term atomic.Uint64
	start       atomic.Int64
}

// proposed offers the batch ending at (index, term), proposed now.
func (s *applySampler) proposed(index, term uint64) {
	if s.index.Load() != 0 {
		return
	}
	s.start.Store(monoNanos())
	s.term.Store(term)
	s.index.Store(index)
}

// applied sees a contiguous batch of applied entries and, if it holds the
// sampled index with the sampled term, records the latency into h. An
// entry of another term at that index (another leader's) is not timed.
func (s *applySampler) applied(ents []wire.Entry, h *durationHist[fastBuckets]) {
	idx := s.index.Load()
	if idx == 0 || len(ents) == 0 || idx > ents[len(ents)-1].Index {
		return
	}
	if first := ents[0].Index; idx >= first && ents[idx-first].Term == s.term.Load() {
		h.observe(time.Duration(monoNanos() - s.start.Load()))
	}
	s.index.Store(0)
}

// peerRTT times heartbeats: from sending MsgHeartbeat to a peer to
// receiving its MsgHeartbeatResp. Only the oldest unanswered heartbeat per
// peer is timed, so a lost heartbeat shows as a long round trip rather
// than vanishing, which is the direction an alert wants.
type peerRTT struct {
	// sent is when the oldest unanswered heartbeat went to each peer.
	// Owned by the loop goroutine.
	sent map[uint64]time.Time
	// mu guards hists, which the loop writes and the collector reads.
	mu struct {
		sync.Mutex
		hists map[uint64]*durationHist[fastBuckets]
	}
}

// onSend notes a heartbeat going out. Loop goroutine only.
func (p *peerRTT) onSend(m *wire.Message) {
	if m.Type != wire.MsgHeartbeat {
		return
	}
	if p.sent == nil {
		p.sent = map[uint64]time.Time{}
	}
	if _, waiting := p.sent[m.To]; !waiting {
		p.sent[m.To] = time.Now()
	}
}

// onRecv times a heartbeat response. Loop goroutine only.
func (p *peerRTT) onRecv(m *wire.Message) {
	if m.Type != wire.MsgHeartbeatResp {
		return
	}
	t, ok := p.sent[m.From]
	if !ok {
		return
	}
	delete(p.sent, m.From)
	d := time.Since(t)
	p.mu.Lock()
	h := p.mu.hists[m.From]
	if h == nil {
		if p.mu.hists == nil {
			p.mu.hists = map[uint64]*durationHist[fastBuckets]{}
		}
		h = &durationHist[fastBuckets]{}
		p.mu.hists[m.From] = h
	}
	p.mu.Unlock()
	h.observe(d)
}

// reset forgets heartbeats in flight. Loop goroutine only.
func (p *peerRTT) reset() { clear(p.sent) }

// collect emits one histogram per peer.
func (p *peerRTT) collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, h := range p.mu.hists {
		ch <- h.metric(descPeerRTT, strconv.FormatUint(id, 10))
	}
}

// bucketSet names a histogram's upper bounds (seconds, ascending).
type bucketSet interface{ bounds() []float64 }

// fastBuckets suit commit-path latencies: 50 µs to 10 s.
type fastBuckets struct{}

// slowBuckets suit snapshot transfers: 10 ms to 30 min.
type slowBuckets struct{}

var (
	fastBounds = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	slowBounds = []float64{0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}
)

func (fastBuckets) bounds() []float64 { return fastBounds }
func (slowBuckets) bounds() []float64 { return slowBounds }

// maxBuckets bounds the bucket count of any bucketSet.
const maxBuckets = 20

// durationHist is a fixed-bucket histogram of durations whose zero value
// is ready and whose observe is two atomic adds. client_golang's Histogram
// would do as well on the hot path, but needs construction, which the
// zero-value counters (built by Start's struct literal) cannot give it.
type durationHist[B bucketSet] struct {
	// counts[i] counts observations in bucket i; the last used one is +Inf.
	counts [maxBuckets + 1]atomic.Uint64
	// sumNanos is the sum of all observations.
	sumNanos atomic.Uint64
}

func (h *durationHist[B]) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	var b B
	i := sort.SearchFloat64s(b.bounds(), d.Seconds())
	h.counts[i].Add(1)
	h.sumNanos.Add(uint64(d))
}

// metric is the histogram as a Prometheus const metric. Buckets are read
// one by one while observations go on, so the count is taken as the sum of
// the buckets read, which keeps the exposition self-consistent.
func (h *durationHist[B]) metric(d *prometheus.Desc, labels ...string) prometheus.Metric {
	var b B
	bounds := b.bounds()
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, ub := range bounds {
		cum += h.counts[i].Load()
		buckets[ub] = cum
	}
	cum += h.counts[len(bounds)].Load()
	return prometheus.MustNewConstHistogram(d, cum, time.Duration(h.sumNanos.Load()).Seconds(), buckets, labels...)
}

// Descriptions of the metrics counters adds; the older ones are in http.go.
var (
	descProposeApply = prometheus.NewDesc("raftpipe_proposal_apply_duration_seconds",
		"Leader: time from proposing a write batch to applying it (sampled: one batch in flight at a time).", nil, nil)
	descApplyBatch = prometheus.NewDesc("raftpipe_apply_batch_duration_seconds",
		"Time to apply one batch of committed entries to the state machine and answer its writers.", nil, nil)
	descPeerRTT = prometheus.NewDesc("raftpipe_peer_round_trip_time_seconds",
		"Leader: time from a heartbeat to a peer to its response (oldest unanswered heartbeat per peer).", []string{"peer"}, nil)
	descLeaderChanges = prometheus.NewDesc("raftpipe_leader_changes_seen_total",
		"Times this node saw a new leader.", nil, nil)
	descElections = prometheus.NewDesc("raftpipe_elections_started_total",
		"Campaigns this node started: kind=pre_vote (entered pre-candidate) or vote (new term as candidate).", []string{"kind"}, nil)
	descPropFailed = prometheus.NewDesc("raftpipe_proposals_failed_total",
		"Writes that did not apply, by reason (not_leader, busy, overwritten, timeout, stopped, error).", []string{"reason"}, nil)
	descClientReqs = prometheus.NewDesc("raftpipe_client_requests_total",
		"Answered client requests by op and status.", []string{"op", "status"}, nil)
	descSnapSent = prometheus.NewDesc("raftpipe_snapshots_sent_total",
		"Snapshot transfers to followers, by result.", []string{"result"}, nil)
	descSnapRecv = prometheus.NewDesc("raftpipe_snapshots_received_total",
		"Snapshot transfers from a leader, by result.", []string{"result"}, nil)
	descSnapSentBytes = prometheus.NewDesc("raftpipe_snapshot_sent_bytes_total",
		"Snapshot bytes sent.", nil, nil)
	descSnapRecvBytes = prometheus.NewDesc("raftpipe_snapshot_received_bytes_total",
		"Snapshot bytes received.", nil, nil)
	descSnapSendTime = prometheus.NewDesc("raftpipe_snapshot_send_duration_seconds",
		"Duration of whole outgoing snapshot transfers.", nil, nil)
	descSnapRecvTime = prometheus.NewDesc("raftpipe_snapshot_receive_duration_seconds",
		"Duration of whole incoming snapshot transfers.", nil, nil)
	descHasLeader = prometheus.NewDesc("raftpipe_has_leader",
		"1 if this node knows a leader (of group 0 on a host with many groups).", nil, nil)
	descGroupsHosted = prometheus.NewDesc("raftpipe_groups_hosted",
		"Raft groups this node hosts a replica of (Config.Groups).", nil, nil)
	descGroupsLed = prometheus.NewDesc("raftpipe_groups_led",
		"Raft groups this node leads now.", nil, nil)
	descGroupsQuiesced = prometheus.NewDesc("raftpipe_groups_quiesced",
		"Raft groups whose replica on this node is quiesced (idle: no heartbeats, no ticks).", nil, nil)
	descLeaderTransfers = prometheus.NewDesc("raftpipe_leader_balance_transfers_total",
		"Leadership hand-offs this node started to move a group to its preferred member.", nil, nil)
	descMaxPending = prometheus.NewDesc("raftpipe_max_pending_proposals",
		"The bound on raftpipe_pending_proposals beyond which writes are refused as busy.", nil, nil)
	descReadBatches = prometheus.NewDesc("raftpipe_read_batches_confirmed_total",
		"Leader: batches of linearizable reads confirmed, by how (round: a heartbeat round; lease: locally under the read lease).", []string{"by"}, nil)
	descAdminRefused = prometheus.NewDesc("raftpipe_admin_refused_total",
		"Admin HTTP requests refused, by reason (no_credentials, bad_token, bad_certificate: 401; not_configured: 403).", []string{"reason"}, nil)
)

var countersDescs = []*prometheus.Desc{descProposeApply, descApplyBatch, descPeerRTT, descLeaderChanges, descElections,
	descPropFailed, descClientReqs, descSnapSent, descSnapRecv, descSnapSentBytes, descSnapRecvBytes, descSnapSendTime,
	descSnapRecvTime, descHasLeader, descMaxPending, descAdminRefused, descReadBatches,
	descGroupsHosted, descGroupsLed, descGroupsQuiesced, descLeaderTransfers}

// collect emits the metrics counters adds.
func (c *counters) collect(n *Node, ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	ch <- c.proposeToApply.metric(descProposeApply)
	ch <- c.applyBatch.metric(descApplyBatch)
	c.rtt.collect(ch)
	counter(descLeaderChanges, c.leaderChanges.Load())
	counter(descElections, c.elections[0].Load(), "pre_vote")
	counter(descElections, c.elections[1].Load(), "vote")
	for r := range numFailReasons {
		counter(descPropFailed, c.proposalsFailed[r].Load(), failReasonNames[r])
	}
	for op := range numOpLabels {
		for st := range numStatusLabels {
			counter(descClientReqs, c.clientRequests[op][st].Load(), opLabelNames[op], statusLabelNames[st])
		}
	}
	for i, result := range []string{"ok", "error"} {
		counter(descSnapSent, c.snapSent[i].Load(), result)
		counter(descSnapRecv, c.snapRecv[i].Load(), result)
	}
	counter(descSnapSentBytes, c.snapSentBytes.Load())
	counter(descSnapRecvBytes, c.snapRecvBytes.Load())
	ch <- c.snapSendTime.metric(descSnapSendTime)
	ch <- c.snapRecvTime.metric(descSnapRecvTime)
	hasLeader := 0.0
	if n.r0.leaderID.Load() != 0 {
		hasLeader = 1
	}
	gauge(descHasLeader, hasLeader)
	led := 0
	for _, rep := range n.replicas {
		if rep.isLeader.Load() {
			led++
		}
	}
	gauge(descGroupsHosted, float64(len(n.replicas)))
	gauge(descGroupsLed, float64(led))
	gauge(descGroupsQuiesced, float64(c.groupsQuiesced.Load()))
	counter(descLeaderTransfers, c.leaderTransfers.Load())
	gauge(descMaxPending, float64(n.cfg.MaxPendingProposals))
	counter(descReadBatches, c.readBatches[0].Load(), "round")
	counter(descReadBatches, c.readBatches[1].Load(), "lease")
	for r := range numRefusedReasons {
		counter(descAdminRefused, c.adminRefused[r].Load(), refusedReasonNames[r])
	}
}
