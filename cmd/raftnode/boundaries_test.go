package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestRunFlagBoundaries checks every numeric run flag at 0, a negative
// value, its maximum and just past it. A refusal is a usage error (exit
// status 2) that names the flag; an accepted value is kept as given.
func TestRunFlagBoundaries(t *testing.T) {
	type probe struct {
		value string
		ok    bool
	}
	for _, tc := range []struct {
		flag   string
		extra  []string // flags that make the probes meaningful
		probes []probe
		got    func(*runOptions) string
	}{
		{"id", []string{"-members", "18446744073709551615=10.0.0.1:7100/10.0.0.1:7101"}, []probe{{"0", false}, {"-1", false}, {"18446744073709551615", true}, {"18446744073709551616", false}},
			nil},
		{"cluster-id", nil, []probe{{"0", false}, {"-1", false}, {"18446744073709551615", true}, {"18446744073709551616", false}},
			nil},
		{"tick", nil, []probe{{"0s", false}, {"-1ms", false}, {"10s", true}, {"10.000000001s", false}},
			func(o *runOptions) string { return o.tick.String() }},
		{"election-ticks", []string{"-heartbeat-ticks", "1"}, []probe{{"0", false}, {"-1", false}, {"10000", true}, {"10001", false}, {"1", false}, {"2", true}},
			nil},
		{"heartbeat-ticks", []string{"-election-ticks", "10000"}, []probe{{"0", false}, {"-1", false}, {"9999", true}, {"10000", false}},
			nil},
		{"snapshot-entries", nil, []probe{{"0", false}, {"-1", false}, {"100000000", true}, {"100000001", false}},
			nil},
		{"retain-entries", nil, []probe{{"0", false}, {"-1", false}, {"100000000", true}, {"100000001", false}},
			nil},
		{"groups", nil, []probe{{"0", false}, {"-1", false}, {"1", true}, {"4096", true}, {"4097", false}},
			func(o *runOptions) string { return fmt.Sprint(o.groups) }},
		{"wal-sync-delay", nil, []probe{{"0s", true}, {"-1ns", false}, {"1s", true}, {"1.000000001s", false}},
			func(o *runOptions) string { return o.walSyncDelay.String() }},
	} {
		for _, p := range tc.probes {
			args := append(append(baseArgs(t), tc.extra...), "-"+tc.flag, p.value)
			o, err := parse(t, args...)
			if !p.ok {
				mustUsageErrT(t, tc.flag+"="+p.value, err, "-"+tc.flag)
				continue
			}
			if err != nil {
				t.Errorf("-%s %s refused: %v", tc.flag, p.value, err)
				continue
			}
			if tc.got != nil {
				if got := tc.got(o); got != p.value {
					t.Errorf("-%s %s: kept %s", tc.flag, p.value, got)
				}
			}
		}
	}
}

// mustUsageErrT is mustUsageErr that reports instead of stopping, so one
// run lists every failing probe.
func mustUsageErrT(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s accepted, want a usage error mentioning %q", what, want)
		return
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("%s: error %q does not mention %q", what, err, want)
	}
}

// TestRangeErrorsExitTwo runs the command as main does: an out-of-range
// flag, on the command line or in a config file, exits with status 2 and
// a message naming the flag and the range.
func TestRangeErrorsExitTwo(t *testing.T) {
	noSignals := func() <-chan os.Signal { return make(chan os.Signal) }
	conf := writeFile(t, "election-ticks = 10001\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append(baseArgs(t), "-tick", "11s"), "-tick 11s: must be in (0s, 10s]"},
		{append(baseArgs(t), "-snapshot-entries", "0"), "-snapshot-entries 0: must be in 1..100000000"},
		{append(baseArgs(t), "-config", conf), "-election-ticks 10001: must be in 2..10000"},
		{append(baseArgs(t), "-wal-sync-delay", "-1s"), "-wal-sync-delay -1s: must be in 0s..1s"},
	} {
		var out bytes.Buffer
		if code := realMain(append([]string{"run"}, tc.args...), &out, &out, noSignals); code != exitUsage || !strings.Contains(out.String(), tc.want) {
			t.Errorf("raftnode run %q: exit %d, output %q; want exit %d and %q", tc.args, code, out.String(), exitUsage, tc.want)
		}
	}
}

// TestAdminTimeoutBoundaries: -timeout at 0, negative, the maximum (1h)
// and just past it. Accepted values go on to the command itself, which here
// fails as a usage error for a missing command.
func TestAdminTimeoutBoundaries(t *testing.T) {
	for _, tc := range []struct {
		value string
		code  int
		want  string
	}{
		{"0s", exitUsage, "-timeout 0s"},
		{"-1s", exitUsage, "-timeout -1s"},
		{"1h", exitUsage, "missing command"},
		{"1h0m0.000000001s", exitUsage, "-timeout 1h0m0.000000001s: must be in (0s, 1h0m0s]"},
	} {
		var out bytes.Buffer
		code := adminCommand([]string{"-addr", "127.0.0.1:1", "-timeout", tc.value}, &out, &out)
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("admin -timeout %s: exit %d, output %q; want exit %d and %q", tc.value, code, out.String(), tc.code, tc.want)
		}
	}
}
