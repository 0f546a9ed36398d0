package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/raftpipe/raftpipe/bench"
	"github.com/raftpipe/raftpipe/raft/node"
)

// The lag sources also report the stage breakdown (bench.StageSource):
// they are raftbench's view into the nodes, the embedded one directly and
// the remote one through each node's admin endpoint (GET /stages).

// ResetStages implements bench.StageSource: a new window on every node.
func (l *Lag) ResetStages(ctx context.Context) error {
	for _, n := range l.C.Nodes {
		n.StageStats(true)
	}
	return nil
}

// Stages implements bench.StageSource from the current leader's sampled
// writes and every node's WAL fsync.
func (l *Lag) Stages(ctx context.Context) (*bench.StageBreakdown, error) {
	ld := l.C.Leader()
	if ld == nil {
		return nil, bench.ErrNotLeader
	}
	views := make([]nodeStages, 0, len(l.C.Nodes))
	for _, n := range l.C.Nodes {
		views = append(views, nodeStages{id: n.ID(), leader: n == ld, st: n.StageStats(false)})
	}
	return breakdown(views), nil
}

// nodeStages is one node's StageStats and role.
type nodeStages struct {
	id     uint64
	leader bool
	st     node.StageStats
}

// breakdown assembles the report's view: the leader's stages and
// follower round trips, and every node's fsync.
func breakdown(views []nodeStages) *bench.StageBreakdown {
	b := &bench.StageBreakdown{}
	for _, v := range views {
		role := "follower"
		if v.leader {
			role = "leader"
			b.Leader, b.SampleEvery = v.id, v.st.SampleEvery
			b.OutOfOrder, b.Dropped = v.st.OutOfOrder, v.st.Dropped
			for _, s := range v.st.Stages {
				b.Stages = append(b.Stages, stageStat(s))
			}
			for _, f := range v.st.Followers {
				b.Followers = append(b.Followers, bench.NodeStageStat{Node: f.ID, Role: "follower", StageStat: stageStat(f.StageStat)})
			}
		}
		b.Fsync = append(b.Fsync, bench.NodeStageStat{Node: v.id, Role: role, StageStat: stageStat(v.st.WALFsync)})
	}
	return b
}

func stageStat(s node.StageStat) bench.StageStat {
	return bench.StageStat{Name: s.Name, Count: s.Count, P50Us: s.P50Us, P99Us: s.P99Us, MaxUs: s.MaxUs, MeanUs: s.MeanUs, Approx: s.Approx}
}

// ResetStages implements bench.StageSource: GET /stages?reset=1 on every
// admin address.
func (h *HTTPLag) ResetStages(ctx context.Context) error {
	var errs []error
	for _, a := range h.AdminAddrs {
		var st node.StageStats
		if err := h.getJSON(ctx, a, "/stages?reset=1", &st); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stages implements bench.StageSource: GET /status and /stages on every
// admin address; the node whose status says leader supplies the stages.
func (h *HTTPLag) Stages(ctx context.Context) (*bench.StageBreakdown, error) {
	var views []nodeStages
	leader := false
	for _, a := range h.AdminAddrs {
		var st node.Status
		var ss node.StageStats
		if err := errors.Join(h.getJSON(ctx, a, "/status", &st), h.getJSON(ctx, a, "/stages", &ss)); err != nil {
			return nil, err
		}
		views = append(views, nodeStages{id: st.ID, leader: st.Role == "leader", st: ss})
		leader = leader || st.Role == "leader"
	}
	if !leader {
		return nil, bench.ErrNotLeader
	}
	return breakdown(views), nil
}

// getJSON decodes the JSON answer of GET http://addr+path into v.
func (h *HTTPLag) getJSON(ctx context.Context, addr, path string, v any) error {
	hc := h.Client
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s%s: %s", addr, path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s%s: %w", addr, path, err)
	}
	return nil
}
