package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/raftpipe/raftpipe/raft/node"
	"github.com/raftpipe/raftpipe/raft/transport"
	"github.com/raftpipe/raftpipe/wal"
)

// Bounds on settings. A value outside them is far more likely a typo (a
// missing unit, an extra zero) than an intent, so it is refused up front.
const (
	// maxConfigFileBytes bounds the -config file read into memory.
	maxConfigFileBytes = 1 << 20
	// maxTickInterval bounds -tick: beyond it elections take minutes.
	maxTickInterval = 10 * time.Second
	// maxDrainTimeout bounds -drain-timeout: the whole shutdown
	// (shutdownTimeout) must still fit it and the node's stop.
	maxDrainTimeout = 2 * time.Minute
	// maxElectionTicks bounds -election-ticks for the same reason.
	maxElectionTicks = 10_000
	// maxLogEntriesSetting bounds -snapshot-entries and -retain-entries:
	// 100M entries of 128 B is a 12 GiB log kept on disk; more is a typo.
	maxLogEntriesSetting = 100_000_000
	// maxWALSyncDelay bounds -wal-sync-delay: it adds to every write's
	// latency, and a delay near an election timeout makes followers miss
	// heartbeats' acknowledgements.
	maxWALSyncDelay = time.Second
)

// errUsage marks errors that should exit with status 2 (bad flags, bad
// config file, invalid settings) rather than 1 (the node failed). Test with
// errors.Is; the message of such an error is only its own text.
var errUsage = errors.New("usage error")

// usageError is an error that matches errUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string        { return e.msg }
func (e *usageError) Is(target error) bool { return target == errUsage }

// usageErrorf returns a formatted error matching errUsage.
func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// runOptions are the run subcommand's settings, as given by flags and the
// config file, plus what validate derives from them.
type runOptions struct {
	// id is this node's Raft ID; it never changes for the life of the data
	// directory, and a replaced host should get a new one.
	id uint64
	// clusterID is checked in every peer and client handshake, so that a
	// node or client pointed at the wrong cluster is refused instead of
	// mixing data.
	clusterID uint64
	// dataDir holds the WAL and the Pebble store; its loss is a disk loss.
	dataDir string
	// peerAddr and clientAddr are the listen addresses of the Raft and
	// client ports.
	peerAddr, clientAddr string
	// adminAddr is the admin HTTP listen address; empty disables it. It
	// serves HTTPS when TLS is configured, plain HTTP otherwise.
	adminAddr string
	// adminTokenFile, adminInsecure and adminOpenRead choose who may use
	// the admin port (adminauth.go); adminToken is the token file's content.
	adminTokenFile string
	adminInsecure  bool
	adminOpenRead  bool
	adminToken     []byte
	// advertisePeer and advertiseClient are the addresses other hosts dial;
	// needed when the listen address is a wildcard and this node is not in
	// -members. They are what to pass to `raftnode admin add`.
	advertisePeer, advertiseClient string
	// membersRaw is -members as given; members is its parsed form.
	membersRaw string
	members    []node.Member
	// bootstrap starts a new cluster made of members.
	bootstrap bool
	// tlsCert, tlsKey and tlsCA enable mutual TLS on the peer and client
	// ports; all three or none. tlsConfig is what they load to.
	tlsCert, tlsKey, tlsCA string
	tlsConfig              *tls.Config
	// tick is the wall-clock length of one Raft tick.
	tick time.Duration
	// electionTicks and heartbeatTicks are the Raft timeouts in ticks.
	electionTicks, heartbeatTicks int
	// readModeRaw is -read-mode; readMode is parsed. leaseDriftTicks is
	// the lease's clock-drift bound.
	readModeRaw     string
	readMode        node.ReadMode
	leaseDriftTicks int
	// groups is the number of Raft groups the keys are sharded over
	// (node.Config.Groups); fixed when the data directory is created.
	groups int
	// drainTimeout bounds the graceful drain on SIGTERM (node.Drain).
	drainTimeout time.Duration
	// snapshotEntries is how many applied entries pass between log
	// compactions; retainEntries how many stay behind a compaction point.
	snapshotEntries, retainEntries uint64
	// walSyncDelay is an extra wait before each WAL fsync to batch more.
	walSyncDelay time.Duration
	// logLevelRaw and logFormat choose the slog handler; logLevel is parsed.
	logLevelRaw, logFormat string
	logLevel               slog.Level
	// configFile is -config; settings in it lose to command-line flags.
	configFile string
}

