package bench

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// parseLoadFlags parses args with RegisterFlags and CheckFlags, as a load
// generator does.
func parseLoadFlags(args ...string) (Config, error) {
	var cfg Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	RegisterFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	return cfg, CheckFlags(fs, &cfg)
}

// TestLoadFlagBoundaries checks every load flag at 0, a negative value, its
// maximum and just past it. A refusal must name the flag and, for range
// errors, the allowed range; an accepted value must survive withDefaults
// unchanged (no zero is silently replaced).
func TestLoadFlagBoundaries(t *testing.T) {
	type probe struct {
		value string
		ok    bool
		// extra flags that make the value meaningful (e.g. -rate for -max-outstanding).
		extra []string
	}
	i := strconv.Itoa
	d := func(x time.Duration) string { return x.String() }
	for _, tc := range []struct {
		flag   string
		rng    string // the allowed range as the error prints it
		probes []probe
		// got reads the flag's field after withDefaults.
		got func(Config) string
	}{
		{"clients", "1..4096", []probe{{"0", false, nil}, {"-1", false, nil}, {i(maxWorkers), true, nil}, {i(maxWorkers + 1), false, nil}},
			func(c Config) string { return i(c.Clients) }},
		{"inflight", "1..4096", []probe{{"0", false, nil}, {"-1", false, nil}, {i(maxWorkers), true, []string{"-clients", "1"}}, {i(maxWorkers + 1), false, nil}},
			func(c Config) string { return i(c.Inflight) }},
		{"rate", "0..1e+07", []probe{{"0", true, nil}, {"-1", false, nil}, {"1e+07", true, nil}, {"10000001", false, nil}, {"NaN", false, nil}},
			func(c Config) string { return strconv.FormatFloat(c.RateOpsPerSec, 'g', -1, 64) }},
		{"max-outstanding", "1..4096", []probe{{"0", false, []string{"-rate", "10"}}, {"-1", false, nil}, {i(maxWorkers), true, []string{"-rate", "10"}}, {i(maxWorkers + 1), false, nil}},
			func(c Config) string { return i(c.MaxOutstanding) }},
		{"writes", "0..1", []probe{{"0", true, nil}, {"-1", false, nil}, {"1", true, nil}, {"1.0001", false, nil}, {"NaN", false, nil}},
			func(c Config) string { return strconv.FormatFloat(c.WriteFraction, 'g', -1, 64) }},
		{"write-fraction", "0..1", []probe{{"0", true, nil}, {"-0.5", false, nil}, {"1", true, nil}, {"2", false, nil}},
			func(c Config) string { return strconv.FormatFloat(c.WriteFraction, 'g', -1, 64) }},
		{"payload", "0..67108864", []probe{{"0", true, nil}, {"-1", false, nil}, {i(maxPayloadBytes), true, nil}, {i(maxPayloadBytes + 1), false, nil}},
			func(c Config) string { return i(c.PayloadBytes) }},
		{"keys", "1..1152921504606846976", []probe{{"0", false, nil}, {"-1", false, nil}, {i(maxKeys), true, nil}, {i(maxKeys + 1), false, nil}},
			func(c Config) string { return i(c.Keys) }},
		{"duration", "1ms..24h0m0s", []probe{{"0s", false, nil}, {"-1s", false, nil}, {d(maxDuration), true, nil}, {d(maxDuration + 1), false, nil}},
			func(c Config) string { return d(c.Duration) }},
		{"warmup", "0s..1h0m0s", []probe{{"0s", true, nil}, {"-1s", false, nil}, {d(maxWarmup), true, nil}, {d(maxWarmup + 1), false, nil}},
			func(c Config) string { return d(c.Warmup) }},
		{"drain", "1ms..1h0m0s", []probe{{"0s", false, nil}, {"-1s", false, nil}, {d(maxDrainTimeout), true, nil}, {d(maxDrainTimeout + 1), false, nil}},
			func(c Config) string { return d(c.DrainTimeout) }},
		{"op-timeout", "0s..1h0m0s", []probe{{"0s", true, nil}, {"-1s", false, nil}, {d(maxOpTimeout), true, nil}, {d(maxOpTimeout + 1), false, nil}},
			func(c Config) string { return d(c.OpTimeout) }},
		// -seed is a uint64: every value is a seed; the flag package refuses
		// what does not parse.
		{"seed", "", []probe{{"0", true, nil}, {"-1", false, nil}, {"18446744073709551615", true, nil}, {"18446744073709551616", false, nil}},
			func(c Config) string { return strconv.FormatUint(c.Seed, 10) }},
	} {
		for _, p := range tc.probes {
			args := append([]string{"-" + tc.flag, p.value}, p.extra...)
			cfg, err := parseLoadFlags(args...)
			if !p.ok {
				if err == nil {
					t.Errorf("%q accepted, want a refusal", args)
				} else if !strings.Contains(err.Error(), "-"+tc.flag) || !strings.Contains(err.Error(), tc.rng) {
					t.Errorf("%q: error %q does not name -%s and the range %q", args, err, tc.flag, tc.rng)
				}
				continue
			}
			if err != nil {
				t.Errorf("%q refused: %v", args, err)
				continue
			}
			eff, err := cfg.withDefaults()
			if err != nil {
				t.Errorf("%q: parsed, but withDefaults refused it: %v", args, err)
				continue
			}
			if got := tc.got(eff); got != p.value {
				t.Errorf("%q: effective value %s, want %s (a value was replaced)", args, got, p.value)
			}
		}
	}
}

