package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminRequestTimeout bounds one admin HTTP request's wait on the node.
const adminRequestTimeout = 30 * time.Second

// AdminHandler is AdminHandlerWith(AdminAuth{}): the open reads are
// served, every privileged endpoint is refused (403).
func (n *Node) AdminHandler() http.Handler { return n.AdminHandlerWith(AdminAuth{}) }

// AdminHandlerWith serves the admin port under auth's policy (adminauth.go):
//
//	GET  /status                      JSON Status (raftbench reads follower lag here)    open read
//	GET  /stages[?reset=1]            JSON StageStats (commit latency by stage);        open read
//	                                  reset=1 starts a new window
//	GET  /metrics                     Prometheus metrics                                 open read
//	GET  /debug/pprof/...             Go profiles                                        privileged
//	POST /admin/add?id=&peer=&client=[&learner=1]   add a member                         privileged
//	POST /admin/remove?id=            remove a member                                    privileged
//	POST /admin/transfer?to=          transfer leadership                                privileged
//	GET  /admin/snapshot              kv snapshot archive, leader only (backup.go)       privileged
func (n *Node) AdminHandlerWith(auth AdminAuth) http.Handler {
	return newAdminGuard(auth, &n.metrics.adminRefused, n.adminMux())
}

// adminMux routes the admin endpoints, with no access control.
func (n *Node) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), adminRequestTimeout)
		defer cancel()
		st, err := n.Status(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("GET /stages", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(n.StageStats(r.URL.Query().Get("reset") == "1"))
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{n: n})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /admin/snapshot", n.serveSnapshot(&snapshotStreams{}))
	mux.HandleFunc("POST /admin/add", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseUint(r.URL.Query().Get("id"), 10, 64)
		if err != nil {
			http.Error(w, "id: "+err.Error(), http.StatusBadRequest)
			return
		}
		m := Member{ID: id, PeerAddr: r.URL.Query().Get("peer"), ClientAddr: r.URL.Query().Get("client")}
		n.adminReply(w, r, func(ctx context.Context) error { return n.AddMember(ctx, m, r.URL.Query().Get("learner") == "1") })
	})
	mux.HandleFunc("POST /admin/remove", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseUint(r.URL.Query().Get("id"), 10, 64)
		if err != nil {
			http.Error(w, "id: "+err.Error(), http.StatusBadRequest)
			return
		}
		n.adminReply(w, r, func(ctx context.Context) error { return n.RemoveMember(ctx, id) })
	})
	mux.HandleFunc("POST /admin/transfer", func(w http.ResponseWriter, r *http.Request) {
		to, err := strconv.ParseUint(r.URL.Query().Get("to"), 10, 64)
		if err != nil {
			http.Error(w, "to: "+err.Error(), http.StatusBadRequest)
			return
		}
		n.adminReply(w, r, func(ctx context.Context) error { return n.TransferLeadership(ctx, to) })
	})
	return mux
}

// adminReply runs op with a bounded context and writes "ok" or the error.
func (n *Node) adminReply(w http.ResponseWriter, r *http.Request, op func(context.Context) error) {
	ctx, cancel := context.WithTimeout(r.Context(), adminRequestTimeout)
	defer cancel()
	if err := op(ctx); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrNotLeader) {
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.Write([]byte("ok\n"))
}

// collector computes the node's metrics at scrape time from Status, the
// WAL's stats and the counters.
type collector struct{ n *Node }

