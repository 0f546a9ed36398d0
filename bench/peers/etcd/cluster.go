package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/raftpipe/raftpipe/internal/loopback"
)

const (
	// maxNodes bounds -nodes.
	maxNodes = 7
	// readyTimeout bounds the wait for every member to answer and agree on
	// a leader.
	readyTimeout = 60 * time.Second
	// readyPollInterval is how often the ready wait re-checks.
	readyPollInterval = 50 * time.Millisecond
	// statusTimeout bounds one Status call.
	statusTimeout = 2 * time.Second
	// dialTimeout bounds establishing a client connection.
	dialTimeout = 5 * time.Second
	// stopGrace is how long members get to exit after SIGTERM before they
	// are killed. The data is thrown away, so a clean stop buys nothing
	// but the check that etcd did not crash; the last member to stop has
	// no quorum and would otherwise wait about 5 s for its peers.
	stopGrace = 2 * time.Second
	// logTailBytes is how much of a failed member's log is shown.
	logTailBytes = 2048
)

// clusterOptions are the knobs main exposes as flags.
type clusterOptions struct {
	// nodes is the cluster size.
	nodes int
	// parentDir holds the temporary data directory ("" = os.TempDir()).
	parentDir string
	// memberCmd is the program and leading arguments that run one etcd
	// member; the member's etcd flags are appended. main uses this binary
	// with the "member" argument.
	memberCmd []string
}

// member is one etcd server process.
type member struct {
	name               string
	clientURL, peerURL string
	dataDir, logPath   string
	cmd                *exec.Cmd
	// exited is closed when the process has been waited for; waitErr is
	// its exit status then.
	exited  chan struct{}
	waitErr error
	// status is a client connected to this member alone, for Status
	// calls (clientv3's Maintenance.Status dials a new connection per
	// call, too costly every 100 ms).
	status    *clientv3.Client
	statusRPC pb.MaintenanceClient
}

// cluster owns the member processes and their temporary directory.
type cluster struct {
	dir     string
	members []*member
}

// startCluster starts opts.nodes etcd members on 127.0.0.1 as a new
// cluster and waits until each answers Status and they agree on a leader.
func startCluster(ctx context.Context, opts clusterOptions) (c *cluster, err error) {
	if opts.nodes < 1 || opts.nodes > maxNodes {
		return nil, fmt.Errorf("nodes %d not in 1..%d", opts.nodes, maxNodes)
	}
	dir, err := os.MkdirTemp(opts.parentDir, "etcd-peer-*")
	if err != nil {
		return nil, err
	}
	c = &cluster{dir: dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.close())
		}
	}()
	var initial []string
	for i := 1; i <= opts.nodes; i++ {
		client, err1 := loopback.Reserve()
		peer, err2 := loopback.Reserve()
		if err := errors.Join(err1, err2); err != nil {
			return c, err
		}
		m := &member{
			name:      fmt.Sprintf("m%d", i),
			clientURL: "http://" + client,
			peerURL:   "http://" + peer,
			exited:    make(chan struct{}),
		}
		m.dataDir = filepath.Join(dir, m.name)
		m.logPath = filepath.Join(dir, m.name+".log")
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	token := filepath.Base(dir) // unique per run, so members of an old run never join
	for _, m := range c.members {
		if err := m.start(opts.memberCmd, strings.Join(initial, ","), token); err != nil {
			return c, err
		}
	}
	for _, m := range c.members {
		m.status, err = clientv3.New(clientv3.Config{
			Endpoints: []string{m.clientURL}, DialTimeout: dialTimeout, Logger: zap.NewNop(),
		})
		if err != nil {
			return c, fmt.Errorf("status client for %s: %w", m.name, err)
		}
		m.statusRPC = pb.NewMaintenanceClient(m.status.ActiveConnection())
	}
	if _, err := c.waitReady(ctx); err != nil {
		return c, err
	}
	return c, nil
}

// start runs the member's process with etcd's defaults apart from the
// addresses, names and log level. fsync stays on (etcd's default).
func (m *member) start(memberCmd []string, initialCluster, token string) error {
	logf, err := os.Create(m.logPath)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	args := append(append([]string{}, memberCmd[1:]...),
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", initialCluster,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", token,
		// warn, as for the hashicorp peer: etcd's info level logs on
		// every snapshot and compaction, not on every write.
		"--log-level", "warn",
	)
	m.cmd = exec.Command(memberCmd[0], args...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("start member %s: %w", m.name, err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.exited)
	}()
	return nil
}

// waitReady polls Status on every member until all answer and name the
// same leader; it returns the leader.
func (c *cluster) waitReady(ctx context.Context) (*member, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(readyPollInterval)
	defer tick.Stop()
	for {
		leader, err := c.leader(ctx)
		if err == nil {
			return leader, nil
		}
		for _, m := range c.members {
			select {
			case <-m.exited:
				return nil, fmt.Errorf("member %s exited (%v) before the cluster was ready; its log ends:\n%s", m.name, m.waitErr, tail(m.logPath))
			default:
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster not ready: %w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// leader asks every member for its status and returns the member they all
// name as leader.
func (c *cluster) leader(ctx context.Context) (*member, error) {
	var leaderID uint64
	byID := map[uint64]*member{}
	for _, m := range c.members {
		st, err := m.statusOf(ctx)
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", m.name, err)
		}
		byID[st.Header.MemberId] = m
		switch {
		case st.Leader == 0:
			return nil, fmt.Errorf("%s has no leader", m.name)
		case leaderID != 0 && st.Leader != leaderID:
			return nil, fmt.Errorf("members disagree on the leader")
		}
		leaderID = st.Leader
	}
	if l := byID[leaderID]; l != nil {
		return l, nil
	}
	return nil, fmt.Errorf("leader %x is not a member", leaderID)
}

// statusOf calls Status on this member over its own connection.
func (m *member) statusOf(ctx context.Context) (*pb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	return m.statusRPC.Status(ctx, &pb.StatusRequest{})
}

// pids lists the member processes, for CPU accounting.
func (c *cluster) pids() []int {
	var out []int
	for _, m := range c.members {
		out = append(out, m.cmd.Process.Pid)
	}
	return out
}

// close stops every member (SIGTERM, then SIGKILL after stopGrace) and
// removes the data directory.
func (c *cluster) close() error {
	var errs []error
	for _, m := range c.members {
		if m.status != nil {
			errs = append(errs, m.status.Close())
		}
		if m.cmd != nil && m.cmd.Process != nil {
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(stopGrace)
	for _, m := range c.members {
		if m.cmd == nil || m.cmd.Process == nil {
			continue
		}
		select {
		case <-m.exited:
		case <-time.After(time.Until(deadline)):
			_ = m.cmd.Process.Kill()
			<-m.exited
		}
	}
	errs = append(errs, os.RemoveAll(c.dir))
	return errors.Join(errs...)
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > logTailBytes {
		_, _ = f.Seek(-logTailBytes, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
