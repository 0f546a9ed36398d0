package node

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/raftpipe/raftpipe/wal"
	"github.com/raftpipe/raftpipe/wire"
)

// Commit latency by stage.
//
// One accepted write in Config.StageSampleEvery is timed at each boundary
// it crosses on the leader; the others are not timed at all. The sampled
// write carries a *stageSample from Submit to its reply; the loop follows
// it through the WAL hand-off, the MsgApps that carry it and the acks that
// cover it, and the apply goroutine records all its stages at once when
// the reply callback returns, so every stage histogram holds the same set
// of writes and a sample's stages can be checked against its total.
//
// Boundaries (times are one monotonic clock per node; nothing here reads
// another node's clock, so separate processes work the same way):
//
//	accept     api.go propose1: the write passed the leader and Busy checks
//	propose    loop.go propose: the core appended the batch holding it
//	sent       loop.go handleReady: the first MsgApp carrying it leaves the loop
//	walStart   loop.go handleReady: just before wal.AppendAsync of its Ready
//	walDone    the WAL's completion callback for that Ready (write + fsync)
//	ack        loop.go step: the MsgAppResp that completes a follower quorum
//	committed  loop.go handleReady: it is in Ready.CommittedEntries
//	applied    apply.go apply: the state machine's Apply of its batch returned
//	replied    apply.go apply: its caller's callback returned
//
// Cost: an unsampled write pays one atomic add (the sampling counter, on
// its own cache line) in Submit and a nil check in the loop and in apply;
// every loop input pays a length check on the list of followed samples.
// A sampled write pays one allocation and about eight clock reads.
// Simpler rejected schemes: timing every write (a clock read costs about
// 250 ns on the KVM machines, ~2 µs per write for all boundaries), and
// one sample in flight at a time (weights samples by time, not by write,
// so a disk stall that holds many writes yields one sample).

// DefaultStageSampleEvery is the default Config.StageSampleEvery: at 100k
// writes/s it times about 1.5k writes a second, plenty for a p99 per
// stage over a 10 s window.
const DefaultStageSampleEvery = 64

const (
	// maxStageSamplesInFlight bounds the samples the loop follows at once.
	// A sample stays followed after it commits until every follower has
	// acked it (for the per-follower round trip); with a follower down the
	// list fills and the oldest is let go (its missing follower acks are
	// simply not recorded).
	maxStageSamplesInFlight = 64
	// maxStageFollowers bounds the followers tracked per sample (raftbench
	// runs at most 9 nodes).
	maxStageFollowers = 8
	// stageHistMaxMicros is the largest recordable stage time, 60 s;
	// longer ones are recorded as 60 s.
	stageHistMaxMicros = 60_000_000
	// stageHistSigFigs: 1% resolution is enough for a breakdown and keeps
	// each histogram small.
	stageHistSigFigs = 2
)

// Stage names, in pipeline order. They are part of the StageStats JSON
// interface (raftbench, /stages): add names, rename none.
const (
	// StageQueue: accept -> propose, the wait in the proposal queue.
	StageQueue = "queue"
	// StageLeaderWAL: walStart -> walDone, the leader's own write + fsync.
	StageLeaderWAL = "leader_wal"
	// StageReplication: sent -> ack, from the first MsgApp carrying the
	// entry to the follower ack that completes a quorum (with the leader),
	// as stepped by the leader's loop (so it includes the inbox wait).
	StageReplication = "replication"
	// StageDurable: min(sent, walStart) -> max(walDone, ack): the entry is
	// durable on the leader and on a quorum. Leader WAL and replication
	// run in parallel; this is their critical path.
	StageDurable = "durable"
	// StageLoop: the loop's own turnarounds, propose -> min(sent,
	// walStart) plus max(walDone, ack) -> committed (waking on the WAL
	// callback, AckPersisted, the next Ready).
	StageLoop = "loop"
	// StageCommitToApplied: committed -> applied, the apply queue and the
	// Pebble batch.
	StageCommitToApplied = "commit_to_applied"
	// StageAppliedToReply: applied -> replied, answering the batch's
	// earlier waiters and this one's callback.
	StageAppliedToReply = "applied_to_reply"
	// StageTotal: accept -> replied. Per sample it equals queue + durable
	// + loop + commit_to_applied + applied_to_reply.
	StageTotal = "total"
	// StageWALFsync is each WAL fdatasync alone, from wal.Stats (every
	// sync of this node, not only sampled writes; on a follower this is
	// the follower's own fsync). Approximate: power-of-two buckets.
	StageWALFsync = "wal_fsync"
	// StageFollowerRTT is one follower's round trip: the first MsgApp
	// carrying a sampled entry sent to it -> its first ack covering it.
	StageFollowerRTT = "replication_rtt"
)

