package node

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
)

// AdminAuth says who may use the admin port. The zero value is safe: the
// open reads (/status, /metrics, /stages) are served to anyone, every other
// endpoint (/admin/*, /debug/pprof/*) is refused with 403.
//
// Endpoints are of two kinds:
//   - open reads: GET/HEAD /status, /metrics and /stages. Served without
//     credentials unless RestrictReads is set (Prometheus and raftbench
//     poll them; /stages?reset=1 only restarts a measurement window).
//   - privileged: everything else, i.e. the membership changes, leadership
//     transfer and snapshot under /admin/, and /debug/pprof/ (profiles cost
//     CPU and reveal the command line).
//
// A privileged request is served if it carries a valid credential of a
// configured kind: a client certificate that chains to ClientCAs (the
// admin server must then serve TLS with AdminTLSConfig), or the bearer
// Token. A credential that is presented and invalid is refused even if
// another one is valid. With no kind configured, privileged requests are
// refused (403) unless Insecure is set.
//
// Refusals are 401 (no credential, or an invalid one; with a
// WWW-Authenticate header when a token is configured) or 403 (privileged
// endpoints not configured), each with a one-line reason, and each is
// counted in raftpipe_admin_refused_total{reason}.
type AdminAuth struct {
	// ClientCAs enables certificate authentication: the client's
	// certificate must chain to one of these and allow client
	// authentication. The TLS handshake only requests the certificate
	// (AdminTLSConfig); it is verified per request, so that a certificate
	// from another CA gets a 401 that says why and is counted, instead of
	// a handshake failure the client may report as anything.
	ClientCAs *x509.CertPool
	// Token enables bearer-token authentication: the request carries
	// "Authorization: Bearer <Token>". Compared in constant time (of the
	// tokens' SHA-256, so the length does not leak either).
	Token []byte
	// Insecure serves privileged endpoints without credentials when neither
	// ClientCAs nor Token is set: for a test rig or an admin port that only
	// a trusted network can reach. Ignored when a credential is configured.
	Insecure bool
	// RestrictReads makes /status, /metrics and /stages privileged too. Off by
	// default: they change nothing, and scrapers rarely hold credentials.
	RestrictReads bool
}

// Reasons of raftpipe_admin_refused_total, in the order of
// refusedReasonNames.
const (
	// refusedNoCredentials: a privileged request carried no credential (401).
	refusedNoCredentials = iota
	// refusedBadToken: an Authorization header that is not the bearer
	// token (401).
	refusedBadToken
	// refusedBadCertificate: a client certificate that does not verify
	// against the CA (another CA, expired, not for client use) (401).
	refusedBadCertificate
	// refusedNotConfigured: privileged endpoints with no credential kind
	// configured and Insecure off (403).
	refusedNotConfigured
	numRefusedReasons
)

var refusedReasonNames = [numRefusedReasons]string{"no_credentials", "bad_token", "bad_certificate", "not_configured"}

// AdminTLSConfig derives the admin server's TLS configuration from the
// node's mutual-TLS configuration: the same certificate and CA, but the
// client certificate is only requested in the handshake, so that the open
// reads stay reachable without one and a bad certificate is refused by the
// HTTP layer (see AdminAuth.ClientCAs). TLS 1.3 as on the other ports.
//
// The handshake names no acceptable CAs: a Go client (and others) sends a
// certificate only if it chains to one the server names, so a client
// holding a certificate from the wrong CA would send none and be told only
// that one is missing. Naming none makes it send what it has, and the
// refusal says what is wrong with it.
func AdminTLSConfig(nodeTLS *tls.Config) *tls.Config {
	c := nodeTLS.Clone()
	c.ClientAuth = tls.RequestClientCert
	c.ClientCAs = nil
	c.MinVersion = tls.VersionTLS13
	return c
}

// adminGuard enforces an AdminAuth in front of the admin mux.
type adminGuard struct {
	// auth is the policy; auth.Token is not used after construction.
	auth AdminAuth
	// tokenSum is the SHA-256 of auth.Token, or nil without a token.
	tokenSum []byte
	// refused counts refusals by reason (the node's counters).
	refused *[numRefusedReasons]atomic.Uint64
	// next serves the requests let through.
	next http.Handler
}

// newAdminGuard wraps next in auth's policy, counting refusals in refused.
func newAdminGuard(auth AdminAuth, refused *[numRefusedReasons]atomic.Uint64, next http.Handler) *adminGuard {
	g := &adminGuard{auth: auth, refused: refused, next: next}
	if len(auth.Token) > 0 {
		sum := sha256.Sum256(auth.Token)
		g.tokenSum = sum[:]
	}
	g.auth.Token = nil
	return g
}

// isOpenRead reports whether r is one of the reads served without
// credentials (unless RestrictReads).
func isOpenRead(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	switch r.URL.Path {
	case "/status", "/metrics", "/stages":
		return true
	}
	return false
}

func (g *adminGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.auth.RestrictReads && isOpenRead(r) {
		g.next.ServeHTTP(w, r)
		return
	}
	reason, msg := g.check(r)
	if reason < 0 {
		g.next.ServeHTTP(w, r)
		return
	}
	g.refused[reason].Add(1)
	code := http.StatusUnauthorized
	if reason == refusedNotConfigured {
		code = http.StatusForbidden
	}
	if code == http.StatusUnauthorized && g.tokenSum != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="raftnode admin"`)
	}
	http.Error(w, fmt.Sprintf("admin: %s %s refused: %s", r.Method, r.URL.Path, msg), code)
}

// check returns -1 if r may pass, else the refusal reason and a message
// for the caller (which never echoes what the caller sent).
func (g *adminGuard) check(r *http.Request) (reason int, msg string) {
	certs := g.auth.ClientCAs != nil
	token := g.tokenSum != nil
	if !certs && !token {
		if g.auth.Insecure {
			return -1, ""
		}
		return refusedNotConfigured, "this node's admin endpoints are disabled: start it with TLS (-tls-cert, -tls-key, -tls-ca) or -admin-token-file (or -admin-insecure on a trusted network)"
	}
	presented := false
	if certs && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		presented = true
		if err := verifyClientCert(g.auth.ClientCAs, r.TLS.PeerCertificates); err != nil {
			return refusedBadCertificate, "the client certificate is not valid for this cluster: " + err.Error()
		}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		presented = true
		if !token {
			return refusedBadToken, "this node takes no bearer token (it authenticates admin requests by TLS client certificate)"
		}
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return refusedBadToken, `the Authorization header is not "Bearer <token>"`
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if subtle.ConstantTimeCompare(sum[:], g.tokenSum) != 1 {
			return refusedBadToken, "wrong bearer token"
		}
	}
	if presented {
		return -1, ""
	}
	switch {
	case certs && token:
		return refusedNoCredentials, "a client certificate from the cluster CA or the bearer token is required"
	case certs:
		return refusedNoCredentials, "a client certificate from the cluster CA is required (raftnode admin -tls-cert, -tls-key, -tls-ca)"
	default:
		return refusedNoCredentials, "the bearer token is required (raftnode admin -admin-token-file)"
	}
}

// verifyClientCert checks the presented chain (leaf first) against roots
// for client authentication.
func verifyClientCert(roots *x509.CertPool, chain []*x509.Certificate) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err
}
