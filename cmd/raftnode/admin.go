package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftpipe/raftpipe/raft/node"
)

// Admin client bounds.
const (
	// defaultAdminTimeout bounds one admin command end to end. The node
	// waits up to 30 s for a membership change to apply, so this is a
	// little longer to report the node's own answer rather than ours.
	defaultAdminTimeout = 40 * time.Second
	// maxAdminResponseBytes bounds a response body read into memory.
	maxAdminResponseBytes = 4 << 20
	// maxAdminTimeout bounds -timeout; an admin command that needs longer
	// is stuck, and a typo (-timeout 40000s) should not hang a script.
	maxAdminTimeout = time.Hour
	// transferPollInterval is how often `admin transfer` re-reads /status
	// while waiting for the new leader.
	transferPollInterval = 50 * time.Millisecond
)

// adminUsage is the admin subcommand's help.
const adminUsage = `Usage: raftnode admin [-addr HOST:PORT] [-timeout D] COMMAND [ARGS]

Commands (membership changes and transfers must go to the leader's admin port):
  status                      print the node's /status as indented JSON
  add ID PEER CLIENT          add node ID as a voter (or promote learner ID)
  add-learner ID PEER CLIENT  add node ID as a non-voting learner
  remove ID                   remove node ID from the cluster
  transfer ID                 hand leadership to node ID and wait until it leads
  snapshot save FILE          save a consistent backup of the leader's state to FILE
                              (a new file; raise -timeout for a large store)

PEER and CLIENT are the new node's advertised HOST:PORT addresses.

Credentials: against a node with TLS give -tls-cert, -tls-key and -tls-ca
(a client certificate from the cluster's CA; the admin port is HTTPS);
against a node without TLS give -admin-token-file (its token file).
status works without either unless the node runs with -admin-open-read=false.

Flags:
`

// adminCommand runs `raftnode admin ...` and returns the exit status.
func adminCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("raftnode admin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7102", "HOST:PORT of the node's admin HTTP server (its -admin-addr)")
	timeout := fs.Duration("timeout", defaultAdminTimeout, "bound on the whole command (Go duration)")
	tokenFile := fs.String("admin-token-file", "", "`FILE` with the node's bearer token (its -admin-token-file), for a node without TLS")
	tlsCert := fs.String("tls-cert", "", "PEM client certificate `FILE` from the cluster's CA, for a node with TLS (with -tls-key and -tls-ca); the admin port is then HTTPS")
	tlsKey := fs.String("tls-key", "", "PEM private key `FILE` for -tls-cert")
	tlsCA := fs.String("tls-ca", "", "PEM CA bundle `FILE` the node's certificate chains to")
	fs.Usage = func() {
		fmt.Fprint(stderr, adminUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if err := checkDialAddr(*addr); err != nil {
		fmt.Fprintf(stderr, "raftnode admin: -addr: %v\n", err)
		return exitUsage
	}
	if *timeout <= 0 || *timeout > maxAdminTimeout {
		fmt.Fprintf(stderr, "raftnode admin: -timeout %v: must be in (0s, %v]\n", *timeout, maxAdminTimeout)
		return exitUsage
	}
	a, err := newAdminClient(*addr, *timeout, *tokenFile, *tlsCert, *tlsKey, *tlsCA)
	if err != nil {
		fmt.Fprintf(stderr, "raftnode admin: %v\n", err)
		return exitUsage
	}
	defer a.hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	err = a.run(ctx, fs.Args(), stdout)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "raftnode admin: %v\n\n", err)
		fs.Usage()
		return exitUsage
	default:
		fmt.Fprintf(stderr, "raftnode admin: %v\n", err)
		return exitFailure
	}
}

// adminClient talks to one node's admin HTTP server.
type adminClient struct {
	// base is "http://host:port", or "https://host:port" with TLS.
	base string
	// hc carries the requests; its Timeout is the command's bound.
	hc *http.Client
	// token, if set, is sent as "Authorization: Bearer <token>" with every
	// request (the node may restrict /status too: -admin-open-read=false).
	token []byte
}

// newAdminClient builds the client for the node at addr: HTTPS with a
// client certificate if the TLS flags are given, else plain HTTP with the
// bearer token if a token file is given. A node with TLS refuses a token,
// so the two are not combined. Errors wrap errUsage.
func newAdminClient(addr string, timeout time.Duration, tokenFile, cert, key, ca string) (*adminClient, error) {
	tlsCfg, err := loadTLSFlags(cert, key, ca)
	if err != nil {
		return nil, err
	}
	a := &adminClient{base: "http://" + addr, hc: &http.Client{Timeout: timeout}}
	switch {
	case tlsCfg != nil && tokenFile != "":
		return nil, usageErrorf("-admin-token-file and the TLS flags do not go together: a node with TLS authenticates admin requests by client certificate, one without by token")
	case tlsCfg != nil:
		a.base = "https://" + addr
		a.hc.Transport = &http.Transport{TLSClientConfig: tlsCfg}
	case tokenFile != "":
		if a.token, err = readAdminToken(tokenFile); err != nil {
			return nil, usageErrorf("-admin-token-file: %v", err)
		}
	}
	return a, nil
}