var (
	descTerm        = prometheus.NewDesc("raftpipe_term", "Current Raft term.", nil, nil)
	descRole        = prometheus.NewDesc("raftpipe_is_leader", "1 if this node is the leader.", nil, nil)
	descCommit      = prometheus.NewDesc("raftpipe_commit_index", "Commit index.", nil, nil)
	descApplied     = prometheus.NewDesc("raftpipe_applied_index", "Applied index.", nil, nil)
	descLast        = prometheus.NewDesc("raftpipe_last_index", "Last log index.", nil, nil)
	descMatch       = prometheus.NewDesc("raftpipe_follower_match_index", "Leader's view of a follower's match index.", []string{"follower"}, nil)
	descLag         = prometheus.NewDesc("raftpipe_follower_lag_entries", "Entries a follower trails the leader's last index.", []string{"follower"}, nil)
	descPending     = prometheus.NewDesc("raftpipe_pending_proposals", "Writes waiting to apply.", nil, nil)
	descInbox       = prometheus.NewDesc("raftpipe_inbox_depth", "Peer messages queued for the node loop.", nil, nil)
	descPropQ       = prometheus.NewDesc("raftpipe_proposal_queue_depth", "Proposals queued for the node loop.", nil, nil)
	descApplyQ      = prometheus.NewDesc("raftpipe_apply_queue_depth", "Batches queued for the apply goroutine.", nil, nil)
	descAppliedN    = prometheus.NewDesc("raftpipe_applied_entries_total", "Entries applied.", nil, nil)
	descBusy        = prometheus.NewDesc("raftpipe_busy_total", "Requests refused as busy.", nil, nil)
	descDropped     = prometheus.NewDesc("raftpipe_inbox_dropped_total", "Peer messages dropped on a full inbox.", nil, nil)
	descWALBatches  = prometheus.NewDesc("raftpipe_wal_batches_total", "WAL write batches.", nil, nil)
	descWALEntries  = prometheus.NewDesc("raftpipe_wal_entries_total", "WAL entries written.", nil, nil)
	descWALBytes    = prometheus.NewDesc("raftpipe_wal_bytes_total", "WAL bytes written.", nil, nil)
	descWALSync     = prometheus.NewDesc("raftpipe_wal_fsync_seconds", "WAL fsync latency.", nil, nil)
	descBatchSize   = prometheus.NewDesc("raftpipe_wal_entries_per_batch", "Average entries per WAL batch since start.", nil, nil)
	descCompactions = prometheus.NewDesc("raftpipe_compactions_total", "Log compactions.", nil, nil)
	descUnknownGrp  = prometheus.NewDesc("raftpipe_peer_messages_unknown_group_total",
		"Peer messages and snapshots dropped because they named a Raft group this node does not host.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTerm, descRole, descCommit, descApplied, descLast, descMatch, descLag,
		descPending, descInbox, descPropQ, descApplyQ, descAppliedN, descBusy, descDropped, descWALBatches,
		descWALEntries, descWALBytes, descWALSync, descBatchSize, descCompactions, descUnknownGrp} {
		ch <- d
	}
	for _, d := range countersDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := n.Status(ctx); err == nil {
		gauge(descTerm, float64(st.Term))
		leader := 0.0
		if st.Role == "leader" {
			leader = 1
		}
		gauge(descRole, leader)
		gauge(descCommit, float64(st.Commit))
		gauge(descApplied, float64(st.Applied))
		gauge(descLast, float64(st.LastIndex))
		for id, f := range st.Followers {
			l := strconv.FormatUint(id, 10)
			gauge(descMatch, float64(f.Match), l)
			gauge(descLag, float64(f.LagEntries), l)
		}
	}
	gauge(descPending, float64(n.r0.ap.pending.Load()))
	gauge(descInbox, float64(len(n.r0.inbox)))
	gauge(descPropQ, float64(len(n.r0.propc)))
	gauge(descApplyQ, float64(len(n.r0.ap.tasks)))
	counter(descAppliedN, float64(n.metrics.applied.Load()))
	counter(descBusy, float64(n.metrics.busy.Load()))
	counter(descDropped, float64(n.metrics.inboxDropped.Load()))
	counter(descCompactions, float64(n.metrics.compactions.Load()))
	counter(descUnknownGrp, float64(n.unknownGroup.count.Load()))
	n.metrics.collect(n, ch)
	ws := n.wal.Stats()
	counter(descWALBatches, float64(ws.Batches))
	counter(descWALEntries, float64(ws.Entries))
	counter(descWALBytes, float64(ws.Bytes))
	if ws.Batches > 0 {
		gauge(descBatchSize, float64(ws.Entries)/float64(ws.Batches))
	}
	buckets := map[float64]uint64{}
	var cum, count uint64
	var sum float64
	for i, b := range ws.SyncLatency.Buckets {
		cum += b.Count
		if i < len(ws.SyncLatency.Buckets)-1 { // the last bucket is +Inf
			buckets[b.UpperBound.Seconds()] = cum
		}
	}
	count = ws.SyncLatency.Count
	sum = ws.SyncLatency.Sum.Seconds()
	ch <- prometheus.MustNewConstHistogram(descWALSync, count, sum, buckets)
}
