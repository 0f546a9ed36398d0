package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
)

// TestAdminAuthFlags: the admin access flags exclude each other and the
// TLS flags as docs/deploy.md says, the token file is checked, and the
// result is the node's AdminAuth.
func TestAdminAuthFlags(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := testutil.NewCA(t, "ca").WriteFiles(t, dir, "node")
	tlsFlags := []string{"-tls-cert", cert, "-tls-key", key, "-tls-ca", ca}
	tokenFile := writeAdminToken(t, dir)
	short := filepath.Join(dir, "short.token")
	spaced := filepath.Join(dir, "spaced.token")
	os.WriteFile(short, []byte("short\n"), 0o600)
	os.WriteFile(spaced, []byte("has a space in the middle of it\n"), 0o600)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{append([]string{"-admin-token-file", tokenFile}, tlsFlags...), "-admin-token-file: with TLS the admin port authenticates by client certificate"},
		{[]string{"-admin-token-file", tokenFile, "-admin-insecure"}, "-admin-insecure contradicts -admin-token-file"},
		{append([]string{"-admin-insecure"}, tlsFlags...), "-admin-insecure contradicts the TLS flags"},
		{[]string{"-admin-token-file", short}, "the token is 5 bytes long, at least 16 required"},
		{[]string{"-admin-token-file", spaced}, "visible ASCII without spaces"},
		{[]string{"-admin-token-file", filepath.Join(dir, "missing")}, "-admin-token-file:"},
	} {
		_, err := parse(t, append(baseArgs(t), tc.args...)...)
		mustUsageErr(t, err, tc.want)
	}

	o, err := parse(t, append(baseArgs(t), "-admin-token-file", tokenFile)...)
	if err != nil {
		t.Fatal(err)
	}
	if a := o.adminAuth(); string(a.Token) != procAdminToken || a.Insecure || a.RestrictReads || a.ClientCAs != nil || o.adminAuthMode() != "token" {
		t.Fatalf("token flags gave %+v (mode %s)", a, o.adminAuthMode())
	}
	o, err = parse(t, append(append(baseArgs(t), tlsFlags...), "-admin-open-read=false")...)
	if err != nil {
		t.Fatal(err)
	}
	if a := o.adminAuth(); a.ClientCAs == nil || a.Token != nil || !a.RestrictReads || o.adminAuthMode() != "client-certificate" {
		t.Fatalf("TLS flags gave %+v (mode %s)", a, o.adminAuthMode())
	}
	conf := writeFile(t, "admin-insecure = true\nadmin-open-read = false\n")
	o, err = parse(t, append(baseArgs(t), "-config", conf)...)
	if err != nil {
		t.Fatal(err)
	}
	if a := o.adminAuth(); !a.Insecure || !a.RestrictReads || o.adminAuthMode() != "insecure" {
		t.Fatalf("config file gave %+v", a)
	}
	if o, err := parse(t, baseArgs(t)...); err != nil || o.adminAuthMode() != "disabled" || !o.adminOpenRead {
		t.Fatalf("defaults: %v, mode %s", err, o.adminAuthMode())
	}

	// raftnode admin: the token and TLS do not go together; a bad token
	// file is a usage error too.
	for _, args := range [][]string{
		append([]string{"-admin-token-file", tokenFile}, tlsFlags...),
		{"-admin-token-file", short},
	} {
		var out bytes.Buffer
		if code := adminCommand(append(append([]string{"-addr", "127.0.0.1:1"}, args...), "status"), &out, &out); code != exitUsage {
			t.Errorf("admin %q: exit %d (%s), want %d", args, code, out.String(), exitUsage)
		}
	}
}

// TestRunAdminUnconfiguredAndInsecure runs two one-node clusters in
// process: without credentials configured, /admin/* is refused with 403;
// with -admin-insecure it is served.
func TestRunAdminUnconfiguredAndInsecure(t *testing.T) {
	for _, tc := range []struct {
		extra []string
		ok    bool
	}{{nil, false}, {[]string{"-admin-insecure"}, true}} {
		peer, cl, adm := testutil.ReserveAddr(t), testutil.ReserveAddr(t), testutil.ReserveAddr(t)
		sigc := make(chan os.Signal, 2)
		var logs syncBuffer
		args := append([]string{"run", "-id", "1", "-cluster-id", "3", "-data-dir", t.TempDir(),
			"-peer-addr", peer, "-client-addr", cl, "-admin-addr", adm,
			"-members", fmt.Sprintf("1=%s/%s", peer, cl), "-bootstrap", "-tick", "10ms"}, tc.extra...)
		codec := make(chan int, 1)
		go func() { codec <- realMain(args, &logs, &logs, func() <-chan os.Signal { return sigc }) }()
		p := &proc{id: 1, admin: adm}
		testutil.WaitFor(t, procLeaderWait, "the single node to lead", func() bool {
			st, err := p.status()
			return err == nil && st.Role == "leader"
		})
		resp, err := http.Post("http://"+adm+"/admin/transfer?to=1", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		refused := resp.StatusCode == http.StatusForbidden
		if refused == tc.ok {
			t.Errorf("flags %q: POST /admin/transfer answered %s", tc.extra, resp.Status)
		}
		sigc <- syscall.SIGTERM
		select {
		case code := <-codec:
			if code != exitOK {
				t.Fatalf("exit %d after SIGTERM; logs:\n%s", code, logs.String())
			}
		case <-time.After(procExitWait):
			t.Fatalf("no exit within %v after SIGTERM", procExitWait)
		}
		mode := "disabled"
		if tc.ok {
			mode = "insecure"
		}
		if !strings.Contains(logs.String(), "admin_auth="+mode) {
			t.Errorf("start-up log does not name admin_auth=%s", mode)
		}
	}
}
