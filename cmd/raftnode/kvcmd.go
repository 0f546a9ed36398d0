package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/raftpipe/raftpipe/raft/client"
	"github.com/raftpipe/raftpipe/raft/kv"
)

// Exit statuses of the kv subcommand, on top of exitOK and exitUsage. Each
// outcome a script must tell apart has its own: "no such key" is an answer,
// "unknown outcome" means look before retrying, and "failed" means the
// operation certainly did not happen (a read can simply be repeated).
const (
	// kvExitMiss: get found no key, or a cas comparison failed.
	kvExitMiss = 1
	// kvExitUnknown: a write was sent and no answer came back; it may or
	// may not have applied (now or later).
	kvExitUnknown = 3
	// kvExitFailed: any other failure: no node reachable, no leader, the
	// cluster busy for every retry, a read timed out, a server error. A
	// write that fails this way was not applied.
	kvExitFailed = 4
)

// Bounds of the kv subcommand.
const (
	// defaultKVTimeout bounds one kv command end to end: several election
	// timeouts, so a command issued during a fail-over still succeeds.
	defaultKVTimeout = 10 * time.Second
	// maxKVTimeout bounds -timeout, like the admin subcommand's.
	maxKVTimeout = time.Hour
	// maxKVClusterAddrs bounds -cluster; the client keeps at most 64.
	maxKVClusterAddrs = 32
)

// kvUsage is the kv subcommand's help.
const kvUsage = `Usage: raftnode kv [flags] COMMAND [flags] ARGS

Commands:
  put KEY VALUE          set KEY to VALUE
  get KEY                print KEY's value (raw bytes, no newline); linearizable unless -stale
  del KEY                delete KEY (deleting a missing key succeeds)
  cas KEY OLD NEW        set KEY to NEW if its value is OLD
  cas -absent KEY NEW    set KEY to NEW if KEY does not exist

VALUE, OLD or NEW given as - is read from stdin (raw bytes, at most one of
them). KEY is always literal and non-empty. Put -- before an argument that
starts with a dash.

Output: put, del and a successful cas print OK; get prints the value; a
failed cas prints the current value (empty if the key does not exist) and
says so on stderr. -json prints one JSON object instead; a key or value
that is not valid UTF-8 appears base64-encoded (standard alphabet, padded)
under the field name with a _base64 suffix (value_base64, current_base64,
key_base64).

Exit status: 0 done; 1 get found no key, or cas comparison failed; 2 usage
error; 3 outcome unknown (a write was sent but not answered: it may or may
not have applied); 4 any other failure (no node reachable, no leader, busy,
a read timed out; a write that fails so was not applied).

Flags:
`

// kvOptions are the kv subcommand's settings.
type kvOptions struct {
	// cluster is -cluster: client addresses of some or all nodes.
	cluster string
	// clusterID must match the nodes' -cluster-id.
	clusterID uint64
	// tlsCert, tlsKey and tlsCA enable mutual TLS, as for raftnode run.
	tlsCert, tlsKey, tlsCA string
	// timeout bounds the whole command.
	timeout time.Duration
	// json selects JSON output.
	json bool
	// stale makes get a local read of whichever node answers.
	stale bool
	// absent makes cas expect the key not to exist (no OLD argument).
	absent bool
}

// newKVFlagSet declares the kv flags, bound to o.
func newKVFlagSet(o *kvOptions, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("raftnode kv", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.cluster, "cluster", "127.0.0.1:7101", "client `HOST:PORT,...` of some or all nodes (their -client-addr); the leader is found from them")
	fs.Uint64Var(&o.clusterID, "cluster-id", 0, "the cluster's ID `N` (its nodes' -cluster-id; required)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM client certificate `FILE` for a TLS cluster (with -tls-key and -tls-ca)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key `FILE` for -tls-cert")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "PEM CA bundle `FILE` the nodes' certificates chain to")
	fs.DurationVar(&o.timeout, "timeout", defaultKVTimeout, "bound on the whole command (Go `DURATION`, at most 1h); a write cut off by it has an unknown outcome (exit 3)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of plain text")
	fs.BoolVar(&o.stale, "stale", false, "get only: read the local state of the node reached, without a leadership check (fast, may miss recent writes)")
	fs.BoolVar(&o.absent, "absent", false, "cas only: expect the key not to exist; the command is then cas KEY NEW")
	fs.Usage = func() {
		fmt.Fprint(stderr, kvUsage)
		fs.PrintDefaults()
	}
	return fs
}

// kvRequest is one parsed kv command.
type kvRequest struct {
	// op is put, get, del or cas.
	op string
	// key is the key; never empty.
	key []byte
	// value is put's VALUE or cas's NEW.
	value []byte
	// expect is cas's OLD (unused with -absent).
	expect []byte
}

