// Package loopback reserves 127.0.0.1 ports for clusters whose members must
// know each other's addresses before any of them listens (bootstrap needs
// the full member list up front).
//
// Ports come from below the kernel's ephemeral range (32768-60999 on
// Linux): a port picked with ":0" is an ephemeral port, and between closing
// the probe listener and the node binding it again, any outgoing connection
// on the machine may be given that same port as its source, which fails the
// bind with "address already in use". Random ports in [20000, 32000) are
// never handed out as source ports, so only another reservation can race,
// and each candidate is checked by binding it first.
package loopback

import (
	"fmt"
	"math/rand/v2"
	"net"
)

const (
	// lowPort and highPort bound the range reservations come from.
	lowPort, highPort = 20000, 32000
	// maxTries bounds the search for a free port.
	maxTries = 200
)

// Reserve returns "127.0.0.1:PORT" for a port that was free a moment ago.
func Reserve() (string, error) {
	for i := 0; i < maxTries; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", lowPort+rand.IntN(highPort-lowPort))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr, nil
	}
	return "", fmt.Errorf("loopback: no free port in [%d, %d) after %d tries", lowPort, highPort, maxTries)
}
