package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/raft/node"
)

// baseArgs is a minimal valid bootstrap command line for node 1.
func baseArgs(t *testing.T) []string {
	return []string{"-id", "1", "-cluster-id", "9", "-data-dir", t.TempDir(),
		"-members", "1=10.0.0.1:7100/10.0.0.1:7101,2=10.0.0.2:7100/10.0.0.2:7101,3=10.0.0.3:7100/10.0.0.3:7101",
		"-bootstrap"}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "raftnode.conf")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func parse(t *testing.T, args ...string) (*runOptions, error) {
	t.Helper()
	var out bytes.Buffer
	return parseRunArgs(args, &out)
}

func mustUsageErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", want)
	}
	if !errors.Is(err, errUsage) {
		t.Fatalf("error %v does not wrap errUsage", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not mention %q", err, w)
		}
	}
}

func TestParseDefaultsAndDerived(t *testing.T) {
	o, err := parse(t, baseArgs(t)...)
	if err != nil {
		t.Fatal(err)
	}
	if o.tick != node.DefaultTickInterval || o.electionTicks != node.DefaultElectionTicks || o.snapshotEntries != node.DefaultSnapshotEntries {
		t.Fatalf("defaults not the node's: %+v", o)
	}
	if len(o.members) != 3 || o.members[1] != (node.Member{ID: 2, PeerAddr: "10.0.0.2:7100", ClientAddr: "10.0.0.2:7101"}) {
		t.Fatalf("members = %+v", o.members)
	}
	// The listen addresses are wildcards, so the advertised ones come from
	// this node's -members entry.
	if o.advertisePeer != "10.0.0.1:7100" || o.advertiseClient != "10.0.0.1:7101" {
		t.Fatalf("advertise = %s %s", o.advertisePeer, o.advertiseClient)
	}
	cfg := o.nodeConfig(nil)
	if cfg.ID != 1 || cfg.ClusterID != 9 || !cfg.Bootstrap || cfg.AdvertisePeerAddr != "10.0.0.1:7100" || cfg.TLS != nil {
		t.Fatalf("node config = %+v", cfg)
	}
}

func TestConfigFilePrecedence(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, `# a comment line
id = 4
cluster-id = 9   # trailing comment
data-dir = "`+filepath.Join(dir, "with # hash")+`"
peer-addr = 127.0.0.1:7200
tick = 20ms
election-ticks = 15
bootstrap = true
members = 4=127.0.0.1:7200/127.0.0.1:7201

log-format = json
admin-addr =     # empty: no admin server
`)
	o, err := parse(t, "-config", conf, "-election-ticks", "30", "-log-format", "text")
	if err != nil {
		t.Fatal(err)
	}
	if o.id != 4 || o.clusterID != 9 || o.tick != 20*time.Millisecond || !o.bootstrap {
		t.Fatalf("file values not applied: %+v", o)
	}
	if o.dataDir != filepath.Join(dir, "with # hash") {
		t.Fatalf("quoted value = %q", o.dataDir)
	}
	if o.adminAddr != "" {
		t.Fatalf("an empty value did not clear admin-addr: %q", o.adminAddr)
	}
	if o.electionTicks != 30 || o.logFormat != "text" {
		t.Fatalf("command line did not override the file: election=%d format=%s", o.electionTicks, o.logFormat)
	}
	// The flag order does not matter: -config may come last.
	o, err = parse(t, "-id", "4", "-config", conf)
	if err != nil || o.electionTicks != 15 {
		t.Fatalf("file after flags: %v %+v", err, o)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "id = 1\ncluster-id = 2\nelection-tick = 5\n", []string{":3:", `unknown key "election-tick"`}},
		{"no equals", "id = 1\nbootstrap\n", []string{":2:", "key = value"}},
		{"bad value", "\n\ntick = 5\n", []string{":3:", `"tick"`}},
		{"repeated", "id = 1\nid = 2\n", []string{":2:", "already set on line 1"}},
		{"nested", "config = other.conf\n", []string{":1:", "cannot name another"}},
		{"bad quote", "data-dir = \"/x\n", []string{":1:", "quoted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.body)
			_, err := parse(t, append(baseArgs(t), "-config", p)...)
			mustUsageErr(t, err, append(tc.want, p)...)
		})
	}
	_, err := parse(t, append(baseArgs(t), "-config", filepath.Join(t.TempDir(), "missing.conf"))...)
	mustUsageErr(t, err, "-config", "missing.conf")
}

func TestParseMembersErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1:127.0.0.1:7100", "want ID=PEERHOST"},
		{"x=127.0.0.1:7100", "not an unsigned decimal"},
		{"0=127.0.0.1:7100", "non-zero"},
		{"1=127.0.0.1:7100,1=127.0.0.2:7100", "listed twice"},
		{"1=127.0.0.1", "HOST:PORT"},
		{"1=127.0.0.1:99999", "port"},
		{"1=:7100", "wildcard"},
		{"1=0.0.0.0:7100", "wildcard"},
		{"1=127.0.0.1:0", "port 0"},
		{"1=127.0.0.1:7100/127.0.0.1", "client address"},
		{"1=127.0.0.1:7100,", "want ID=PEERHOST"},
	} {
		_, err := parseMembers(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseMembers(%q) = %v, want an error mentioning %q", tc.in, err, tc.want)
		}
	}
	ms, err := parseMembers(" 1=a.example:1/b.example:2 , 2=[::1]:3 ")
	if err != nil || len(ms) != 2 || ms[0].ClientAddr != "b.example:2" || ms[1].PeerAddr != "[::1]:3" || ms[1].ClientAddr != "" {
		t.Fatalf("parseMembers = %+v, %v", ms, err)
	}
	if got := formatMembers(ms); got != "1=a.example:1/b.example:2,2=[::1]:3" {
		t.Fatalf("formatMembers = %q", got)
	}
}

