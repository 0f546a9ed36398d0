package main

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/raftpipe/raftpipe/raft/kv"
)

// TestFlagBoundaries checks raftbench's own flags at 0, a negative value,
// the maximum and just past it (the load flags are checked in package
// bench). Every refusal is a usage error (exit status 2) naming the flag.
func TestFlagBoundaries(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
		want string // in the error
	}{
		{[]string{"-nodes", "0"}, false, "-nodes"},
		{[]string{"-nodes", "-1"}, false, "-nodes"},
		{[]string{"-nodes", "9"}, true, ""},
		{[]string{"-nodes", "10"}, false, "1..9"},
		{[]string{"-conns", "0"}, false, "-conns"},
		{[]string{"-conns", "-1"}, false, "-conns"},
		{[]string{"-conns", "1024"}, true, ""},
		{[]string{"-conns", "1025"}, false, "1..1024"},
		{[]string{"-cluster-id", "0"}, false, "-cluster-id"},
		{[]string{"-cluster-id", "-1"}, false, "-cluster-id"},
		{[]string{"-cluster-id", "18446744073709551615"}, true, ""},
		{[]string{"-cluster-id", "18446744073709551616"}, false, "-cluster-id"},
		{[]string{"-groups", "0"}, false, "-groups"},
		{[]string{"-groups", "-1"}, false, "-groups"},
		{[]string{"-groups", "4096"}, true, ""},
		{[]string{"-groups", "4097"}, false, "1..4096"},
		{[]string{"-groups", "4", "-cluster", "127.0.0.1:1"}, false, "-groups"},
		{[]string{"-payload", "0"}, true, ""},
		{[]string{"-payload", "-1"}, false, "-payload"},
		{[]string{"-payload", "4194304"}, true, ""},
		{[]string{"-payload", "4194305"}, false, "-payload 4194305"},
		{[]string{"-sweep", "clients=0"}, false, "-sweep"},
		{[]string{"-sweep", "clients=-1"}, false, "-sweep"},
		{[]string{"-sweep", "clients=1,4096"}, true, ""},
		{[]string{"-sweep", "clients=4097"}, false, "1..4096"},
		{[]string{"-sweep", "clients=2048", "-inflight", "2"}, true, ""},
		{[]string{"-sweep", "clients=2049", "-inflight", "2"}, false, "-sweep point 2049"},
		// A bad load flag is a usage error too.
		{[]string{"-writes", "0"}, true, ""},
		{[]string{"-writes", "1.5"}, false, "-writes"},
		{[]string{"-clients", "0"}, false, "-clients"},
	} {
		_, _, err := parse(tc.args, io.Discard)
		if tc.ok {
			if err != nil {
				t.Errorf("parse(%q) = %v, want it accepted", tc.args, err)
			}
			continue
		}
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parse(%q) = %v, want a usage error mentioning %q", tc.args, err, tc.want)
		}
	}
	if kv.MaxValueBytes != 4194304 {
		t.Fatalf("kv.MaxValueBytes is %d: update the -payload probes", kv.MaxValueBytes)
	}
}

// TestFlagsThatWouldDoNothing: a flag the combination ignores is refused
// rather than silently dropped.
func TestFlagsThatWouldDoNothing(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-cluster", "127.0.0.1:1", "-nodes", "5"}, "-nodes"},
		{[]string{"-mode", "direct", "-conns", "8"}, "-conns"},
		{[]string{"-cluster", "127.0.0.1:1", "-dir", "/tmp"}, "-dir"},
		{[]string{"-sweep", "clients=1,2", "-rate", "100"}, "-rate"},
		{[]string{"-sweep", "clients=1,2", "-clients", "8"}, "-clients"},
		{[]string{"-stale"}, "-stale"},
		{[]string{"-max-outstanding", "8"}, "-rate"},
	} {
		_, _, err := parse(tc.args, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parse(%q) = %v, want a usage error mentioning %q", tc.args, err, tc.want)
		}
	}
	// Allowed combinations stay allowed.
	for _, args := range [][]string{
		{"-cluster", "127.0.0.1:1", "-dir", "/tmp", "-fsync-probe"},
		{"-cluster", "127.0.0.1:1,127.0.0.1:2", "-admin", "127.0.0.1:3"},
		{"-writes", "0", "-stale"},
	} {
		if _, _, err := parse(args, io.Discard); err != nil {
			t.Errorf("parse(%q) = %v", args, err)
		}
	}
}
