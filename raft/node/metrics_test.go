package node

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/raftpipe/raftpipe/raft"
	"github.com/raftpipe/raftpipe/wire"
)

// scrape fetches n's /metrics through its admin handler (no listener) and
// parses the text exposition.
func scrape(t *testing.T, n *Node) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	n.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.Bytes()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams, body
}

// sample returns the value of the series of family name whose labels
// include want (name=value pairs); histograms give their count.
func sample(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsLiveCluster runs a real 3-node cluster on 127.0.0.1, drives
// writes, reads and a failed write through it, and checks that /metrics
// exposes the alerting metrics with values that moved, and that the
// exposition passes promlint.
func TestMetricsLiveCluster(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	putAll(t, c, "m", 50)
	l := c.leader()
	ctx := ctxT(t, 10*time.Second)
	if _, err := l.Do(ctx, &wire.ClientRequest{Op: wire.OpGet, Key: []byte("m1"), Flags: wire.FlagStale}); err != nil {
		t.Fatal(err)
	}
	var follower *Node
	for _, n := range c.nodes {
		if n != l {
			follower = n
			break
		}
	}
	// A write to a follower is refused: a proposal failed as not_leader.
	if r, err := follower.Do(ctx, &wire.ClientRequest{Op: wire.OpPut, Key: []byte("x"), Value: []byte("y")}); err != nil || r.Status != wire.StatusNotLeader {
		t.Fatalf("put on a follower: %+v %v", r, err)
	}

	// Heartbeat round trips show up on the leader for both followers
	// within a few ticks.
	var fams map[string]*dto.MetricFamily
	var body []byte
	waitFor(t, 10*time.Second, "peer RTT for both followers", func() bool {
		fams, body = scrape(t, l)
		f := fams["raftpipe_peer_round_trip_time_seconds"]
		return f != nil && len(f.Metric) == 2
	})
	for _, tc := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"raftpipe_proposal_apply_duration_seconds", nil, 1},
		{"raftpipe_apply_batch_duration_seconds", nil, 1},
		{"raftpipe_leader_changes_seen_total", nil, 1},
		{"raftpipe_client_requests_total", []string{"op", "put", "status", "ok"}, 50},
		{"raftpipe_client_requests_total", []string{"op", "get_stale", "status", "ok"}, 1},
		{"raftpipe_proposals_failed_total", []string{"reason", "busy"}, 0},
		{"raftpipe_snapshots_sent_total", []string{"result", "ok"}, 0},
		{"raftpipe_snapshot_sent_bytes_total", nil, 0},
		{"raftpipe_snapshot_send_duration_seconds", nil, 0},
		{"raftpipe_snapshots_received_total", []string{"result", "error"}, 0},
		{"raftpipe_snapshot_received_bytes_total", nil, 0},
		{"raftpipe_snapshot_receive_duration_seconds", nil, 0},
		{"raftpipe_elections_started_total", []string{"kind", "pre_vote"}, 0},
		{"raftpipe_inbox_dropped_total", nil, 0},
		{"raftpipe_has_leader", nil, 1},
		{"raftpipe_max_pending_proposals", nil, DefaultMaxPendingProposals},
		{"raftpipe_wal_fsync_seconds", nil, 1},
	} {
		v, ok := sample(fams, tc.name, tc.labels...)
		if !ok || v < tc.min {
			t.Errorf("leader: %s%v = %v (present %v), want >= %v", tc.name, tc.labels, v, ok, tc.min)
		}
	}
	// Someone campaigned for real to get the first leader.
	votes := 0.0
	for _, n := range c.nodes {
		f, _ := scrape(t, n)
		v, _ := sample(f, "raftpipe_elections_started_total", "kind", "vote")
		votes += v
	}
	if votes < 1 {
		t.Errorf("elections_started_total{kind=vote} summed over the cluster = %v, want >= 1", votes)
	}
	ff, _ := scrape(t, follower)
	if v, _ := sample(ff, "raftpipe_proposals_failed_total", "reason", "not_leader"); v < 1 {
		t.Errorf("follower: proposals_failed_total{reason=not_leader} = %v, want >= 1", v)
	}
	if v, _ := sample(ff, "raftpipe_client_requests_total", "op", "put", "status", "not_leader"); v < 1 {
		t.Errorf("follower: client_requests_total{op=put,status=not_leader} = %v, want >= 1", v)
	}

	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestObserveReadyCountsCampaigns drives observeReady with the Readys a
