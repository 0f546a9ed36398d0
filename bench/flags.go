package bench

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// RegisterFlags defines the load flags on fs, writing into cfg, so every
// load generator (raftbench, the peer modules) spells them the same way:
// -clients -inflight -rate -max-outstanding -writes (alias -write-fraction) -stale
// -payload -keys -dist -duration -warmup -drain -op-timeout -seed.
//
// cfg starts from DefaultConfig. Every flag checks its own range when it is
// parsed, so a bad value fails fs.Parse with an error that names the flag
// and the allowed range; a zero is a real zero wherever the range holds one
// (-writes 0 is reads only, -warmup 0 no warm-up, -payload 0 empty values).
// After fs.Parse, call CheckFlags for the rules that involve more than one
// flag. Labels (System, Mode...) are left to the caller.
func RegisterFlags(fs *flag.FlagSet, cfg *Config) {
	*cfg = DefaultConfig()
	intFlag(fs, &cfg.Clients, "clients", 1, maxWorkers, "closed loop: number of clients; open loop: ops are spread over them round-robin")
	intFlag(fs, &cfg.Inflight, "inflight", 1, maxWorkers, "closed loop: requests outstanding per client (clients*inflight at most 4096)")
	floatFlag(fs, &cfg.RateOpsPerSec, "rate", 0, maxRateOpsPerSec, "open loop at this total rate, ops/s (0 = closed loop); latency counts from each op's scheduled time")
	intFlag(fs, &cfg.MaxOutstanding, "max-outstanding", 1, maxWorkers, "open loop only: bound on outstanding requests (unset = max(256, clients*inflight))")
	floatFlag(fs, &cfg.WriteFraction, "writes", 0, 1, "share of ops that are writes: 0 = reads only, 1 = writes only")
	floatFlag(fs, &cfg.WriteFraction, "write-fraction", 0, 1, "same as -writes")
	fs.BoolVar(&cfg.StaleReads, "stale", false, "reads may be stale (no linearizability check); needs reads (-writes below 1)")
	intFlag(fs, &cfg.PayloadBytes, "payload", 0, maxPayloadBytes, "value bytes per write (0 = empty values)")
	intFlag(fs, &cfg.Keys, "keys", 1, maxKeys, "key space size")
	fs.Func("dist", "key distribution: uniform or zipfian (default uniform)", func(s string) error {
		if s != DistUniform && s != DistZipfian {
			return fmt.Errorf("want %s or %s", DistUniform, DistZipfian)
		}
		cfg.Distribution = s
		return nil
	})
	durationFlag(fs, &cfg.Duration, "duration", time.Millisecond, maxDuration, "measurement window")
	durationFlag(fs, &cfg.Warmup, "warmup", 0, maxWarmup, "unrecorded warm-up before the window (0 = none)")
	durationFlag(fs, &cfg.DrainTimeout, "drain", time.Millisecond, maxDrainTimeout, "after the window, how long ops sent in it may take before they are cancelled")
	durationFlag(fs, &cfg.OpTimeout, "op-timeout", 0, maxOpTimeout, "per-op deadline (0 = none; the target's own timeouts apply)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "workload seed (keys, mix, payload bytes); any value, 0 included")
}

// CheckFlags checks, after fs.Parse, the rules between the flags that
// RegisterFlags defined; each error names the flags. fs must be the set
// RegisterFlags was given and cfg the Config it wrote into.
func CheckFlags(fs *flag.FlagSet, cfg *Config) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case set["writes"] && set["write-fraction"]:
		return errors.New("-writes and -write-fraction are the same setting: give one")
	case set["max-outstanding"] && cfg.RateOpsPerSec == 0:
		return errors.New("-max-outstanding bounds the open loop: it needs -rate above 0")
	case set["inflight"] && cfg.RateOpsPerSec > 0:
		return errors.New("-inflight is the closed loop's depth per client: with -rate use -max-outstanding")
	case cfg.StaleReads && cfg.WriteFraction >= 1:
		return errors.New("-stale marks reads stale, but -writes 1 sends no reads: lower -writes (0 = reads only)")
	case cfg.RateOpsPerSec == 0 && cfg.Clients*cfg.Inflight > maxWorkers:
		return fmt.Errorf("-clients %d x -inflight %d = %d requests outstanding, above the bound of %d", cfg.Clients, cfg.Inflight, cfg.Clients*cfg.Inflight, maxWorkers)
	}
	return nil
}

// rangeValue is a flag.Value that refuses values outside [lo, hi] when it
// is set, so the error names the flag (the flag package adds its name).
type rangeValue[T int | float64 | time.Duration] struct {
	p      *T
	lo, hi T
	parse  func(string) (T, error)
}

func (v *rangeValue[T]) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return fmt.Sprint(*v.p)
}

func (v *rangeValue[T]) Set(s string) error {
	x, err := v.parse(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%v; want %v..%v", err, v.lo, v.hi)
	}
	// Written so that NaN fails too.
	if !(x >= v.lo && x <= v.hi) {
		return fmt.Errorf("%v is outside the allowed range %v..%v", x, v.lo, v.hi)
	}
	*v.p = x
	return nil
}

func intFlag(fs *flag.FlagSet, p *int, name string, lo, hi int, usage string) {
	fs.Var(&rangeValue[int]{p: p, lo: lo, hi: hi, parse: func(s string) (int, error) {
		x, err := strconv.ParseInt(s, 0, 64)
		if err != nil {
			return 0, errors.New("not an integer")
		}
		return int(x), nil
	}}, name, fmt.Sprintf("%s; %d..%d", usage, lo, hi))
}

func floatFlag(fs *flag.FlagSet, p *float64, name string, lo, hi float64, usage string) {
	fs.Var(&rangeValue[float64]{p: p, lo: lo, hi: hi, parse: func(s string) (float64, error) {
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(x) {
			return 0, errors.New("not a number")
		}
		return x, nil
	}}, name, fmt.Sprintf("%s; %v..%v", usage, lo, hi))
}

func durationFlag(fs *flag.FlagSet, p *time.Duration, name string, lo, hi time.Duration, usage string) {
	fs.Var(&rangeValue[time.Duration]{p: p, lo: lo, hi: hi, parse: func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New("not a duration (e.g. 10s, 500ms)")
		}
		return d, nil
	}}, name, fmt.Sprintf("%s; %v..%v", usage, lo, hi))
}