// kvCommand runs `raftnode kv ...` and returns the exit status.
func kvCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o := &kvOptions{}
	fs := newKVFlagSet(o, stderr)
	req, err := parseKVArgs(fs, o, args, stdin)
	var reported *flagsReported
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &reported):
		return exitUsage // the flag package printed it, with the usage
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "raftnode kv: %v\n", err)
		return exitUsage
	case err != nil:
		fmt.Fprintf(stderr, "raftnode kv: %v\n", err)
		return kvExitFailed
	}
	tlsCfg, err := loadTLSFlags(o.tlsCert, o.tlsKey, o.tlsCA)
	if err != nil {
		fmt.Fprintf(stderr, "raftnode kv: %v\n", err)
		return exitUsage
	}
	cl, err := client.New(client.Config{Addrs: strings.Split(o.cluster, ","), ClusterID: o.clusterID, TLS: tlsCfg})
	if err != nil {
		fmt.Fprintf(stderr, "raftnode kv: %v\n", err)
		return exitUsage
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	return runKV(ctx, cl, o, req, stdout, stderr)
}

// flagsReported is a flag parsing error that the flag package has already
// printed together with the usage.
type flagsReported struct{ err error }

func (e *flagsReported) Error() string { return e.err.Error() }
func (e *flagsReported) Unwrap() error { return e.err }

// parseKVArgs parses flags (before and after the command), the command and
// its arguments, reading stdin for a "-" argument. Errors are flag.ErrHelp,
// *flagsReported, usage errors, or (reading stdin) anything else.
func parseKVArgs(fs *flag.FlagSet, o *kvOptions, args []string, stdin io.Reader) (*kvRequest, error) {
	if err := fs.Parse(args); err != nil {
		return nil, &flagsReported{err}
	}
	if fs.NArg() == 0 {
		return nil, usageErrorf("missing command (put, get, del or cas; see raftnode kv -help)")
	}
	req := &kvRequest{op: fs.Arg(0)}
	// Flags may follow the command too (raftnode kv get -stale KEY).
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return nil, &flagsReported{err}
	}
	pos := fs.Args()
	want := map[string]int{"put": 2, "get": 1, "del": 1, "cas": 3}
	n, ok := want[req.op]
	if !ok {
		return nil, usageErrorf("unknown command %q (put, get, del or cas)", req.op)
	}
	if req.op == "cas" && o.absent {
		n = 2
	}
	if o.stale && req.op != "get" {
		return nil, usageErrorf("-stale applies to get only")
	}
	if o.absent && req.op != "cas" {
		return nil, usageErrorf("-absent applies to cas only")
	}
	if len(pos) != n {
		shape := map[string]string{"put": "put KEY VALUE", "get": "get KEY", "del": "del KEY", "cas": "cas KEY OLD NEW"}[req.op]
		if req.op == "cas" && o.absent {
			shape = "cas -absent KEY NEW"
		}
		return nil, usageErrorf("%s takes %d argument(s), got %d: %s", req.op, n, len(pos), shape)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if pos[0] == "" {
		return nil, usageErrorf("%s: the key is empty", req.op)
	}
	if len(pos[0]) > kv.MaxKeyBytes {
		return nil, usageErrorf("%s: key of %d bytes is over the %d-byte limit", req.op, len(pos[0]), kv.MaxKeyBytes)
	}
	req.key = []byte(pos[0])
	stdinUsed := false
	value := func(arg, name string) ([]byte, error) {
		if arg != "-" {
			if len(arg) > kv.MaxValueBytes {
				return nil, usageErrorf("%s: %s of %d bytes is over the %d-byte limit", req.op, name, len(arg), kv.MaxValueBytes)
			}
			return []byte(arg), nil
		}
		if stdinUsed {
			return nil, usageErrorf("%s: only one argument can be read from stdin (-)", req.op)
		}
		stdinUsed = true
		b, err := io.ReadAll(io.LimitReader(stdin, kv.MaxValueBytes+1))
		if err != nil {
			return nil, fmt.Errorf("%s: reading %s from stdin: %w", req.op, name, err)
		}
		if len(b) > kv.MaxValueBytes {
			return nil, usageErrorf("%s: %s on stdin is over the %d-byte limit", req.op, name, kv.MaxValueBytes)
		}
		return b, nil
	}
	var err error
	switch {
	case req.op == "put":
		req.value, err = value(pos[1], "VALUE")
	case req.op == "cas" && o.absent:
		req.value, err = value(pos[1], "NEW")
	case req.op == "cas":
		if req.expect, err = value(pos[1], "OLD"); err == nil {
			req.value, err = value(pos[2], "NEW")
		}
	}
	if err != nil {
		return nil, err
	}
	return req, nil
}

