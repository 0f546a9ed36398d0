package node

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/raftpipe/raftpipe/internal/testutil"
)

// okHandler stands in for the admin mux: every request that reaches it
// is answered 200 "served".
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served") })

// authProbe is one request and the answer the guard must give.
type authProbe struct {
	name    string
	method  string
	path    string
	header  string // Authorization header, if any
	code    int
	reason  int    // counted refusal reason, or -1 for none
	message string // substring of a refusal's body
	wwwAuth bool   // a Bearer challenge is expected
}

// runProbes sends each probe through hc to base and checks the status, the
// body and which refusal counter moved.
func runProbes(t *testing.T, hc *http.Client, base string, refused *[numRefusedReasons]atomic.Uint64, probes []authProbe) {
	t.Helper()
	for _, p := range probes {
		var before [numRefusedReasons]uint64
		for i := range before {
			before[i] = refused[i].Load()
		}
		req, err := http.NewRequest(p.method, base+p.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.header != "" {
			req.Header.Set("Authorization", p.header)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("%s: %v", p.name, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != p.code || (p.code == http.StatusOK && string(body) != "served") ||
			(p.message != "" && !strings.Contains(string(body), p.message)) {
			t.Errorf("%s: %s %q; want %d mentioning %q", p.name, resp.Status, body, p.code, p.message)
		}
		for i := range before {
			want := before[i]
			if i == p.reason {
				want++
			}
			if got := refused[i].Load(); got != want {
				t.Errorf("%s: raftpipe_admin_refused_total{reason=%q} = %d, want %d", p.name, refusedReasonNames[i], got, want)
			}
		}
		if p.wwwAuth && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("%s: a 401 from a token-protected node has WWW-Authenticate %q, want a Bearer challenge", p.name, resp.Header.Get("WWW-Authenticate"))
		}
	}
}

// TestAdminAuthToken: with a bearer token, privileged endpoints need it
// (missing: 401 no_credentials; wrong or malformed: 401 bad_token) and
// the open reads do not, unless RestrictReads.
func TestAdminAuthToken(t *testing.T) {
	var refused [numRefusedReasons]atomic.Uint64
	token := "s3cret-token-0123456789"
	srv := httptest.NewServer(newAdminGuard(AdminAuth{Token: []byte(token)}, &refused, okHandler))
	defer srv.Close()
	runProbes(t, srv.Client(), srv.URL, &refused, []authProbe{
		{"token: missing", "POST", "/admin/add", "", 401, refusedNoCredentials, "the bearer token is required", true},
		{"token: wrong", "POST", "/admin/add", "Bearer " + token + "x", 401, refusedBadToken, "wrong bearer token", true},
		{"token: prefix", "POST", "/admin/add", "Bearer " + token[:10], 401, refusedBadToken, "wrong bearer token", false},
		{"token: other scheme", "POST", "/admin/remove", "Basic " + token, 401, refusedBadToken, `not "Bearer <token>"`, false},
		{"token: correct", "POST", "/admin/add", "Bearer " + token, 200, -1, "", false},
		{"token: scheme is case-insensitive", "POST", "/admin/transfer", "bearer " + token, 200, -1, "", false},
		{"token: pprof needs it", "GET", "/debug/pprof/", "", 401, refusedNoCredentials, "", false},
		{"token: unknown paths need it", "GET", "/nowhere", "", 401, refusedNoCredentials, "", false},
		{"token: status is open", "GET", "/status", "", 200, -1, "", false},
		{"token: metrics is open", "GET", "/metrics", "", 200, -1, "", false},
		{"token: stages is open", "GET", "/stages?reset=1", "", 200, -1, "", false},
		{"token: snapshot needs it", "GET", "/admin/snapshot", "", 401, refusedNoCredentials, "", false},
		{"token: a write to /status is not a read", "POST", "/status", "", 401, refusedNoCredentials, "", false},
	})

	closed := httptest.NewServer(newAdminGuard(AdminAuth{Token: []byte(token), RestrictReads: true}, &refused, okHandler))
	defer closed.Close()
	runProbes(t, closed.Client(), closed.URL, &refused, []authProbe{
		{"restricted: status without token", "GET", "/status", "", 401, refusedNoCredentials, "", false},
		{"restricted: metrics with a wrong token", "GET", "/metrics", "Bearer nope", 401, refusedBadToken, "", false},
		{"restricted: metrics with the token", "GET", "/metrics", "Bearer " + token, 200, -1, "", false},
	})
}

// TestAdminAuthUnconfigured: with no credential configured, privileged
// endpoints are refused (403) unless Insecure; reads stay open.
func TestAdminAuthUnconfigured(t *testing.T) {
	var refused [numRefusedReasons]atomic.Uint64
	srv := httptest.NewServer(newAdminGuard(AdminAuth{}, &refused, okHandler))
	defer srv.Close()
	runProbes(t, srv.Client(), srv.URL, &refused, []authProbe{
		{"none: add", "POST", "/admin/add", "", 403, refusedNotConfigured, "admin endpoints are disabled", false},
		{"none: with a token anyway", "POST", "/admin/add", "Bearer x", 403, refusedNotConfigured, "", false},
		{"none: status", "GET", "/status", "", 200, -1, "", false},
	})
	insecure := httptest.NewServer(newAdminGuard(AdminAuth{Insecure: true}, &refused, okHandler))
	defer insecure.Close()
	runProbes(t, insecure.Client(), insecure.URL, &refused, []authProbe{
		{"insecure: add", "POST", "/admin/add", "", 200, -1, "", false},
	})
}

// TestAdminAuthCertificate: with TLS, privileged endpoints need a client
// certificate from the cluster's CA. One from another CA is a 401 that
// says so (not a handshake failure); no certificate is a 401 too; the
// open reads need none.
func TestAdminAuthCertificate(t *testing.T) {
	ca, other := testutil.NewCA(t, "cluster-ca"), testutil.NewCA(t, "other-ca")
	nodeTLS := &tls.Config{
		Certificates: []tls.Certificate{ca.KeyPair(t, "node")},
		ClientCAs:    ca.Pool(),
		RootCAs:      ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	var refused [numRefusedReasons]atomic.Uint64
	srv := httptest.NewUnstartedServer(newAdminGuard(AdminAuth{ClientCAs: nodeTLS.ClientCAs}, &refused, okHandler))
	srv.TLS = AdminTLSConfig(nodeTLS)
	srv.StartTLS()
	defer srv.Close()
	clientWith := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs}}}
	}
	good, foreign, none := clientWith(ca.KeyPair(t, "operator")), clientWith(other.KeyPair(t, "intruder")), clientWith()
	defer good.CloseIdleConnections()
	defer foreign.CloseIdleConnections()
	defer none.CloseIdleConnections()
	runProbes(t, good, srv.URL, &refused, []authProbe{
		{"cert: from the cluster CA", "POST", "/admin/add", "", 200, -1, "", false},
		{"cert: plus a token the node does not take", "POST", "/admin/add", "Bearer x", 401, refusedBadToken, "takes no bearer token", false},
	})
	runProbes(t, foreign, srv.URL, &refused, []authProbe{
		{"cert: from another CA", "POST", "/admin/add", "", 401, refusedBadCertificate, "not valid for this cluster", false},
		{"cert: another CA may still read", "GET", "/status", "", 200, -1, "", false},
	})
	runProbes(t, none, srv.URL, &refused, []authProbe{
		{"cert: none", "POST", "/admin/remove", "", 401, refusedNoCredentials, "client certificate from the cluster CA is required", false},
		{"cert: none, metrics", "GET", "/metrics", "", 200, -1, "", false},
	})
}