// newRunFlagSet declares the run flags, bound to o. The help text of each
// gives its unit; the defaults are the node's own.
func newRunFlagSet(o *runOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("raftnode run", flag.ContinueOnError)
	fs.Uint64Var(&o.id, "id", 0, "this node's Raft ID `N`: a non-zero integer, unique in the cluster and never reused (required)")
	fs.Uint64Var(&o.clusterID, "cluster-id", 0, "cluster ID `N`: a non-zero integer every node and client of the cluster shares; handshakes with another ID are refused (required)")
	fs.StringVar(&o.dataDir, "data-dir", "", "`DIR` for this node's WAL (DIR/wal) and Pebble state machine (DIR/kv); created if missing (required)")
	fs.StringVar(&o.peerAddr, "peer-addr", ":7100", "listen `HOST:PORT` for Raft traffic from other nodes")
	fs.StringVar(&o.clientAddr, "client-addr", ":7101", "listen `HOST:PORT` for clients (raft/client, raftbench)")
	fs.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:7102", "listen `HOST:PORT` for the admin HTTP server (/status, /metrics, /debug/pprof, /admin/*); HTTPS with the TLS flags, else plain HTTP; empty disables it")
	fs.StringVar(&o.adminTokenFile, "admin-token-file", "", "`FILE` holding the bearer token that /admin/* and /debug/pprof require (clusters without TLS; with TLS they require a client certificate from -tls-ca instead)")
	fs.BoolVar(&o.adminInsecure, "admin-insecure", false, "serve /admin/* and /debug/pprof without credentials when neither TLS nor -admin-token-file is set (default: refused with 403)")
	fs.BoolVar(&o.adminOpenRead, "admin-open-read", true, "serve /status, /metrics and /stages without credentials; false requires the same credentials as /admin/*")
	fs.StringVar(&o.advertisePeer, "advertise-peer", "", "`HOST:PORT` other nodes dial to reach -peer-addr (default: this node's entry in -members, else -peer-addr)")
	fs.StringVar(&o.advertiseClient, "advertise-client", "", "`HOST:PORT` clients dial to reach -client-addr (default: this node's entry in -members, else -client-addr)")
	fs.StringVar(&o.membersRaw, "members", "", "cluster `MEMBERS` as ID=PEERHOST:PORT/CLIENTHOST:PORT,...: the initial cluster with -bootstrap, else the existing members a joining node can reach")
	fs.BoolVar(&o.bootstrap, "bootstrap", false, "start a new cluster made of -members (every initial node gets the same -members); without it a new node waits to be added with 'raftnode admin add'; ignored once the data dir holds state")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate `FILE` for mutual TLS on the peer and client ports (with -tls-key and -tls-ca)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key `FILE` for -tls-cert")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "PEM CA bundle `FILE` that peer and client certificates must chain to")
	fs.DurationVar(&o.tick, "tick", node.DefaultTickInterval, "`DURATION` of one Raft tick (e.g. 50ms); timeouts below are counted in ticks")
	fs.IntVar(&o.electionTicks, "election-ticks", node.DefaultElectionTicks, "election timeout in `TICKS` (randomised in [N, 2N)); must exceed -heartbeat-ticks")
	fs.IntVar(&o.heartbeatTicks, "heartbeat-ticks", node.DefaultHeartbeatTicks, "leader heartbeat interval in `TICKS`")
	fs.StringVar(&o.readModeRaw, "read-mode", "index", "how the leader confirms linearizable reads: `MODE` index (a heartbeat round per batch, no clock assumption) or lease (locally, while it holds a lease of election-ticks minus -lease-drift-ticks; assumes bounded clock drift, see docs/deploy.md; give every node the same mode)")
	fs.IntVar(&o.leaseDriftTicks, "lease-drift-ticks", node.DefaultLeaseDriftTicks, "lease mode: the clock-drift bound in `TICKS` the lease is shortened by (1..election-ticks-1)")
	fs.IntVar(&o.groups, "groups", 1, fmt.Sprintf("number of Raft `GROUPS` (1..%d) the keys are sharded over (group = wire.GroupOf(key, groups)); every group has the same members. Give every node the same value; it is recorded in the data directory when that is created, and a node started with another value refuses to start. With more than one group, idle groups quiesce and leaders spread over the nodes (docs/deploy.md, \"Many groups\")", node.MaxGroups))
	fs.DurationVar(&o.drainTimeout, "drain-timeout", node.DefaultDrainTimeout, "on SIGTERM: bound (`DURATION`) on draining in-flight requests and handing leadership off before the node stops")
	fs.Uint64Var(&o.snapshotEntries, "snapshot-entries", node.DefaultSnapshotEntries, "applied `ENTRIES` (count) between state-machine flushes that let the log be compacted")
	fs.Uint64Var(&o.retainEntries, "retain-entries", node.DefaultRetainEntries, "log `ENTRIES` (count) kept behind a compaction point so lagging followers catch up without a snapshot")
	fs.DurationVar(&o.walSyncDelay, "wal-sync-delay", 0, "extra wait (`DURATION`, 0 to 1s) before each WAL fsync so more writes share it (0 = group commit only)")
	fs.StringVar(&o.logLevelRaw, "log-level", "info", "log `LEVEL`: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `FORMAT` on stderr: text or json")
	fs.StringVar(&o.configFile, "config", "", "`FILE` of 'key = value' lines using these flag names (no dash), # comments; command-line flags override it")
	return fs
}

// parseRunArgs parses args (flags, then the -config file) and validates the
// result. Errors wrap errUsage, except flag.ErrHelp for -help.
func parseRunArgs(args []string, out io.Writer) (*runOptions, error) {
	o := &runOptions{}
	fs := newRunFlagSet(o)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: raftnode [run] [flags]\n\nRuns one raftpipe node. Flags (also accepted as 'name = value' lines in a -config file):\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageErrorf("unexpected argument %q (settings are flags, e.g. -id 1)", fs.Arg(0))
	}
	if o.configFile != "" {
		if err := applyConfigFile(fs, o.configFile); err != nil {
			return nil, err
		}
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	return o, nil
}

// applyConfigFile sets every flag named in the file that was not given on
// the command line. The format is one `key = value` per line; blank lines
// and text after `#` are ignored; a value may be double-quoted (Go syntax)
// to hold a `#`. Unknown and repeated keys are errors naming the line.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := readBounded(path, maxConfigFileBytes)
	if err != nil {
		return usageErrorf("-config: %v", err)
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	seen := map[string]int{}
	for i, line := range strings.Split(string(data), "\n") {
		lineNo := i + 1
		where := fmt.Sprintf("%s:%d", path, lineNo)
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return usageErrorf("%s: want `key = value`, got %q", where, line)
		}
		key = strings.TrimSpace(key)
		value, err := configValue(strings.TrimSpace(value))
		if err != nil {
			return usageErrorf("%s: key %q: %v", where, key, err)
		}
		if key == "config" {
			return usageErrorf("%s: a config file cannot name another config file", where)
		}
		if fs.Lookup(key) == nil {
			return usageErrorf("%s: unknown key %q (keys are the run flag names without the dash; see raftnode run -help)", where, key)
		}
		if prev, dup := seen[key]; dup {
			return usageErrorf("%s: key %q already set on line %d", where, key, prev)
		}
		seen[key] = lineNo
		if onCommandLine[key] {
			continue // the command line wins
		}
		if err := fs.Set(key, value); err != nil {
			return usageErrorf("%s: key %q: %v", where, key, err)
		}
	}
	return nil
}

// configValue strips a trailing comment from an unquoted value, or unquotes
// a double-quoted one (which may be followed only by a comment).
func configValue(v string) (string, error) {
	if !strings.HasPrefix(v, `"`) {
		v, _, _ = strings.Cut(v, "#")
		return strings.TrimSpace(v), nil
	}
	q, err := strconv.QuotedPrefix(v)
	if err != nil {
		return "", fmt.Errorf("bad quoted value %s", v)
	}
	if rest := strings.TrimSpace(v[len(q):]); rest != "" && rest[0] != '#' {
		return "", fmt.Errorf("unexpected %q after the quoted value", rest)
	}
	return strconv.Unquote(q)
}

// readBounded reads a whole file that must not exceed limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// validate checks every setting and fills the derived fields (members,
// advertise addresses, TLS, log level). Every error wraps errUsage.
func (o *runOptions) validate() error {
	if o.id == 0 {
		return usageErrorf("-id is required and must be non-zero (1..18446744073709551615)")
	}
	if o.clusterID == 0 {
		return usageErrorf("-cluster-id is required and must be non-zero (every node and client of the cluster uses the same value)")
	}
	if o.dataDir == "" {
		return usageErrorf("-data-dir is required")
	}
	if err := checkListenAddr(o.peerAddr); err != nil {
		return usageErrorf("-peer-addr: %v", err)
	}
	if err := checkListenAddr(o.clientAddr); err != nil {
		return usageErrorf("-client-addr: %v", err)
	}
	if o.adminAddr != "" {
		if err := checkListenAddr(o.adminAddr); err != nil {
			return usageErrorf("-admin-addr: %v", err)
		}
	}
	ms, err := parseMembers(o.membersRaw)
	if err != nil {
		return usageErrorf("-members: %v", err)
	}
	o.members = ms
	if err := o.checkJoinMode(); err != nil {
		return err
	}
	if err := o.deriveAdvertise(); err != nil {
		return err
	}
	if err := o.loadTLS(); err != nil {
		return err
	}
	if err := o.loadAdminAuth(); err != nil {
		return err
	}
	if o.tick <= 0 || o.tick > maxTickInterval {
		return usageErrorf("-tick %v: must be in (0s, %v]", o.tick, maxTickInterval)
	}
	if o.heartbeatTicks < 1 || o.heartbeatTicks >= maxElectionTicks {
		return usageErrorf("-heartbeat-ticks %d: must be in 1..%d and below -election-ticks", o.heartbeatTicks, maxElectionTicks-1)
	}
	if o.electionTicks <= o.heartbeatTicks || o.electionTicks > maxElectionTicks {
		return usageErrorf("-election-ticks %d: must be in %d..%d (above -heartbeat-ticks %d)", o.electionTicks, o.heartbeatTicks+1, maxElectionTicks, o.heartbeatTicks)
	}
	mode, err := node.ParseReadMode(o.readModeRaw)
	if err != nil {
		return usageErrorf("-read-mode: %v", err)
	}
	o.readMode = mode
	if mode == node.ReadModeLease && (o.leaseDriftTicks < 1 || o.leaseDriftTicks >= o.electionTicks) {
		return usageErrorf("-lease-drift-ticks %d: must be in 1..%d (below -election-ticks)", o.leaseDriftTicks, o.electionTicks-1)
	}
	if o.groups < 1 || o.groups > node.MaxGroups {
		return usageErrorf("-groups %d: must be in 1..%d", o.groups, node.MaxGroups)
	}
	if o.drainTimeout <= 0 || o.drainTimeout > maxDrainTimeout {
		return usageErrorf("-drain-timeout %v: must be in (0s, %v]", o.drainTimeout, maxDrainTimeout)
	}
	if o.snapshotEntries == 0 || o.snapshotEntries > maxLogEntriesSetting {
		return usageErrorf("-snapshot-entries %d: must be in 1..%d", o.snapshotEntries, maxLogEntriesSetting)
	}
	// 0 would compact right up to the flush point and send every follower
	// that is one batch behind a snapshot; the node reads 0 as its default,
	// so refuse it here rather than run with a value nobody typed.
	if o.retainEntries == 0 || o.retainEntries > maxLogEntriesSetting {
		return usageErrorf("-retain-entries %d: must be in 1..%d", o.retainEntries, maxLogEntriesSetting)
	}
	if o.walSyncDelay < 0 || o.walSyncDelay > maxWALSyncDelay {
		return usageErrorf("-wal-sync-delay %v: must be in 0s..%v", o.walSyncDelay, maxWALSyncDelay)
	}
	if err := o.logLevel.UnmarshalText([]byte(o.logLevelRaw)); err != nil {
		return usageErrorf("-log-level %q: want debug, info, warn or error", o.logLevelRaw)
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return usageErrorf("-log-format %q: want text or json", o.logFormat)
	}
	return nil
}

// self returns this node's entry in -members, if listed.
func (o *runOptions) self() (node.Member, bool) {
	for _, m := range o.members {
		if m.ID == o.id {
			return m, true
		}
	}
	return node.Member{}, false
}

// deriveAdvertise fills the advertise addresses from the flags, this
// node's -members entry, or the listen address, in that order, and
// refuses a flag that contradicts the -members entry (other nodes would
// dial one address while this node announces another).
func (o *runOptions) deriveAdvertise() error {
	me, listed := o.self()
	type adv struct {
		flag, listen, member *string
		name                 string
	}
	for _, a := range []adv{
		{&o.advertisePeer, &o.peerAddr, &me.PeerAddr, "peer"},
		{&o.advertiseClient, &o.clientAddr, &me.ClientAddr, "client"},
	} {
		switch {
		case *a.flag != "":
			if err := checkDialAddr(*a.flag); err != nil {
				return usageErrorf("-advertise-%s: %v", a.name, err)
			}
			if listed && *a.member != "" && *a.member != *a.flag {
				return usageErrorf("-advertise-%s %s contradicts this node's -members entry (%s)", a.name, *a.flag, *a.member)
			}
		case listed && *a.member != "":
			*a.flag = *a.member
		case checkDialAddr(*a.listen) == nil:
			*a.flag = *a.listen
		default:
			return usageErrorf("-advertise-%s is required: -%s-addr %q is not an address other hosts can dial and this node is not in -members", a.name, a.name, *a.listen)
		}
	}
	return nil
}

// checkJoinMode checks the members list against the start mode: a
// bootstrapping node must be in it; a brand-new joining node needs it to
// reach the cluster before its first snapshot tells it the membership.
func (o *runOptions) checkJoinMode() error {
	_, listed := o.self()
	if o.bootstrap {
		if len(o.members) == 0 {
			return usageErrorf("-bootstrap needs -members: the initial cluster, the same on every initial node")
		}
		if !listed {
			return usageErrorf("-bootstrap: -members must include this node (-id %d)", o.id)
		}
		return nil
	}
	if len(o.members) == 0 && !hasState(o.dataDir) {
		return usageErrorf("a new node without -bootstrap joins an existing cluster and needs -members listing its current members (or pass -bootstrap to start a new cluster)")
	}
	return nil
}

// hasState reports whether dataDir already holds a WAL, in which case the
// node recovers from it and the start-mode flags matter no more.
func hasState(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "wal"))
	return err == nil
}

// loadTLS loads the mutual-TLS configuration if any TLS flag is set.
func (o *runOptions) loadTLS() error {
	cfg, err := loadTLSFlags(o.tlsCert, o.tlsKey, o.tlsCA)
	o.tlsConfig = cfg
	return err
}

// loadTLSFlags loads -tls-cert, -tls-key and -tls-ca (all three or none;
// nil for none). The run, admin and kv subcommands share the flags and
// this rule. Errors wrap errUsage.
func loadTLSFlags(cert, key, ca string) (*tls.Config, error) {
	n := 0
	for _, f := range []string{cert, key, ca} {
		if f != "" {
			n++
		}
	}
	switch n {
	case 0:
		return nil, nil
	case 3:
	default:
		return nil, usageErrorf("-tls-cert, -tls-key and -tls-ca go together: give all three or none")
	}
	cfg, err := transport.LoadTLSConfig(cert, key, ca)
	if err != nil {
		return nil, usageErrorf("TLS: %v", err)
	}
	return cfg, nil
}

// nodeConfig turns validated options into the node's configuration.
func (o *runOptions) nodeConfig(logger *slog.Logger) node.Config {
	return node.Config{
		ID:                  o.id,
		ClusterID:           o.clusterID,
		DataDir:             o.dataDir,
		PeerAddr:            o.peerAddr,
		ClientAddr:          o.clientAddr,
		AdvertisePeerAddr:   o.advertisePeer,
		AdvertiseClientAddr: o.advertiseClient,
		Members:             o.members,
		Bootstrap:           o.bootstrap,
		TLS:                 o.tlsConfig,
		TickInterval:        o.tick,
		ElectionTicks:       o.electionTicks,
		HeartbeatTicks:      o.heartbeatTicks,
		ReadMode:            o.readMode,
		LeaseDriftTicks:     o.leaseDriftTicks,
		Groups:              o.groups,
		SnapshotEntries:     o.snapshotEntries,
		RetainEntries:       o.retainEntries,
		WAL:                 wal.Options{SyncDelay: o.walSyncDelay},
		Logger:              logger,
	}
}
