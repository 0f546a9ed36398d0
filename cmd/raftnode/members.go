package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/raftpipe/raftpipe/raft/node"
)

// maxMembersListed bounds the -members list. Raft clusters are 3 to 7
// voters plus a few learners; a longer list is a typo (or a pasted file),
// and the node's own membership record has a limit too.
const maxMembersListed = 128

// maxAddrBytes bounds one host:port, like the node's membership record.
const maxAddrBytes = 1024

// parseMembers parses the -members syntax:
//
//	ID=PEERHOST:PORT[/CLIENTHOST:PORT],ID=...
//
// IDs are non-zero and unique; the client address is optional (a member
// without one cannot be named in not-leader answers). Empty input is an
// empty list.
func parseMembers(s string) ([]node.Member, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxMembersListed {
		return nil, fmt.Errorf("%d members listed, at most %d allowed", len(parts), maxMembersListed)
	}
	seen := make(map[uint64]bool, len(parts))
	out := make([]node.Member, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		idStr, addrs, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("member %d %q: want ID=PEERHOST:PORT/CLIENTHOST:PORT", i+1, p)
		}
		id, err := parseID(strings.TrimSpace(idStr))
		if err != nil {
			return nil, fmt.Errorf("member %d %q: %w", i+1, p, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("member %d %q: ID %d listed twice", i+1, p, id)
		}
		seen[id] = true
		peer, client, _ := strings.Cut(strings.TrimSpace(addrs), "/")
		peer, client = strings.TrimSpace(peer), strings.TrimSpace(client)
		if err := checkDialAddr(peer); err != nil {
			return nil, fmt.Errorf("member %d %q: peer address: %w", i+1, p, err)
		}
		if client != "" {
			if err := checkDialAddr(client); err != nil {
				return nil, fmt.Errorf("member %d %q: client address: %w", i+1, p, err)
			}
		}
		out = append(out, node.Member{ID: id, PeerAddr: peer, ClientAddr: client})
	}
	return out, nil
}

// parseID parses a node ID: a non-zero unsigned decimal.
func parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("node ID %q is not an unsigned decimal number", s)
	}
	if id == 0 {
		return 0, fmt.Errorf("node ID must be non-zero")
	}
	return id, nil
}

// splitAddr splits host:port and checks the port is a number in range.
func splitAddr(addr string) (host string, port uint64, err error) {
	if addr == "" {
		return "", 0, fmt.Errorf("empty address")
	}
	if len(addr) > maxAddrBytes {
		return "", 0, fmt.Errorf("address is %d bytes long, at most %d allowed", len(addr), maxAddrBytes)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: want HOST:PORT: %w", addr, err)
	}
	port, err = strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, portStr)
	}
	return host, port, nil
}

// checkListenAddr accepts any host:port one can bind, including ":7100"
// and port 0 (an ephemeral port, useful only in tests).
func checkListenAddr(addr string) error {
	_, _, err := splitAddr(addr)
	return err
}

// checkDialAddr accepts host:port that another host can dial: a specific
// host (not empty, not 0.0.0.0 or ::) and a non-zero port.
func checkDialAddr(addr string) error {
	host, port, err := splitAddr(addr)
	if err != nil {
		return err
	}
	if isWildcardHost(host) {
		return fmt.Errorf("%q: the host must be one other machines can dial, not empty or a wildcard", addr)
	}
	if port == 0 {
		return fmt.Errorf("%q: port 0 cannot be dialed", addr)
	}
	return nil
}

// isWildcardHost reports whether host means "every interface".
func isWildcardHost(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// formatMembers is the inverse of parseMembers (for logs and tests).
func formatMembers(ms []node.Member) string {
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d=%s", m.ID, m.PeerAddr)
		if m.ClientAddr != "" {
			b.WriteString("/" + m.ClientAddr)
		}
	}
	return b.String()
}