func TestLoadFlagDefaultsAndEnums(t *testing.T) {
	cfg, err := parseLoadFlags()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, DefaultConfig()) {
		t.Fatalf("no flags gave %+v, want DefaultConfig %+v", cfg, DefaultConfig())
	}
	if cfg, err := parseLoadFlags("-dist", "zipfian"); err != nil || cfg.Distribution != DistZipfian {
		t.Fatalf("-dist zipfian: %v %v", cfg.Distribution, err)
	}
	if _, err := parseLoadFlags("-dist", "pareto"); err == nil || !strings.Contains(err.Error(), "-dist") {
		t.Fatalf("-dist pareto: %v", err)
	}
	// The reproduction: reads only, stale, must stay reads only.
	cfg, err = parseLoadFlags("-writes", "0", "-stale")
	if err != nil {
		t.Fatal(err)
	}
	if eff, _ := cfg.withDefaults(); eff.WriteFraction != 0 || !eff.StaleReads {
		t.Fatalf("-writes 0 -stale ran with write fraction %v stale %v", eff.WriteFraction, eff.StaleReads)
	}
}

func TestCheckFlagsCombinations(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" = accepted
	}{
		{[]string{"-writes", "0.5", "-write-fraction", "0.5"}, "-write-fraction"},
		{[]string{"-max-outstanding", "10"}, "-rate"},
		{[]string{"-rate", "100", "-max-outstanding", "10"}, ""},
		{[]string{"-rate", "100", "-inflight", "2"}, "-inflight"},
		{[]string{"-stale"}, "-stale"},
		{[]string{"-stale", "-writes", "0.99"}, ""},
		{[]string{"-clients", "4096", "-inflight", "2"}, "-clients 4096 x -inflight 2"},
		{[]string{"-clients", "2048", "-inflight", "2"}, ""},
		{[]string{"-clients", "4096", "-rate", "10"}, ""},
	} {
		_, err := parseLoadFlags(tc.args...)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q refused: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}

// TestConfigZeroesHonoured pins the Go API's rule: fields where zero is a
// real value keep it; the rest take defaults; negatives are refused.
func TestConfigZeroesHonoured(t *testing.T) {
	got, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.WriteFraction != 0 || got.Warmup != 0 || got.PayloadBytes != 0 || got.Seed != 0 || got.OpTimeout != 0 {
		t.Fatalf("a zero was replaced: %+v", got)
	}
	if got.Clients != defaultClients || got.Inflight != 1 || got.Keys != defaultKeys || got.Duration != defaultDuration ||
		got.DrainTimeout != defaultDrainTimeout || got.Distribution != DistUniform {
		t.Fatalf("meaningless zeroes not defaulted: %+v", got)
	}
	for _, c := range []Config{
		{Warmup: -1}, {DrainTimeout: -1}, {OpTimeout: -1}, {Duration: -1}, {Keys: -1}, {Inflight: -1},
		{PayloadBytes: -1}, {WriteFraction: -0.1}, {RateOpsPerSec: maxRateOpsPerSec + 1}, {Keys: maxKeys + 1},
	} {
		if _, err := c.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", c, err)
		}
	}
}

func TestLoadLine(t *testing.T) {
	for _, tc := range []struct {
		r    Report
		want string
	}{
		{Report{WriteFraction: 1, LoadModel: "closed", Clients: 64, Inflight: 1}, "load: writes only, closed loop, 64 clients x 1 inflight"},
		{Report{WriteFraction: 0, StaleReads: true, LoadModel: "closed", Clients: 8, Inflight: 2}, "load: reads only (stale), closed loop, 8 clients x 2 inflight"},
		{Report{WriteFraction: 0.25, LoadModel: "open", RateOpsPerSec: 5000, MaxOutstanding: 256}, "load: 25% writes, 75% reads (linearizable), open loop at 5000 ops/s (max 256 outstanding)"},
	} {
		if got := tc.r.LoadLine(); got != tc.want {
			t.Errorf("LoadLine = %q, want %q", got, tc.want)
		}
	}
}
