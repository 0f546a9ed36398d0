package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/raft/client"
	"github.com/raftpipe/raftpipe/raft/transport"
)

// writeTestPKI writes a CA and one certificate for 127.0.0.1 (server and
// client use, as deploy.md prescribes) into dir and returns the paths.
func writeTestPKI(t *testing.T, dir string) (cert, key, ca string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "raftnode-test-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nodeTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	nodeDER, err := x509.CreateCertificate(rand.Reader, nodeTmpl, caCert, &nodeKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("node.crt", "CERTIFICATE", nodeDER), write("node.key", "EC PRIVATE KEY", keyDER), write("ca.crt", "CERTIFICATE", caDER)
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
	procs := startProcCluster(t, bin, func(*proc) []string { return []string{"-config", conf} })
	waitLeader(t, procs, 0)

	tlsCfg, err := transport.LoadTLSConfig(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
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