// stage indexes the sampled-write histograms.
type stage int

const (
	stQueue stage = iota
	stLeaderWAL
	stReplication
	stDurable
	stLoop
	stCommitToApplied
	stAppliedToReply
	stTotal
	numStages
)

var stageNames = [numStages]string{StageQueue, StageLeaderWAL, StageReplication, StageDurable,
	StageLoop, StageCommitToApplied, StageAppliedToReply, StageTotal}

// StageStat is one stage's distribution over a window, in microseconds.
type StageStat struct {
	// Name is one of the Stage* constants.
	Name string `json:"name"`
	// Count is the number of samples; the percentiles are 0 without any.
	Count  int64   `json:"count"`
	P50Us  int64   `json:"p50_us"`
	P99Us  int64   `json:"p99_us"`
	MaxUs  int64   `json:"max_us"`
	MeanUs float64 `json:"mean_us"`
	// Approx marks percentiles that are upper bounds of power-of-two
	// buckets (the WAL's own fsync histogram) rather than 1% values.
	Approx bool `json:"approx,omitempty"`
}

// FollowerStageStat is the leader's round trip to one follower.
type FollowerStageStat struct {
	// ID is the follower's node ID.
	ID uint64 `json:"id"`
	StageStat
}

// StageSample is one sampled write's stages, µs: the slowest of a window,
// so a latency spike can be told apart (disk, network, loop, apply).
type StageSample struct {
	// Index is the entry's log index.
	Index             uint64 `json:"index"`
	QueueUs           int64  `json:"queue_us"`
	LeaderWALUs       int64  `json:"leader_wal_us"`
	ReplicationUs     int64  `json:"replication_us"`
	DurableUs         int64  `json:"durable_us"`
	LoopUs            int64  `json:"loop_us"`
	CommitToAppliedUs int64  `json:"commit_to_applied_us"`
	AppliedToReplyUs  int64  `json:"applied_to_reply_us"`
	TotalUs           int64  `json:"total_us"`
}

// StageStats is the commit-latency breakdown of this node's sampled
// writes (only a leader has any) since the last reset.
type StageStats struct {
	// SampleEvery is the sampling interval: one write in SampleEvery is
	// timed (0: sampling is off).
	SampleEvery int `json:"sample_every"`
	// WindowS is the time since the last reset (or the node's start).
	WindowS float64 `json:"window_s"`
	// Stages are the sampled writes' stages, in pipeline order (Stage*
	// names, StageTotal last).
	Stages []StageStat `json:"stages"`
	// Followers are the per-follower round trips, by ID.
	Followers []FollowerStageStat `json:"followers,omitempty"`
	// WALFsync is this node's fdatasync latency over the window.
	WALFsync StageStat `json:"wal_fsync"`
	// Slowest is the sample with the largest total, nil without samples.
	Slowest *StageSample `json:"slowest,omitempty"`
	// OutOfOrder counts samples whose boundaries were not in pipeline
	// order (a bug in the hooks if ever non-zero); they are not recorded.
	OutOfOrder uint64 `json:"out_of_order"`
	// Dropped counts samples the loop stopped following before they
	// committed (leadership lost, entry overwritten, list full).
	Dropped uint64 `json:"dropped"`
}

// Stage returns the named stage (zero StageStat if absent).
func (s *StageStats) Stage(name string) StageStat {
	for _, st := range s.Stages {
		if st.Name == name {
			return st
		}
	}
	return StageStat{}
}

// stageSample is one timed write. Times are nanoseconds since
// stageTracker.base.
//
// Ownership: accept is written by Submit before the proposal is queued;
// propose, sent, walStart, ack and committed by the loop, never after
// committed is set (the apply goroutine reads them after the committed
// batch is handed to it, which orders the reads after the writes);
// walDone by the WAL goroutine (atomic); the fields below "loop only" are
// the loop's alone.
type stageSample struct {
	index, term                                     uint64
	accept, propose, sent, walStart, ack, committed int64
	walDone                                         atomic.Int64

	// loop only:
	// need is how many follower acks complete a quorum with the leader;
	// expect how many followers there are to ack at all.
	need, expect int
	// acks counts distinct followers that acked.
	acks int
	// handed is set once the entry went to the WAL; done once committed.
	handed, done bool
	// followers records per-follower send times.
	followers  [maxStageFollowers]stageFollower
	nFollowers int
}

