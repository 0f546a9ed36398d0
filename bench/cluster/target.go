package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/raftpipe/raftpipe/bench"
	"github.com/raftpipe/raftpipe/raft/client"
	"github.com/raftpipe/raftpipe/raft/node"
	"github.com/raftpipe/raftpipe/wire"
)

// DirectTarget sends operations to the embedded leader through its Go API
// (node.Submit), without the client protocol: the like-for-like comparison
// with libraries benchmarked in-process. With many groups each operation
// goes to the node leading its key's group.
type DirectTarget struct {
	C *Cluster
}

// Do implements bench.Target.
func (t *DirectTarget) Do(ctx context.Context, op *bench.Op) error {
	l := t.C.LeaderFor(op.Key)
	if l == nil {
		var err error
		if l, err = t.C.WaitLeaderFor(ctx, op.Key); err != nil {
			return fmt.Errorf("%w: %w", bench.ErrNotLeader, err)
		}
	}
	req := wire.ClientRequest{Op: wire.OpPut, Key: op.Key, Value: op.Value}
	if !op.Write {
		req = wire.ClientRequest{Op: wire.OpGet, Key: op.Key}
		if op.Stale {
			req.Flags = wire.FlagStale
		}
	}
	resp, err := l.Do(ctx, &req)
	if err != nil {
		return err
	}
	return statusErr(resp.Status)
}

// statusErr maps a response status to the bench error kinds.
func statusErr(s wire.Status) error {
	switch s {
	case wire.StatusOK, wire.StatusNotFound:
		return nil
	case wire.StatusNotLeader:
		return bench.ErrNotLeader
	case wire.StatusBusy:
		return bench.ErrBusy
	}
	return fmt.Errorf("status %d", s)
}

// ClientTarget sends operations through raft/client over the client
// protocol; Conns clients (connections per node) are shared by all bench
// clients, so requests are pipelined on shared connections.
type ClientTarget struct {
	clients []*client.Client
}

// NewClientTarget dials addrs with conns independent clients.
func NewClientTarget(addrs []string, clusterID uint64, conns int) (*ClientTarget, error) {
	if conns <= 0 {
		conns = 1
	}
	t := &ClientTarget{}
	for i := 0; i < conns; i++ {
		c, err := client.New(client.Config{Addrs: addrs, ClusterID: clusterID, MaxInflight: 4096})
		if err != nil {
			t.Close()
			return nil, err
		}
		t.clients = append(t.clients, c)
	}
	return t, nil
}

// Do implements bench.Target.
func (t *ClientTarget) Do(ctx context.Context, op *bench.Op) error {
	c := t.clients[op.Client%len(t.clients)]
	var err error
	switch {
	case op.Write:
		_, err = c.Put(ctx, op.Key, op.Value)
	case op.Stale:
		_, _, err = c.GetStale(ctx, op.Key)
	default:
		_, _, err = c.Get(ctx, op.Key)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, client.ErrNotLeader):
		return fmt.Errorf("%w: %w", bench.ErrNotLeader, err)
	case errors.Is(err, client.ErrBusy):
		return fmt.Errorf("%w: %w", bench.ErrBusy, err)
	case errors.Is(err, client.ErrTimeout):
		return fmt.Errorf("%w: %w", bench.ErrTimeout, err)
	}
	return err
}

// Close closes every client.
func (t *ClientTarget) Close() error {
	var errs []error
	for _, c := range t.clients {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Lag samples follower lag from the embedded leader's status.
type Lag struct {
	C *Cluster
}

// SampleLag implements bench.LagSource.
func (l *Lag) SampleLag(ctx context.Context) (bench.LagSample, error) {
	ld := l.C.Leader()
	if ld == nil {
		return bench.LagSample{}, bench.ErrNotLeader
	}
	st, err := ld.Status(ctx)
	if err != nil {
		return bench.LagSample{}, err
	}
	return sampleFromStatus(st), nil
}

func sampleFromStatus(st node.Status) bench.LagSample {
	s := bench.LagSample{LeaderLast: st.LastIndex, LeaderCommit: st.Commit, Followers: map[uint64]uint64{}}
	for id, f := range st.Followers {
		s.Followers[id] = f.Match
	}
	return s
}

// HTTPLag samples follower lag from the admin /status endpoints of a
// remote cluster, using whichever node reports itself leader.
type HTTPLag struct {
	// AdminAddrs are host:port of the nodes' admin HTTP listeners.
	AdminAddrs []string
	// Client is the HTTP client (nil = one with a 2 s timeout).
	Client *http.Client
}

// SampleLag implements bench.LagSource.
func (h *HTTPLag) SampleLag(ctx context.Context) (bench.LagSample, error) {
	hc := h.Client
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Second}
	}
	var lastErr error = bench.ErrNotLeader
	for _, a := range h.AdminAddrs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a+"/status", nil)
		if err != nil {
			return bench.LagSample{}, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		var st node.Status
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			lastErr = err
			continue
		}
		if st.Role == "leader" {
			return sampleFromStatus(st), nil
		}
	}
	return bench.LagSample{}, lastErr
}
