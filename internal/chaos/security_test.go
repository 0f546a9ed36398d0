package chaos

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/raftpipe/raftpipe/internal/testutil"
	"io"
	"net"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/raft/client"
	"github.com/raftpipe/raftpipe/raft/node"
	"github.com/raftpipe/raftpipe/wire"
)

// refuseDeadline bounds waiting for a node to close a connection it must
// refuse. Generous for a shared machine; a correct node closes at once.
const refuseDeadline = 10 * time.Second

// putGet writes key=value through cl and reads it back linearizably,
// retrying while the cluster elects (a lone node that saw a bogus peer
// message may step down for an election timeout). It fails t if the pair
// does not succeed within convergeDeadline.
func putGet(t testing.TB, cl *client.Client, key, value string) {
	t.Helper()
	deadline := time.Now().Add(convergeDeadline)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		_, err = cl.Put(ctx, []byte(key), []byte(value))
		if err == nil {
			var v []byte
			var found bool
			v, found, err = cl.Get(ctx, []byte(key))
			if err == nil && (!found || string(v) != value) {
				cancel()
				t.Fatalf("get %s = %q (found %v) right after put %q", key, v, found, value)
			}
		}
		cancel()
		if err == nil {
			return
		}
	}
	t.Fatalf("put+get %s did not succeed within %v: %v", key, convergeDeadline, err)
}

// handshakeFrame is a raftpipe handshake of the given kind.
func handshakeFrame(clusterID uint64, nodeID uint64, kind wire.ConnKind) []byte {
	return wire.AppendHandshake(nil, &wire.Handshake{ClusterID: clusterID, NodeID: nodeID, Version: wire.ProtocolVersion, Kind: kind})
}

// frameHeader is a frame header of type t announcing a payload of n bytes
// (with a CRC that matches no payload: the length is refused first).
func frameHeader(t wire.MsgType, n uint32) []byte {
	h := make([]byte, wire.FrameHeaderSize)
	h[0], h[1], h[2], h[3] = 'R', 'P', wire.ProtocolVersion, byte(t)
	binary.LittleEndian.PutUint32(h[8:], n)
	return h
}

// waitClosed reads from c, discarding what arrives (a handshake answer,
// say), until the peer closes it. It fails t if c is still open at
// refuseDeadline.
func waitClosed(t testing.TB, c net.Conn, what string) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(refuseDeadline)); err != nil {
		t.Fatal(err)
	}
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the node kept the connection open for %v", what, refuseDeadline)
	}
}

// dialRaw connects to addr over plain TCP.
func dialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, refuseDeadline)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return c
}