// node sees: a pre-vote, a split vote and a re-election, then leadership.
func TestObserveReadyCountsCampaigns(t *testing.T) {
	var c counters
	ready := func(role raft.Role, lead, term uint64) *raft.Ready {
		rd := &raft.Ready{HardState: wire.HardState{Term: term}}
		if role != c.role || lead != c.lead {
			rd.SoftState = &raft.SoftState{Role: role, Lead: lead}
		}
		return rd
	}
	for _, step := range []struct {
		role       raft.Role
		lead, term uint64
	}{
		{raft.RoleFollower, 2, 1},     // leader 2 seen: change 1
		{raft.RoleFollower, 0, 1},     // leader lost
		{raft.RolePreCandidate, 0, 1}, // pre-vote 1
		{raft.RoleCandidate, 0, 2},    // election 1
		{raft.RoleCandidate, 0, 3},    // split vote, campaign again: election 2
		{raft.RoleLeader, 1, 3},       // leader 1: change 2
		{raft.RoleFollower, 3, 4},     // a later leader: change 3, no election of ours
	} {
		c.observeReady(ready(step.role, step.lead, step.term))
	}
	if got := c.leaderChanges.Load(); got != 3 {
		t.Errorf("leader changes %d, want 3", got)
	}
	if pre, vote := c.elections[0].Load(), c.elections[1].Load(); pre != 1 || vote != 2 {
		t.Errorf("elections pre_vote %d vote %d, want 1 and 2", pre, vote)
	}
}

// TestApplySampler: one batch is timed at a time, and an index taken by
// another leader's entry is not.
func TestApplySampler(t *testing.T) {
	var s applySampler
	var h durationHist[fastBuckets]
	ents := func(first, last, term uint64) []wire.Entry {
		var es []wire.Entry
		for i := first; i <= last; i++ {
			es = append(es, wire.Entry{Index: i, Term: term})
		}
		return es
	}
	s.proposed(10, 2)
	s.proposed(20, 2) // ignored: 10 is in flight
	s.applied(ents(1, 9, 2), &h)
	if count(&h) != 0 {
		t.Fatal("timed before the sampled index applied")
	}
	s.applied(ents(10, 12, 2), &h)
	if count(&h) != 1 {
		t.Fatalf("count %d after the sampled index applied, want 1", count(&h))
	}
	s.proposed(13, 2)
	s.applied(ents(13, 13, 3), &h) // another leader's entry at 13
	if count(&h) != 1 || s.index.Load() != 0 {
		t.Fatalf("overwritten sample timed (count %d) or kept (index %d)", count(&h), s.index.Load())
	}
}

func count[B bucketSet](h *durationHist[B]) uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// TestDurationHistBuckets: bucket edges are inclusive upper bounds and
// the exposition is cumulative.
func TestDurationHistBuckets(t *testing.T) {
	var h durationHist[fastBuckets]
	for _, d := range []time.Duration{0, 50 * time.Microsecond, 51 * time.Microsecond, time.Hour} {
		h.observe(d)
	}
	var m dto.Metric
	if err := h.metric(descApplyBatch).Write(&m); err != nil {
		t.Fatal(err)
	}
	hist := m.Histogram
	if hist.GetSampleCount() != 4 {
		t.Fatalf("count %d", hist.GetSampleCount())
	}
	got := map[string]uint64{}
	for _, b := range hist.Bucket {
		got[strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)] = b.GetCumulativeCount()
	}
	if got["5e-05"] != 2 || got["0.0001"] != 3 || got["10"] != 3 {
		t.Fatalf("buckets %v", got)
	}
	if s := fmt.Sprint(hist.GetSampleSum()); !strings.HasPrefix(s, "3600.0001") {
		t.Fatalf("sum %s", s)
	}
}
