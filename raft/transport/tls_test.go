package transport

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/wire"
)

// loadTLS issues a certificate for name from ca and loads it.
func loadTLS(t *testing.T, ca *testutil.CA, dir, name string) *tls.Config {
	t.Helper()
	certFile, keyFile, caFile := ca.WriteFiles(t, dir, name)
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
	ca := testutil.NewCA(t, "raftpipe test CA")
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
	testutil.Wait(t, "delivery over TLS", func() bool { return inB.count(1) == 1000 && inA.count(2) == 1000 })
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
	testutil.Wait(t, "certificate-less client to be refused", func() bool { return b.Stats().InboundRefused > before })

	// A node whose certificate another CA signed: refused in both roles.
	other := testutil.NewCA(t, "some other CA")
	inM := newInbox()
	cfgM := testConfig(3, inM.handle)
	cfgM.TLS = loadTLS(t, other, dir, "mallory")
	m := newNode(t, cfgM)
	m.AddPeer(2, b.Addr().String())
	b.AddPeer(3, m.Addr().String())
	testutil.Wait(t, "both dials to fail", func() bool {
		return m.PeerStats(2).DialFailures > 0 && b.PeerStats(3).DialFailures > 0
	})
	if m.PeerStats(2).Connected || b.PeerStats(3).Connected {
		t.Fatal("a node with a foreign certificate got connected")
	}

	// A plain-TCP node cannot talk to a TLS one.
	plain := newNode(t, testConfig(4, func(*wire.Message) {}))
	plain.AddPeer(2, b.Addr().String())
	testutil.Wait(t, "plain dial to fail", func() bool { return plain.PeerStats(2).DialFailures > 0 })

	// The good link still works.
	sendRetry(t, a, appMsg(1, 2, 1001, nil))
	testutil.Wait(t, "delivery after the refusals", func() bool { return inB.count(1) == 1001 })
	if inB.count(3) != 0 {
		t.Fatal("messages from a refused node were delivered")
	}
}

// TestLoadTLSConfigErrors covers missing and malformed files.
func TestLoadTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, "ca")
	certFile, keyFile, caFile := ca.WriteFiles(t, dir, "n")
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