// stageFollower is one follower's progress on a sample.
type stageFollower struct {
	id    uint64
	sent  int64 // 0: acked before any MsgApp carrying the entry was seen
	acked bool
}

// follower returns id's slot, adding one if there is room; nil if full.
func (s *stageSample) follower(id uint64) *stageFollower {
	for i := 0; i < s.nFollowers; i++ {
		if s.followers[i].id == id {
			return &s.followers[i]
		}
	}
	if s.nFollowers == maxStageFollowers {
		return nil
	}
	f := &s.followers[s.nFollowers]
	s.nFollowers++
	f.id = id
	return f
}

// stageTracker holds the sampling state and the histograms.
type stageTracker struct {
	// seq counts accepted writes for the 1-in-every decision. Every
	// client goroutine writes it, so it is padded onto a cache line of
	// its own.
	_   [64]byte
	seq atomic.Uint64
	_   [56]byte
	// every is Config.StageSampleEvery, 0 when sampling is off.
	every uint64
	// base is the clock origin of every sample time.
	base time.Time
	// loop holds the samples being followed, oldest first. Owned by the
	// loop goroutine. Invariant: len <= maxStageSamplesInFlight.
	loop []*stageSample

	mu struct {
		sync.Mutex
		// since is the start of the window.
		since time.Time
		// hists are the sampled stages, µs.
		hists [numStages]*hdr.Histogram
		// followers are the per-follower round trips, µs.
		followers map[uint64]*hdr.Histogram
		// walBase is the WAL's stats at the window's start.
		walBase wal.Stats
		// slowest is the window's sample with the largest total.
		slowest *StageSample
		// outOfOrder and dropped back the StageStats fields.
		outOfOrder, dropped uint64
	}
}

func newStageHist() *hdr.Histogram { return hdr.New(1, stageHistMaxMicros, stageHistSigFigs) }

// init prepares the tracker; every <= 0 turns sampling off.
func (t *stageTracker) init(every int) {
	if every > 0 {
		t.every = uint64(every)
	}
	t.base = time.Now()
	t.mu.since = t.base
	for i := range t.mu.hists {
		t.mu.hists[i] = newStageHist()
	}
	t.mu.followers = map[uint64]*hdr.Histogram{}
}

// now is the sample clock: nanoseconds since base, monotonic.
func (t *stageTracker) now() int64 { return int64(time.Since(t.base)) }

// maybeSample decides whether an accepted write is timed (api.go).
func (t *stageTracker) maybeSample(p *proposal) {
	if t.every != 0 && t.seq.Add(1)%t.every == 0 {
		p.sample = &stageSample{accept: t.now()}
	}
}

// following reports whether the loop follows any sample: the one check
// every loop input pays.
func (t *stageTracker) following() bool { return len(t.loop) > 0 }

// stageProposed starts following w's sample once the core appended w
// (loop).
func (rep *replica) stageProposed(w *proposal) {
	t := &rep.stages
	s := w.sample
	s.index, s.term, s.propose = w.index, w.term, t.now()
	var self bool
	for _, id := range rep.members.conf.Voters {
		if id == rep.cfg.ID {
			self = true
		}
	}
	s.need = len(rep.members.conf.Voters)/2 + 1
	if self {
		s.need--
	}
	s.expect = len(rep.members.conf.Voters) + len(rep.members.conf.Learners)
	if self || slices.Contains(rep.members.conf.Learners, rep.cfg.ID) {
		s.expect--
	}
	if len(t.loop) == maxStageSamplesInFlight {
		t.drop(0)
	}
	t.loop = append(t.loop, s)
}

// drop stops following the i-th sample (loop), counting it if it had
// not committed.
func (t *stageTracker) drop(i int) {
	if !t.loop[i].done {
		t.mu.Lock()
		t.mu.dropped++
		t.mu.Unlock()
	}
	t.loop = slices.Delete(t.loop, i, i+1)
}

// dropAll stops following every sample (loop; leadership lost).
func (t *stageTracker) dropAll() {
	for len(t.loop) > 0 {
		t.drop(len(t.loop) - 1)
	}
}

// covers returns the position of (index, term) in ents, or -1.
func covers(ents []wire.Entry, index, term uint64) int {
	if len(ents) == 0 || index < ents[0].Index || index > ents[len(ents)-1].Index {
		return -1
	}
	i := int(index - ents[0].Index)
	if ents[i].Term != term {
		return -1
	}
	return i
}

