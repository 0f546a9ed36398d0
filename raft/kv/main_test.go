package kv

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind (Pebble's
// included: every store a test opens must be closed).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