// TestAdminRefusedMetric: a node's own admin handler counts refusals in
// raftpipe_admin_refused_total, exposed for every reason from the start.
func TestAdminRefusedMetric(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	n := c.leader()
	fams, _ := scrape(t, n)
	for _, r := range refusedReasonNames {
		if v, ok := sample(fams, "raftpipe_admin_refused_total", "reason", r); !ok || v != 0 {
			t.Fatalf("raftpipe_admin_refused_total{reason=%q} = %v (exposed %v), want 0", r, v, ok)
		}
	}
	h := n.AdminHandlerWith(AdminAuth{Token: []byte("the-right-token-123")})
	for _, hdr := range []string{"", "Bearer wrong"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/admin/remove?id=1", nil)
		if hdr != "" {
			req.Header.Set("Authorization", hdr)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("remove with Authorization %q: %d %s", hdr, rec.Code, rec.Body)
		}
	}
	fams, _ = scrape(t, n)
	for r, want := range map[string]float64{"no_credentials": 1, "bad_token": 1, "bad_certificate": 0, "not_configured": 0} {
		if v, _ := sample(fams, "raftpipe_admin_refused_total", "reason", r); v != want {
			t.Errorf("raftpipe_admin_refused_total{reason=%q} = %v, want %v", r, v, want)
		}
	}
}
