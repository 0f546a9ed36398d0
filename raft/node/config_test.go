package node

import (
	"strings"
	"testing"

	"github.com/raftpipe/raftpipe/wire"
)

// TestConfigZeroAndNegative pins withDefaults' rule: zero means the
// default where zero has no meaning, a negative value is refused, and a
// partly set Wire keeps what was set.
func TestConfigZeroAndNegative(t *testing.T) {
	base := Config{ID: 1, DataDir: "d", PeerAddr: "127.0.0.1:1"}
	got, err := base.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.TickInterval != DefaultTickInterval || got.ElectionTicks != DefaultElectionTicks || got.MaxInboxMsgs != DefaultMaxInboxMsgs ||
		got.RetainEntries != DefaultRetainEntries || got.Wire != wire.DefaultOptions() {
		t.Fatalf("defaults not applied: %+v", got)
	}
	for name, mut := range map[string]func(*Config){
		"TickInterval":        func(c *Config) { c.TickInterval = -1 },
		"ElectionTicks":       func(c *Config) { c.ElectionTicks = -1 },
		"HeartbeatTicks":      func(c *Config) { c.HeartbeatTicks = -1 },
		"MaxPendingProposals": func(c *Config) { c.MaxPendingProposals = -1 },
		"MaxPendingReads":     func(c *Config) { c.MaxPendingReads = -1 },
		"MaxInboxMsgs":        func(c *Config) { c.MaxInboxMsgs = -1 },
		"MaxInflightMsgs":     func(c *Config) { c.MaxInflightMsgs = -1 },
		"MaxClientConns":      func(c *Config) { c.MaxClientConns = -1 },
		"Wire":                func(c *Config) { c.Wire.MaxFrameBytes = -1 },
	} {
		c := base
		mut(&c)
		if _, err := c.withDefaults(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("negative %s: %v, want an error naming it", name, err)
		}
	}
	c := base
	c.Wire = wire.Options{Compression: wire.CompressionS2}
	got, err = c.withDefaults()
	if err != nil || got.Wire.Compression != wire.CompressionS2 || got.Wire.MaxFrameBytes != wire.DefaultMaxFrameBytes {
		t.Fatalf("partly set Wire: %+v, %v", got.Wire, err)
	}
}
