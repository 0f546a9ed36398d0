package testutil

import (
	"testing"

	"github.com/raftpipe/raftpipe/internal/loopback"
)

// ReserveAddr reserves a 127.0.0.1 port for something the test starts
// later, or fails the test. internal/loopback explains why a fixed-up-front
// address is not taken with ":0".
func ReserveAddr(t testing.TB) string {
	t.Helper()
	addr, err := loopback.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