// sent notes an outgoing MsgApp carrying followed samples (loop).
func (t *stageTracker) sent(m *wire.Message) {
	if m.Type != wire.MsgApp || len(m.Entries) == 0 {
		return
	}
	var now int64
	for _, s := range t.loop {
		if covers(m.Entries, s.index, s.term) < 0 {
			continue
		}
		f := s.follower(m.To)
		if f == nil || f.sent != 0 || f.acked {
			continue
		}
		if now == 0 {
			now = t.now()
		}
		f.sent = now
		if s.sent == 0 && !s.done {
			s.sent = now
		}
	}
}

// handedOff marks the samples in ents as handed to the WAL and returns
// them for the completion callback (loop; nil if none).
func (t *stageTracker) handedOff(ents []wire.Entry) []*stageSample {
	var out []*stageSample
	var now int64
	for _, s := range t.loop {
		if s.handed || covers(ents, s.index, s.term) < 0 {
			continue
		}
		if now == 0 {
			now = t.now()
		}
		s.handed, s.walStart = true, now
		out = append(out, s)
	}
	return out
}

// walDurable records the WAL completion of samples (WAL goroutine).
func (t *stageTracker) walDurable(ss []*stageSample) {
	now := t.now()
	for _, s := range ss {
		s.walDone.Store(now)
	}
}

// acked notes a follower's append ack of everything up to index in term
// (loop).
func (t *stageTracker) acked(from, index, term uint64) {
	var now int64
	for i := 0; i < len(t.loop); i++ {
		s := t.loop[i]
		if s.term != term || index < s.index {
			continue
		}
		f := s.follower(from)
		if f == nil || f.acked {
			continue
		}
		if now == 0 {
			now = t.now()
		}
		f.acked = true
		s.acks++
		if f.sent != 0 {
			t.recordFollower(from, now-f.sent)
		}
		if s.acks == s.need && !s.done {
			s.ack = now
		}
		if s.done && s.acks >= s.expect {
			t.loop = slices.Delete(t.loop, i, i+1)
			i--
		}
	}
}

// committed marks the samples in ents as committed and reports whether
// any was (loop). A followed sample whose index committed with another
// term was overwritten: it is let go.
func (t *stageTracker) committed(ents []wire.Entry) bool {
	var now int64
	found := false
	for i := 0; i < len(t.loop); i++ {
		s := t.loop[i]
		if s.done || s.index < ents[0].Index || s.index > ents[len(ents)-1].Index {
			continue
		}
		if covers(ents, s.index, s.term) < 0 {
			t.drop(i)
			i--
			continue
		}
		if now == 0 {
			now = t.now()
		}
		s.committed, s.done, found = now, true, true
		if s.acks >= s.expect {
			t.loop = slices.Delete(t.loop, i, i+1)
			i--
		}
	}
	return found
}

// recordFollower records one follower round trip (loop).
func (t *stageTracker) recordFollower(id uint64, d int64) {
	t.mu.Lock()
	h := t.mu.followers[id]
	if h == nil {
		h = newStageHist()
		t.mu.followers[id] = h
	}
	recordMicros(h, d)
	t.mu.Unlock()
}

func recordMicros(h *hdr.Histogram, nanos int64) {
	_ = h.RecordValue(min(max(nanos/1000, 0), stageHistMaxMicros))
}

// replied records a sample's stages once its caller's callback returned
// (apply goroutine). appliedAt is when its batch was applied. A sample
// the loop let go before it committed is not recorded.
func (t *stageTracker) replied(s *stageSample, appliedAt int64) {
	if s.committed == 0 {
		return
	}
	replied := t.now()
	walDone := s.walDone.Load()
	start := s.walStart
	if s.sent != 0 && s.sent < start {
		start = s.sent
	}
	durEnd := max(walDone, s.ack)
	ordered := s.accept <= s.propose && s.propose <= start && start <= s.walStart &&
		s.walStart <= walDone && durEnd <= s.committed &&
		(s.ack == 0 || (s.sent != 0 && s.sent <= s.ack)) &&
		s.committed <= appliedAt && appliedAt <= replied
	var d [numStages]int64
	d[stQueue] = s.propose - s.accept
	d[stLeaderWAL] = walDone - s.walStart
	d[stReplication] = s.ack - s.sent
	d[stDurable] = durEnd - start
	d[stLoop] = (start - s.propose) + (s.committed - durEnd)
	d[stCommitToApplied] = appliedAt - s.committed
	d[stAppliedToReply] = replied - appliedAt
	d[stTotal] = replied - s.accept

	t.mu.Lock()
	defer t.mu.Unlock()
	if !ordered || walDone == 0 {
		t.mu.outOfOrder++
		return
	}
	for st := range numStages {
		if stage(st) == stReplication && s.ack == 0 {
			continue // no follower quorum to wait for (one voter)
		}
		recordMicros(t.mu.hists[st], d[st])
	}
	if t.mu.slowest == nil || d[stTotal]/1000 > t.mu.slowest.TotalUs {
		us := func(st stage) int64 { return d[st] / 1000 }
		t.mu.slowest = &StageSample{Index: s.index, QueueUs: us(stQueue), LeaderWALUs: us(stLeaderWAL),
			ReplicationUs: us(stReplication), DurableUs: us(stDurable), LoopUs: us(stLoop),
			CommitToAppliedUs: us(stCommitToApplied), AppliedToReplyUs: us(stAppliedToReply), TotalUs: us(stTotal)}
		if s.ack == 0 {
			t.mu.slowest.ReplicationUs = 0
		}
	}
}