func TestPeerWithWrongClusterIDRefused(t *testing.T) {
	c := newChaosCluster(t, 3, 0, 1, nil)
	cl := newChaosClient(t, c.ClientAddrs())
	defer cl.Close()
	putGet(t, cl, "before", "1")
	l := c.waitLeader(convergeDeadline)
	before, err := c.status(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members() {
		for _, kind := range []wire.ConnKind{wire.ConnPeer, wire.ConnSnapshot} {
			conn := dialRaw(t, m.PeerAddr)
			// Claim to be another member, but of another cluster, then
			// send a heartbeat whose term the node would adopt if it
			// read it.
			from := m.ID%3 + 1
			msg, err := wire.AppendMessage(handshakeFrame(chaosClusterID+1, from, kind),
				&wire.Message{Type: wire.MsgHeartbeat, From: from, To: m.ID, Term: before.Term + 100}, &wire.Options{MaxFrameBytes: wire.DefaultMaxFrameBytes})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(msg); err != nil {
				t.Fatal(err)
			}
			waitClosed(t, conn, fmt.Sprintf("node %d, kind %d, wrong cluster ID", m.ID, kind))
			conn.Close()
		}
	}
	// A client of another cluster is refused too.
	wrong, err := client.New(client.Config{Addrs: c.ClientAddrs(), ClusterID: chaosClusterID + 1, MaxRetries: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	// The node closes the connection without answering the handshake,
	// so the client sees EOF rather than ErrHandshake.
	if _, err := wrong.Put(context.Background(), []byte("intruder"), []byte("x")); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("put from a client of another cluster: %v, want ErrUnavailable", err)
	}
	putGet(t, cl, "after", "2")
	after, err := c.status(c.waitLeader(convergeDeadline))
	if err != nil {
		t.Fatal(err)
	}
	if after.Term >= before.Term+100 {
		t.Fatalf("term went from %d to %d: the refused heartbeat was read", before.Term, after.Term)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, found, err := cl.Get(ctx, []byte("intruder")); err != nil || found {
		t.Fatalf("get intruder = found %v, %v: a refused client's write applied", found, err)
	}
}

// mutualTLS is the configuration a node (and a well-behaved peer or
// client) uses: present cert, trust only the pool, require client certs.
func mutualTLS(cert tls.Certificate, pool *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13,
	}
}

func TestTLSRefusesUncertifiedPeersAndClients(t *testing.T) {
	pki := testutil.NewCA(t, "raftpipe test CA")
	rogue := testutil.NewCA(t, "rogue CA")
	nodeTLS := mutualTLS(pki.KeyPair(t, "node"), pki.Pool())
	c := newChaosCluster(t, 3, 0, 2, func(cfg *node.Config) { cfg.TLS = nodeTLS })
	// The nodes elected a leader over TLS peer links (through the proxies).
	if c.waitLeader(convergeDeadline) == 0 {
		t.Fatal("no leader over TLS")
	}
	good, err := client.New(client.Config{Addrs: c.ClientAddrs(), ClusterID: chaosClusterID,
		TLS: &tls.Config{Certificates: []tls.Certificate{pki.KeyPair(t, "client")}, RootCAs: pki.Pool(), MinVersion: tls.VersionTLS13}})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	putGet(t, good, "tls", "ok")

	bad := map[string]*tls.Config{
		"no certificate":   {RootCAs: pki.Pool(), MinVersion: tls.VersionTLS13},
		"rogue CA's cert":  {Certificates: []tls.Certificate{rogue.KeyPair(t, "intruder")}, RootCAs: pki.Pool(), MinVersion: tls.VersionTLS13},
		"plain TCP client": nil,
	}
	for name, cfg := range bad {
		cl, err := client.New(client.Config{Addrs: c.ClientAddrs(), ClusterID: chaosClusterID, TLS: cfg, MaxRetries: 2, RequestTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), refuseDeadline)
		_, err = cl.Put(ctx, []byte("intruder"), []byte(name))
		cancel()
		cl.Close()
		if err == nil {
			t.Fatalf("client with %s: put succeeded", name)
		}
		t.Logf("client with %s refused: %v", name, err)
	}
	// Peers: a TLS peer with no or a rogue certificate, and a plain TCP
	// peer, each sending a valid handshake, are all cut off.
	peerBad := map[string]*tls.Config{
		"no certificate":  {RootCAs: pki.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13},
		"rogue CA's cert": {Certificates: []tls.Certificate{rogue.KeyPair(t, "intruder")}, RootCAs: pki.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13},
	}
	addr := c.Member(1).PeerAddr
	for name, cfg := range peerBad {
		raw := dialRaw(t, addr)
		conn := tls.Client(raw, cfg)
		// In TLS 1.3 the client may finish its side of the handshake
		// before the server checks the certificate; the server's refusal
		// then shows on the first read.
		_ = conn.SetDeadline(time.Now().Add(refuseDeadline))
		if err := conn.Handshake(); err == nil {
			_, _ = conn.Write(handshakeFrame(chaosClusterID, 2, wire.ConnPeer))
			waitClosed(t, conn, "peer with "+name)
		}
		conn.Close()
	}
	plain := dialRaw(t, addr)
	_, _ = plain.Write(handshakeFrame(chaosClusterID, 2, wire.ConnPeer))
	waitClosed(t, plain, "plain TCP peer")
	plain.Close()

	putGet(t, good, "tls", "still ok")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, found, err := good.Get(ctx, []byte("intruder")); err != nil || found {
		t.Fatalf("get intruder = found %v, %v: a refused client's write applied", found, err)
	}
}

func TestOversizedFramesDisconnectOnlyTheSender(t *testing.T) {
	c := newChaosCluster(t, 3, 0, 3, nil)
	cl := newChaosClient(t, c.ClientAddrs())
	defer cl.Close()
	putGet(t, cl, "k", "before")
	l := c.waitLeader(convergeDeadline)
	m := c.Member(l)

	// Keep a stream of writes going on the good client while the bad
	// frames arrive; none of them may fail.
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				errc <- nil
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), convergeDeadline)
			_, err := cl.Put(ctx, []byte("k"), []byte(fmt.Sprint("during-", i)))
			cancel()
			if err != nil {
				errc <- fmt.Errorf("put %d during the attack: %w", i, err)
				return
			}
		}
	}()

	over := uint32(wire.DefaultMaxFrameBytes) + 1
	cases := []struct {
		name string
		addr string
		kind wire.ConnKind
		t    wire.MsgType
		n    uint32
	}{
		{"client one over the limit", m.ClientAddr, wire.ConnClient, wire.MsgClientRequest, over},
		{"client 4 GiB", m.ClientAddr, wire.ConnClient, wire.MsgClientRequest, ^uint32(0)},
		{"peer one over the limit", m.PeerAddr, wire.ConnPeer, wire.MsgApp, over},
		{"peer 4 GiB", m.PeerAddr, wire.ConnPeer, wire.MsgApp, ^uint32(0)},
	}
	for _, tc := range cases {
		conn := dialRaw(t, tc.addr)
		id := uint64(0)
		if tc.kind != wire.ConnClient {
			id = 2
		}
		msg := append(handshakeFrame(chaosClusterID, id, tc.kind), frameHeader(tc.t, tc.n)...)
		// A few payload bytes, as a sender that means it would send.
		msg = append(msg, make([]byte, 4096)...)
		if _, err := conn.Write(msg); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		waitClosed(t, conn, tc.name)
		conn.Close()
	}
	close(stop)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	putGet(t, cl, "k", "after")
}