// run executes one admin command.
func (a *adminClient) run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageErrorf("missing command")
	}
	cmd, args := args[0], args[1:]
	want := map[string]int{"status": 0, "add": 3, "add-learner": 3, "remove": 1, "transfer": 1, "snapshot": 2}
	n, ok := want[cmd]
	if !ok {
		return usageErrorf("unknown command %q", cmd)
	}
	if len(args) != n {
		return usageErrorf("%s takes %d argument(s), got %d", cmd, n, len(args))
	}
	if cmd == "snapshot" {
		if args[0] != "save" {
			return usageErrorf("snapshot: unknown action %q (snapshot save FILE)", args[0])
		}
		return a.saveSnapshot(ctx, args[1], stdout)
	}
	if cmd == "status" {
		body, err := a.do(ctx, http.MethodGet, "/status")
		if err != nil {
			return err
		}
		var out bytes.Buffer
		if err := json.Indent(&out, body, "", "  "); err != nil {
			return fmt.Errorf("status from %s is not JSON: %w", a.base, err)
		}
		out.WriteByte('\n')
		_, err = stdout.Write(out.Bytes())
		return err
	}
	id, err := parseID(args[0])
	if err != nil {
		return usageErrorf("%s: %v", cmd, err)
	}
	switch cmd {
	case "add", "add-learner":
		return a.add(ctx, id, args[1], args[2], cmd == "add-learner", stdout)
	case "remove":
		st, err := a.requireLeader(ctx)
		if err != nil {
			return err
		}
		if !slices.Contains(st.Voters, id) && !slices.Contains(st.Learners, id) {
			return fmt.Errorf("node %d is not a member (voters %v, learners %v)", id, st.Voters, st.Learners)
		}
		if _, err := a.do(ctx, http.MethodPost, "/admin/remove?"+url.Values{"id": {strconv.FormatUint(id, 10)}}.Encode()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed node %d\n", id)
		return nil
	default: // transfer
		return a.transfer(ctx, id, stdout)
	}
}

// add adds (or promotes) a member after checking the node leads.
func (a *adminClient) add(ctx context.Context, id uint64, peer, client string, learner bool, stdout io.Writer) error {
	if err := checkDialAddr(peer); err != nil {
		return usageErrorf("peer address: %v", err)
	}
	if err := checkDialAddr(client); err != nil {
		return usageErrorf("client address: %v", err)
	}
	st, err := a.requireLeader(ctx)
	if err != nil {
		return err
	}
	isVoter, isLearner := slices.Contains(st.Voters, id), slices.Contains(st.Learners, id)
	switch {
	case isVoter:
		return fmt.Errorf("node %d is already a voter", id)
	case learner && isLearner:
		return fmt.Errorf("node %d is already a learner", id)
	}
	q := url.Values{"id": {strconv.FormatUint(id, 10)}, "peer": {peer}, "client": {client}}
	if learner {
		q.Set("learner", "1")
	}
	if _, err := a.do(ctx, http.MethodPost, "/admin/add?"+q.Encode()); err != nil {
		return err
	}
	switch {
	case learner:
		fmt.Fprintf(stdout, "added node %d as a learner; promote it with `add` once /status shows it caught up\n", id)
	case isLearner:
		lag := st.Followers[id].LagEntries
		fmt.Fprintf(stdout, "promoted learner %d to voter (it trailed the leader by %d entries)\n", id, lag)
	default:
		fmt.Fprintf(stdout, "added node %d as a voter\n", id)
	}
	return nil
}

// transfer asks the leader to hand off to id and waits until this node
// reports id as the leader.
func (a *adminClient) transfer(ctx context.Context, id uint64, stdout io.Writer) error {
	st, err := a.requireLeader(ctx)
	if err != nil {
		return err
	}
	if st.ID == id {
		fmt.Fprintf(stdout, "node %d already leads\n", id)
		return nil
	}
	if !slices.Contains(st.Voters, id) {
		return fmt.Errorf("node %d is not a voter (voters %v); only a voter can lead", id, st.Voters)
	}
	if _, err := a.do(ctx, http.MethodPost, "/admin/transfer?"+url.Values{"to": {strconv.FormatUint(id, 10)}}.Encode()); err != nil {
		return err
	}
	tick := time.NewTicker(transferPollInterval)
	defer tick.Stop()
	for {
		st, err := a.status(ctx)
		if err == nil && st.Leader == id {
			fmt.Fprintf(stdout, "node %d now leads (term %d)\n", id, st.Term)
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("transfer to node %d requested, but it did not become leader in time (is it caught up and reachable?)", id)
		}
	}
}

// status fetches and decodes /status.
func (a *adminClient) status(ctx context.Context) (node.Status, error) {
	var st node.Status
	body, err := a.do(ctx, http.MethodGet, "/status")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("status from %s is not valid: %w", a.base, err)
	}
	return st, nil
}

// requireLeader returns the node's status if it leads, or an error that
// names the leader to ask instead.
func (a *adminClient) requireLeader(ctx context.Context) (node.Status, error) {
	st, err := a.status(ctx)
	if err != nil {
		return st, err
	}
	if st.Role == "leader" {
		return st, nil
	}
	if st.Leader != 0 && st.Leader != st.ID {
		return st, fmt.Errorf("node %d at %s is not the leader (it is a %s); node %d leads: run this against node %d's admin address",
			st.ID, a.base, st.Role, st.Leader, st.Leader)
	}
	return st, fmt.Errorf("node %d at %s is not the leader and knows of none (election in progress or no quorum); retry shortly", st.ID, a.base)
}

// do sends one request and returns the body of a 2xx answer; any other
// status becomes an error carrying the node's message.
func (a *adminClient) do(ctx context.Context, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, nil)
	if err != nil {
		return nil, err
	}
	if a.token != nil {
		req.Header.Set("Authorization", "Bearer "+string(a.token))
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin request to %s failed: %w", a.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("reading answer from %s: %w", a.base, err)
	}
	if resp.StatusCode/100 == 2 {
		return body, nil
	}
	msg := strings.TrimSpace(string(body))
	switch resp.StatusCode {
	case http.StatusConflict:
		return nil, fmt.Errorf("node at %s is not the leader: %s", a.base, msg)
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("%s %s: %s: %s (see docs/deploy.md, \"The admin port\")", method, path, resp.Status, msg)
	}
	return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
}
