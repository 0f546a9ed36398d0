package main

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftpipe/raftpipe/bench"
)

// putTarget sends each write as a clientv3 Put to the leader. Logical
// clients share conns gRPC connections round-robin (Op.Client % conns), as
// raftbench's client mode shares its connections; requests on one
// connection are multiplexed HTTP/2 streams.
type putTarget struct {
	clients []*clientv3.Client
}

// newPutTarget dials conns clients to endpoint.
func newPutTarget(endpoint string, conns int) (*putTarget, error) {
	t := &putTarget{}
	for i := 0; i < conns; i++ {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: []string{endpoint}, DialTimeout: dialTimeout, Logger: zap.NewNop(),
		})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("dial %s: %w", endpoint, err), t.close())
		}
		t.clients = append(t.clients, cli)
	}
	return t, nil
}

// Do implements bench.Target. The key and value are copied into strings
// (clientv3's API takes strings), so the driver may reuse its buffers.
func (t *putTarget) Do(ctx context.Context, op *bench.Op) error {
	if !op.Write {
		return errors.New("etcd peer: reads are not supported")
	}
	_, err := t.clients[op.Client%len(t.clients)].Put(ctx, string(op.Key), string(op.Value))
	return err
}

// ErrorKind implements bench.ErrorClassifier for etcd's errors.
func (t *putTarget) ErrorKind(err error) string {
	switch {
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrLeaderChanged), errors.Is(err, rpctypes.ErrNotLeader):
		return bench.KindNotLeader
	case errors.Is(err, rpctypes.ErrTooManyRequests):
		return bench.KindBusy
	case errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail),
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost):
		return bench.KindTimeout
	case errors.Is(err, rpctypes.ErrNoSpace):
		return "no_space"
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.DeadlineExceeded:
			return bench.KindTimeout
		case codes.Canceled:
			return bench.KindCanceled
		case codes.Unavailable:
			return "unavailable"
		}
	}
	return bench.ErrorKind(err)
}

func (t *putTarget) close() error {
	var errs []error
	for _, c := range t.clients {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// lagSource samples replication progress with Status on every member.
// etcd does not expose a follower's durable log index to clients; the
// closest is each member's raft commit index (Status.RaftIndex), so a
// follower's "index" here is its commit index, which trails the leader's
// by about one AppendEntries round trip. LeaderLast and LeaderCommit are
// both the leader's commit index.
type lagSource struct {
	c *cluster
}

// SampleLag implements bench.LagSource.
func (l *lagSource) SampleLag(ctx context.Context) (bench.LagSample, error) {
	s := bench.LagSample{Followers: map[uint64]uint64{}}
	var leaderID uint64
	byID := map[uint64]uint64{}
	for i, m := range l.c.members {
		st, err := m.statusOf(ctx)
		if err != nil {
			return bench.LagSample{}, fmt.Errorf("status of %s: %w", m.name, err)
		}
		if st.Header.MemberId == st.Leader {
			leaderID = st.Leader
			s.LeaderLast, s.LeaderCommit = st.RaftIndex, st.RaftIndex
			continue
		}
		byID[uint64(i+1)] = st.RaftIndex
	}
	if leaderID == 0 {
		return bench.LagSample{}, errors.New("no member is leader")
	}
	s.Followers = byID
	return s, nil
}
