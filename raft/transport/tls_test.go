package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a node certificate (for 127.0.0.1, usable as server and
// client) and its key, plus the CA, into dir and returns their paths.
func (ca *testCA) issue(t *testing.T, dir, name string) (certFile, keyFile, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	caFile = filepath.Join(dir, name+"-ca.crt")
	for _, f := range []struct {
		path string
		data []byte
	}{
		{certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})},
		{caFile, ca.pem},
	} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, caFile
}

// loadTLS issues a certificate for name from ca and loads it.
func loadTLS(t *testing.T, ca *testCA, dir, name string) *tls.Config {
	t.Helper()
	certFile, keyFile, caFile := ca.issue(t, dir, name)
	c, err := LoadTLSConfig(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTLS runs a link over mutual TLS, then checks that a client without a
// certificate, and a node whose certificate comes from another CA, are
// refused while the good link keeps working.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "raftpipe test CA")
	inA, inB := newInbox(), newInbox()
	cfgA := testConfig(1, inA.handle)
	cfgA.TLS = loadTLS(t, ca, dir, "node1")
	cfgB := testConfig(2, inB.handle)
	cfgB.TLS = loadTLS(t, ca, dir, "node2")
	a := newNode(t, cfgA)
	b := newNode(t, cfgB)
	connect(t, a, b)
	connect(t, b, a)
	for i := uint64(1); i <= 1000; i++ {
		sendRetry(t, a, appMsg(1, 2, i, []byte("over tls")))
		sendRetry(t, b, appMsg(2, 1, i, []byte("over tls")))
	}
	waitFor(t, "delivery over TLS", func() bool { return inB.count(1) == 1000 && inA.count(2) == 1000 })
	checkContiguous(t, inB.copySeqs(1), 1, 1000)
	checkContiguous(t, inA.copySeqs(2), 1, 1000)

	// A TLS client with no certificate: the server refuses it.
	before := b.Stats().InboundRefused
	noCert := &tls.Config{RootCAs: cfgB.TLS.RootCAs, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
	c, err := tls.Dial("tcp", b.Addr().String(), noCert)
	if err == nil {
		// In TLS 1.3 the client finishes before the server checks its
		// certificate; the refusal shows on the first read.
		c.SetReadDeadline(time.Now().Add(testDeadline))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Fatal("client without a certificate was served")
	}
	waitFor(t, "certificate-less client to be refused", func() bool { return b.Stats().InboundRefused > before })

	// A node whose certificate another CA signed: refused in both roles.
	other := newTestCA(t, "some other CA")
	inM := newInbox()
	cfgM := testConfig(3, inM.handle)
	cfgM.TLS = loadTLS(t, other, dir, "mallory")
	m := newNode(t, cfgM)
	m.AddPeer(2, b.Addr().String())
	b.AddPeer(3, m.Addr().String())
	waitFor(t, "both dials to fail", func() bool {
		return m.PeerStats(2).DialFailures > 0 && b.PeerStats(3).DialFailures > 0
	})
	if m.PeerStats(2).Connected || b.PeerStats(3).Connected {
		t.Fatal("a node with a foreign certificate got connected")
	}

	// A plain-TCP node cannot talk to a TLS one.
	plain := newNode(t, testConfig(4, func(*wire.Message) {}))
	plain.AddPeer(2, b.Addr().String())
	waitFor(t, "plain dial to fail", func() bool { return plain.PeerStats(2).DialFailures > 0 })

	// The good link still works.
	sendRetry(t, a, appMsg(1, 2, 1001, nil))
	waitFor(t, "delivery after the refusals", func() bool { return inB.count(1) == 1001 })
	if inB.count(3) != 0 {
		t.Fatal("messages from a refused node were delivered")
	}
}

// TestLoadTLSConfigErrors covers missing and malformed files.
func TestLoadTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	certFile, keyFile, caFile := ca.issue(t, dir, "n")
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("not pem"), 0o600)
	for _, files := range [][3]string{
		{junk, keyFile, caFile},
		{certFile, keyFile, filepath.Join(dir, "missing")},
		{certFile, keyFile, junk},
	} {
		if _, err := LoadTLSConfig(files[0], files[1], files[2]); err == nil {
			t.Errorf("LoadTLSConfig%v succeeded", files)
		}
	}
}