// histStat summarises h.
func histStat(name string, h *hdr.Histogram) StageStat {
	st := StageStat{Name: name, Count: h.TotalCount()}
	if st.Count > 0 {
		st.P50Us, st.P99Us, st.MaxUs = h.ValueAtQuantile(50), h.ValueAtQuantile(99), h.Max()
		st.MeanUs = h.Mean()
	}
	return st
}

// fsyncStat summarises the WAL's fdatasync histogram between two
// snapshots. Percentiles and max are bucket upper bounds; the mean is
// exact.
func fsyncStat(cur, base wal.Stats) StageStat {
	st := StageStat{Name: StageWALFsync, Approx: true}
	var counts [len(cur.SyncLatency.Buckets)]uint64
	var total uint64
	for i, b := range cur.SyncLatency.Buckets {
		counts[i] = b.Count - base.SyncLatency.Buckets[i].Count
		total += counts[i]
	}
	if total == 0 {
		return st
	}
	st.Count = int64(total)
	st.MeanUs = float64((cur.SyncLatency.Sum - base.SyncLatency.Sum).Microseconds()) / float64(total)
	bound := func(i int) int64 {
		if i == len(counts)-1 { // open-ended: report twice the previous bound
			return 2 * cur.SyncLatency.Buckets[i-1].UpperBound.Microseconds()
		}
		return cur.SyncLatency.Buckets[i].UpperBound.Microseconds()
	}
	at := func(q float64) int64 {
		want := uint64(q*float64(total) + 0.5)
		var cum uint64
		for i, c := range counts {
			cum += c
			if cum >= max(want, 1) {
				return bound(i)
			}
		}
		return bound(len(counts) - 1)
	}
	st.P50Us, st.P99Us = at(0.50), at(0.99)
	for i := len(counts) - 1; i >= 0; i-- {
		if counts[i] > 0 {
			st.MaxUs = bound(i)
			break
		}
	}
	return st
}

// StageStats returns the commit-latency breakdown of the sampled writes
// since the last reset; reset starts a new window (raftbench resets at the
// start of its measurement window so warm-up is excluded). Stages are
// recorded when a sampled write is answered, so a write accepted before a
// reset and answered after it counts in the new window. Safe for
// concurrent use.
func (n *Node) StageStats(reset bool) StageStats {
	t := &n.r0.stages
	ws := n.wal.Stats()
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	out := StageStats{
		SampleEvery: int(t.every), WindowS: now.Sub(t.mu.since).Seconds(),
		WALFsync: fsyncStat(ws, t.mu.walBase), OutOfOrder: t.mu.outOfOrder, Dropped: t.mu.dropped,
	}
	for st, h := range t.mu.hists {
		out.Stages = append(out.Stages, histStat(stageNames[st], h))
	}
	for id, h := range t.mu.followers {
		out.Followers = append(out.Followers, FollowerStageStat{ID: id, StageStat: histStat(StageFollowerRTT, h)})
	}
	slices.SortFunc(out.Followers, func(a, b FollowerStageStat) int { return cmp.Compare(a.ID, b.ID) })
	if t.mu.slowest != nil {
		s := *t.mu.slowest
		out.Slowest = &s
	}
	if reset {
		for _, h := range t.mu.hists {
			h.Reset()
		}
		clear(t.mu.followers)
		t.mu.walBase, t.mu.since, t.mu.slowest = ws, now, nil
		t.mu.outOfOrder, t.mu.dropped = 0, 0
	}
	return out
}
