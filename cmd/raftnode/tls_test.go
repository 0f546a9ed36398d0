package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/raft/client"
	"github.com/raftpipe/raftpipe/raft/transport"
)

// writeTestPKI writes a CA and one certificate for 127.0.0.1 (server and
// client use, as deploy.md prescribes) into dir and returns the paths.
func writeTestPKI(t *testing.T, dir string) (cert, key, ca string) {
	t.Helper()
	return testutil.NewCA(t, "raftnode-test-ca").WriteFiles(t, dir, "node")
}

// TestProcessClusterTLS runs three processes with mutual TLS configured
// through a -config file and checks a TLS client works while a plain one
// is refused.
func TestProcessClusterTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	bin := raftnodeBinary(t)
	dir := t.TempDir()
	cert, key, ca := writeTestPKI(t, dir)
	conf := filepath.Join(dir, "tls.conf")
	body := fmt.Sprintf("# TLS settings shared by the test nodes\ntls-cert = %q\ntls-key = %q\ntls-ca = %q\n", cert, key, ca)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := transport.LoadTLSConfig(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	tlsFlags := []string{"-tls-cert", cert, "-tls-key", key, "-tls-ca", ca}
	procs := startProcCluster(t, bin, func(p *proc) []string {
		p.adminArgs, p.adminHTTPS, p.adminTLS = tlsFlags, true, tlsCfg
		return []string{"-config", conf}
	})
	leader := waitLeader(t, procs, 0)

	// The admin port is HTTPS. A privileged command needs a client
	// certificate from the cluster's CA: one from another CA is refused
	// (401) and says why; the right one works.
	icert, ikey, _ := testutil.NewCA(t, "other-ca").WriteFiles(t, dir, "intruder")
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "admin", "-addr", leader.admin, "-timeout", "10s", "-tls-cert", icert, "-tls-key", ikey, "-tls-ca", ca,
		"add-learner", "9", "127.0.0.1:1", "127.0.0.1:2")
	cmd.Stderr = &stderr
	if err := cmd.Run(); cmd.ProcessState.ExitCode() != exitFailure || !strings.Contains(stderr.String(), "401 Unauthorized") ||
		!strings.Contains(stderr.String(), "not valid for this cluster") {
		t.Fatalf("admin with a certificate from another CA: err=%v stderr=%q; want exit 1 and a 401 naming the certificate", err, stderr.String())
	}
	var to *proc
	for _, p := range procs {
		if p != leader {
			to = p
			break
		}
	}
	if out := admin(t, bin, leader, "transfer", fmt.Sprint(to.id)); !strings.Contains(out, "now leads") {
		t.Fatalf("transfer over HTTPS with the cluster certificate printed %q", out)
	}
	waitLeader(t, procs, leader.id)
	var addrs []string
	for _, p := range procs {
		addrs = append(addrs, p.clientAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.New(client.Config{Addrs: addrs, ClusterID: procClusterID, TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatalf("put over TLS: %v", err)
	}
	if v, ok, err := cl.Get(ctx, []byte("k")); err != nil || !ok || string(v) != "v" {
		t.Fatalf("get over TLS = %q %v %v", v, ok, err)
	}
	plain, err := client.New(client.Config{Addrs: addrs, ClusterID: procClusterID, MaxRetries: -1, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, _, err := plain.Get(ctx, []byte("k")); err == nil {
		t.Fatal("a client without TLS read from a TLS cluster")
	}
	cl.Close()
	plain.Close()
	stopProcCluster(t, procs)
}