// validate checks the flags that do not depend on the command.
func (o *kvOptions) validate() error {
	if o.clusterID == 0 {
		return usageErrorf("-cluster-id is required and must be non-zero (the nodes' -cluster-id)")
	}
	addrs := strings.Split(o.cluster, ",")
	if len(addrs) > maxKVClusterAddrs {
		return usageErrorf("-cluster: %d addresses, at most %d allowed", len(addrs), maxKVClusterAddrs)
	}
	for _, a := range addrs {
		if err := checkDialAddr(a); err != nil {
			return usageErrorf("-cluster: %v", err)
		}
	}
	if o.timeout <= 0 || o.timeout > maxKVTimeout {
		return usageErrorf("-timeout %v: must be in (0s, %v]", o.timeout, maxKVTimeout)
	}
	return nil
}

// runKV sends the request and reports the answer; it returns the exit
// status.
func runKV(ctx context.Context, cl *client.Client, o *kvOptions, req *kvRequest, stdout, stderr io.Writer) int {
	out := kvOutput{json: o.json, w: stdout, stderr: stderr, read: req.op == "get", fields: map[string]any{"op": req.op}}
	out.bytes("key", req.key)
	what := req.op + " " + string(req.key)
	switch req.op {
	case "put":
		index, err := cl.Put(ctx, req.key, req.value)
		if err != nil {
			return kvFailure(stderr, what, err)
		}
		out.fields["index"] = index
		return out.done("OK\n", exitOK)
	case "get":
		get := cl.Get
		if o.stale {
			get = cl.GetStale
		}
		v, found, err := get(ctx, req.key)
		if err != nil {
			return kvFailure(stderr, what, err)
		}
		out.fields["found"] = found
		if !found {
			fmt.Fprintf(stderr, "raftnode kv: %s: not found\n", what)
			return out.done("", kvExitMiss)
		}
		out.bytes("value", v)
		return out.done(string(v), exitOK)
	case "del":
		if err := cl.Delete(ctx, req.key); err != nil {
			return kvFailure(stderr, what, err)
		}
		return out.done("OK\n", exitOK)
	default: // cas
		swapped, cur, err := cl.CAS(ctx, req.key, req.expect, req.value, o.absent)
		if err != nil {
			return kvFailure(stderr, what, err)
		}
		out.fields["swapped"] = swapped
		if swapped {
			return out.done("OK\n", exitOK)
		}
		out.bytes("current", cur)
		if o.absent {
			fmt.Fprintf(stderr, "raftnode kv: %s: not swapped: the key exists (its value is on stdout)\n", what)
		} else {
			fmt.Fprintf(stderr, "raftnode kv: %s: not swapped: the current value differs (on stdout; empty if the key does not exist)\n", what)
		}
		return out.done(string(cur), kvExitMiss)
	}
}

// kvFailure reports a request that got no usable answer and returns its
// exit status. Only a write can have an unknown outcome: the client
// retries reads itself and never wraps their failures in it.
func kvFailure(stderr io.Writer, what string, err error) int {
	if errors.Is(err, client.ErrUnknownOutcome) {
		fmt.Fprintf(stderr, "raftnode kv: %s: OUTCOME UNKNOWN: the write may or may not have applied; read the key before retrying: %v\n", what, err)
		return kvExitUnknown
	}
	fmt.Fprintf(stderr, "raftnode kv: %s: failed (not applied): %v\n", what, err)
	return kvExitFailed
}

// kvOutput collects one command's result as plain text or a JSON object.
type kvOutput struct {
	// json selects the JSON form.
	json bool
	// w is stdout, stderr where a failure to write it is reported.
	w, stderr io.Writer
	// read is set for get: if its value cannot be written the command
	// failed; a write that applied stays applied whatever stdout does.
	read bool
	// fields are the JSON object's fields (encoding/json sorts them).
	fields map[string]any
}

// bytes sets field name to b as a string if b is valid UTF-8, else sets
// name_base64 to its standard base64 encoding: encoding/json would
// otherwise replace invalid bytes with U+FFFD and lose them.
func (o *kvOutput) bytes(name string, b []byte) {
	if utf8.Valid(b) {
		o.fields[name] = string(b)
		return
	}
	o.fields[name+"_base64"] = base64.StdEncoding.EncodeToString(b)
}

// done writes text (plain) or the JSON object, and returns code.
func (o *kvOutput) done(text string, code int) int {
	if o.json {
		b, err := json.Marshal(o.fields)
		if err != nil {
			panic(fmt.Sprintf("raftnode kv: JSON of strings, bools and integers failed: %v", err))
		}
		text = string(b) + "\n"
	}
	if _, err := io.WriteString(o.w, text); err != nil {
		fmt.Fprintf(o.stderr, "raftnode kv: writing the result: %v\n", err)
		if o.read {
			return kvExitFailed
		}
	}
	return code
}
