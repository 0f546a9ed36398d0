package main

import (
	"bytes"
	"fmt"

	"github.com/raftpipe/raftpipe/raft/node"
)

// Bounds on the admin token file.
const (
	// maxAdminTokenFileBytes bounds the token file read into memory.
	maxAdminTokenFileBytes = 4096
	// minAdminTokenBytes refuses tokens short enough to guess; 16 random
	// characters is what `openssl rand -hex 16` (32) comfortably exceeds.
	minAdminTokenBytes = 16
)

// loadAdminAuth checks the admin access flags against each other and the
// TLS flags, and reads the token file. The rules (docs/deploy.md, "The
// admin port"): with TLS, privileged admin endpoints take a client
// certificate from -tls-ca and nothing else; without TLS, the bearer token
// from -admin-token-file; with neither, they are refused unless
// -admin-insecure. Errors wrap errUsage.
func (o *runOptions) loadAdminAuth() error {
	switch {
	case o.adminInsecure && o.tlsConfig != nil:
		return usageErrorf("-admin-insecure contradicts the TLS flags: with TLS the admin port authenticates by client certificate")
	case o.adminInsecure && o.adminTokenFile != "":
		return usageErrorf("-admin-insecure contradicts -admin-token-file: give one or the other")
	case o.adminTokenFile != "" && o.tlsConfig != nil:
		return usageErrorf("-admin-token-file: with TLS the admin port authenticates by client certificate from -tls-ca; the token is for clusters without TLS")
	case o.adminTokenFile == "":
		return nil
	}
	tok, err := readAdminToken(o.adminTokenFile)
	if err != nil {
		return usageErrorf("-admin-token-file: %v", err)
	}
	o.adminToken = tok
	return nil
}

// adminAuth is the node's admin access policy from the validated options.
func (o *runOptions) adminAuth() node.AdminAuth {
	a := node.AdminAuth{Token: o.adminToken, Insecure: o.adminInsecure, RestrictReads: !o.adminOpenRead}
	if o.tlsConfig != nil {
		a.ClientCAs = o.tlsConfig.ClientCAs
	}
	return a
}

// adminAuthMode names the policy for the start-up log line.
func (o *runOptions) adminAuthMode() string {
	switch {
	case o.tlsConfig != nil:
		return "client-certificate"
	case o.adminToken != nil:
		return "token"
	case o.adminInsecure:
		return "insecure"
	}
	return "disabled"
}

// readAdminToken reads a token file: surrounding white space (a trailing
// newline) is dropped; the rest must be at least minAdminTokenBytes of
// visible ASCII, so that it travels unchanged in an HTTP header. The
// node and `raftnode admin` read the same file the same way.
func readAdminToken(path string) ([]byte, error) {
	b, err := readBounded(path, maxAdminTokenFileBytes)
	if err != nil {
		return nil, err
	}
	tok := bytes.TrimSpace(b)
	if len(tok) < minAdminTokenBytes {
		return nil, fmt.Errorf("%s: the token is %d bytes long, at least %d required (e.g. openssl rand -hex 32)", path, len(tok), minAdminTokenBytes)
	}
	for _, c := range tok {
		if c <= ' ' || c >= 0x7f {
			return nil, fmt.Errorf("%s: the token must be visible ASCII without spaces (it is sent in an HTTP header)", path)
		}
	}
	return tok, nil
}