func TestValidateErrors(t *testing.T) {
	dir := t.TempDir()
	base := func(extra ...string) []string { return append(baseArgs(t), extra...) }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no id", []string{"-cluster-id", "1", "-data-dir", dir}, "-id is required"},
		{"no cluster", []string{"-id", "1", "-data-dir", dir}, "-cluster-id"},
		{"no data dir", []string{"-id", "1", "-cluster-id", "1"}, "-data-dir"},
		{"bad members", base("-members", "1=x"), "-members"},
		{"bootstrap without self", base("-members", "2=10.0.0.2:7100/10.0.0.2:7101"), "must include this node"},
		{"bootstrap without members", []string{"-id", "1", "-cluster-id", "1", "-data-dir", dir, "-bootstrap", "-advertise-peer", "h:1", "-advertise-client", "h:2"}, "-bootstrap needs -members"},
		{"join without members", []string{"-id", "1", "-cluster-id", "1", "-data-dir", dir, "-advertise-peer", "h:1", "-advertise-client", "h:2"}, "needs -members"},
		{"wildcard, no advertise", []string{"-id", "5", "-cluster-id", "1", "-data-dir", dir, "-members", "1=h:1/h:2"}, "-advertise-peer is required"},
		{"advertise contradicts", base("-advertise-peer", "10.9.9.9:7100"), "contradicts"},
		{"advertise wildcard", base("-advertise-client", "0.0.0.0:7101"), "-advertise-client"},
		{"bad peer addr", base("-peer-addr", "nohostport"), "-peer-addr"},
		{"bad admin addr", base("-admin-addr", "x:y"), "-admin-addr"},
		{"tick", base("-tick", "0s"), "-tick"},
		{"tick huge", base("-tick", "1h"), "-tick"},
		{"election <= heartbeat", base("-election-ticks", "3", "-heartbeat-ticks", "3"), "-election-ticks"},
		{"heartbeat 0", base("-heartbeat-ticks", "0"), "-heartbeat-ticks"},
		{"snapshot 0", base("-snapshot-entries", "0"), "-snapshot-entries"},
		{"retain 0", base("-retain-entries", "0"), "-retain-entries"},
		{"sync delay", base("-wal-sync-delay", "2s"), "-wal-sync-delay"},
		{"log level", base("-log-level", "loud"), "-log-level"},
		{"log format", base("-log-format", "xml"), "-log-format"},
		{"tls partial", base("-tls-cert", "c.pem"), "all three"},
		{"tls missing files", base("-tls-cert", "c.pem", "-tls-key", "k.pem", "-tls-ca", "ca.pem"), "TLS"},
		{"stray arg", base("extra"), "unexpected argument"},
		{"unknown flag", base("-nope"), "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.args...)
			mustUsageErr(t, err, tc.want)
		})
	}
}

func TestJoinWithExistingStateNeedsNoMembers(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := parse(t, "-id", "2", "-cluster-id", "1", "-data-dir", dir, "-peer-addr", "127.0.0.1:7100", "-client-addr", "127.0.0.1:7101"); err != nil {
		t.Fatalf("restart from existing state: %v", err)
	}
}

func TestRealMainExitCodes(t *testing.T) {
	noSignals := func() <-chan os.Signal { return make(chan os.Signal) }
	for _, tc := range []struct {
		args []string
		code int
		out  string // expected in stdout+stderr
	}{
		{[]string{"-id", "0"}, exitUsage, "-id is required"},
		{[]string{"run", "-help"}, exitOK, "-election-ticks"},
		{[]string{"frobnicate"}, exitUsage, "unknown subcommand"},
		{[]string{"version"}, exitOK, "raftnode "},
		{[]string{"admin"}, exitUsage, "missing command"},
		{[]string{"admin", "-addr", "127.0.0.1:1", "bogus"}, exitUsage, "unknown command"},
		{[]string{"admin", "-addr", "127.0.0.1:1", "add", "1", "127.0.0.1:2"}, exitUsage, "takes 3"},
		{[]string{"admin", "-addr", "127.0.0.1:1", "remove", "0"}, exitUsage, "non-zero"},
		{[]string{"admin", "-addr", "0.0.0.0:7102", "status"}, exitUsage, "-addr"},
	} {
		var out bytes.Buffer
		code := realMain(tc.args, &out, &out, noSignals)
		if code != tc.code || !strings.Contains(out.String(), tc.out) {
			t.Errorf("raftnode %q: exit %d, output:\n%s\nwant exit %d and %q", tc.args, code, out.String(), tc.code, tc.out)
		}
	}
}
