package bench

import "flag"

// RegisterFlags defines the load flags on fs, writing into cfg, so every
// load generator (raftbench, the peer modules) spells them the same way:
// -clients -inflight -rate -max-outstanding -writes (alias -write-fraction) -stale
// -payload -keys -dist -duration -warmup -drain -op-timeout -seed.
// Defaults are the Config defaults. Labels (System, Mode...) are left to
// the caller.
func RegisterFlags(fs *flag.FlagSet, cfg *Config) {
	fs.IntVar(&cfg.Clients, "clients", defaultClients, "closed loop: number of clients")
	fs.IntVar(&cfg.Inflight, "inflight", defaultInflight, "closed loop: requests outstanding per client")
	fs.Float64Var(&cfg.RateOpsPerSec, "rate", 0, "open loop at this total rate, ops/s (0 = closed loop); latency counts from each op's scheduled time")
	fs.IntVar(&cfg.MaxOutstanding, "max-outstanding", 0, "open loop: bound on outstanding requests (0 = max(256, clients*inflight))")
	fs.Float64Var(&cfg.WriteFraction, "writes", defaultWriteFraction, "share of ops that are writes, 0..1 (negative = reads only)")
	fs.Float64Var(&cfg.WriteFraction, "write-fraction", defaultWriteFraction, "same as -writes")
	fs.BoolVar(&cfg.StaleReads, "stale", false, "reads may be stale (no linearizability check)")
	fs.IntVar(&cfg.PayloadBytes, "payload", defaultPayloadBytes, "value bytes per write")
	fs.IntVar(&cfg.Keys, "keys", defaultKeys, "key space size")
	fs.StringVar(&cfg.Distribution, "dist", DistUniform, "key distribution: uniform or zipfian")
	fs.DurationVar(&cfg.Duration, "duration", defaultDuration, "measurement window")
	fs.DurationVar(&cfg.Warmup, "warmup", defaultWarmup, "unrecorded warm-up before the window (negative = none)")
	fs.DurationVar(&cfg.DrainTimeout, "drain", defaultDrainTimeout, "after the window, how long ops sent in it may take before they are cancelled")
	fs.DurationVar(&cfg.OpTimeout, "op-timeout", 0, "per-op deadline (0 = none; the target's own timeouts apply)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "workload seed (keys, mix, payload bytes)")
}
