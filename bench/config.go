package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Op is one request the driver sends to a Target.
//
// Ownership: the driver owns the Op and its Key and Value buffers and reuses
// them for the worker's next request as soon as Do returns. A Target that
// needs the bytes after Do returns must copy them.
type Op struct {
	// Write selects a put of Key=Value; otherwise the op is a read of Key.
	Write bool
	// Key is the key to put or read; a fixed-width name derived from the key
	// number, so every key has the same size and the byte stream is predictable.
	Key []byte
	// Value is the payload of a write (PayloadBytes long); nil for reads.
	Value []byte
	// Stale allows a read to be answered from local state without a
	// linearizability check (follower or lease-free read). Only set on reads.
	Stale bool
	// Client is the index (0..Clients-1) of the logical client issuing the op,
	// so a Target can route each client to its own connection, as separate
	// client processes would.
	Client int
}

// Target is the system under test.
//
// Do must be safe for concurrent use. It returns when the op is committed
// (write) or answered (read), or with an error. It must not keep op, op.Key
// or op.Value after returning. It should return promptly once ctx is done:
// the driver cancels ctx when a run's drain deadline passes.
type Target interface {
	Do(ctx context.Context, op *Op) error
}

// ErrorClassifier may be implemented by a Target (or supplied in
// Config.ClassifyError) to name the kind of an error for the errors_by_kind
// table. Kinds are short snake_case words: "timeout", "not_leader", "busy",
// "other".
type ErrorClassifier interface {
	ErrorKind(err error) string
}

// Sentinel errors a Target may wrap (with %w) so the default classifier
// names them without a custom classifier.
var (
	// ErrTimeout marks an op the target gave up waiting for; kind "timeout".
	ErrTimeout = errors.New("bench: op timed out")
	// ErrNotLeader marks an op sent to a node that is not the leader; kind "not_leader".
	ErrNotLeader = errors.New("bench: not leader")
	// ErrBusy marks an op the target refused because a queue was full; kind "busy".
	ErrBusy = errors.New("bench: target busy")
	// ErrInvalidConfig is returned (wrapped) by Run when the Config cannot be run.
	ErrInvalidConfig = errors.New("bench: invalid config")
)

// Error kinds produced by the default classifier.
const (
	// KindTimeout: the op or its context timed out.
	KindTimeout = "timeout"
	// KindNotLeader: the op reached a node that is not the leader.
	KindNotLeader = "not_leader"
	// KindBusy: the target refused the op for lack of queue space.
	KindBusy = "busy"
	// KindCanceled: the op's context was cancelled (drain deadline, caller).
	KindCanceled = "canceled"
	// KindOther: any error not recognised.
	KindOther = "other"
	// KindUnsent counts open-loop ops that were scheduled inside the
	// measurement window but never sent because the drain deadline passed.
	KindUnsent = "unsent"
)

// ErrorKind is the default classifier. It recognises this package's
// sentinels, context deadline/cancellation, network timeouts, and any error
// in the chain with a `Kind() string` method.
func ErrorKind(err error) string {
	var kinder interface{ Kind() string }
	var timeout interface{ Timeout() bool }
	switch {
	case err == nil:
		return ""
	case errors.As(err, &kinder):
		return kinder.Kind()
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return KindTimeout
	case errors.Is(err, ErrNotLeader):
		return KindNotLeader
	case errors.Is(err, ErrBusy):
		return KindBusy
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.As(err, &timeout) && timeout.Timeout():
		return KindTimeout
	default:
		return KindOther
	}
}

// Distribution names accepted by Config.Distribution.
const (
	// DistUniform picks every key with equal probability.
	DistUniform = "uniform"
	// DistZipfian skews picks towards low key numbers (Zipf, s = zipfS).
	DistZipfian = "zipfian"
)

// Defaults: DefaultConfig's values, and what withDefaults puts in the
// fields whose zero has no meaning (see Config).
const (
	defaultClients       = 64
	defaultInflight      = 1
	defaultWriteFraction = 1.0
	defaultPayloadBytes  = 128
	defaultKeys          = 100_000
	defaultDuration      = 10 * time.Second
	defaultWarmup        = 2 * time.Second
	defaultSeed          = 1
	// defaultMaxOutstanding bounds open-loop concurrency when the caller
	// gives none: enough for 256k ops/s at 1 ms latency.
	defaultMaxOutstanding = 256
	// defaultDrainTimeout is how long Run waits, after the window closes, for
	// ops sent inside it before cancelling them.
	defaultDrainTimeout = 10 * time.Second
	// zipfS is the Zipf exponent (s > 1 required by math/rand/v2); 1.1 gives
	// a hot set similar to YCSB's default skew.
	zipfS = 1.1
)

// Bounds on the configuration, so memory stays bounded and a typo (a
// missing unit, an extra zero) is refused instead of run.
const (
	// maxWorkers bounds concurrent outstanding requests. Each worker owns a
	// full-range latency histogram (about 140 KiB), so 4096 workers cost
	// about 570 MiB; more than that is a configuration mistake on one host.
	maxWorkers = 4096
	// maxPayloadBytes bounds the per-worker value buffer.
	maxPayloadBytes = 64 << 20
	// keyBytes is the fixed key length: "k" + 15 hex digits of the key number.
	keyBytes = 16
	// maxKeys is the most key numbers 15 hex digits can name.
	maxKeys = 1 << 60
	// maxRateOpsPerSec bounds the open loop's rate: 100 ns between ops, far
	// beyond what one pacer goroutine can schedule; more is a typo.
	maxRateOpsPerSec = 10_000_000
	// maxDuration bounds the window; the per-second series holds one point
	// per second of it.
	maxDuration = 24 * time.Hour
	// maxWarmup, maxDrainTimeout and maxOpTimeout bound the other waits.
	maxWarmup       = time.Hour
	maxDrainTimeout = time.Hour
	maxOpTimeout    = time.Hour
)

// Config describes one run: the load model, the operation mix, and labels
// echoed into the report.
type Config struct {
	// Clients is the number of logical clients. Closed loop: each keeps
	// Inflight requests outstanding. Open loop: ops are spread over clients
	// round-robin (Op.Client) for targets that route by client. 0 means
	// the default, 64 (no run has zero clients).
	Clients int
	// Inflight is the per-client pipeline depth in the closed loop, so that
	// Clients*Inflight requests are outstanding at all times. 0 means 1.
	Inflight int
	// RateOpsPerSec > 0 selects the open loop at this total rate. Latency is
	// then measured from each op's scheduled send time, so a stall in the
	// target counts against every op that should have been sent during it.
	RateOpsPerSec float64
	// MaxOutstanding bounds concurrent requests in the open loop (memory is
	// bounded by it). When all are busy, scheduled ops wait and their latency
	// includes the wait. Default 256 or Clients*Inflight, whichever is larger.
	MaxOutstanding int
	// WriteFraction is the share of ops that are writes, 0..1, taken as
	// given: 0 is reads only. DefaultConfig has 1 (writes only).
	WriteFraction float64
	// StaleReads marks reads as Stale (no linearizability check).
	StaleReads bool
	// PayloadBytes is the size of each written value, taken as given: 0
	// writes empty values. DefaultConfig has 128.
	PayloadBytes int
	// Keys is the size of the key space. 0 means the default, 100000.
	Keys int
	// Distribution is "uniform" (default) or "zipfian" over the key space.
	Distribution string
	// Duration is the measurement window after Warmup. 0 means 10s.
	Duration time.Duration
	// Warmup runs load without recording, so caches, connections and
	// batching reach steady state. Taken as given: 0 is none. DefaultConfig
	// has 2s.
	Warmup time.Duration
	// DrainTimeout bounds how long Run waits after the window for ops sent
	// (or, open loop, scheduled) inside it. Default 10s.
	DrainTimeout time.Duration
	// OpTimeout, when > 0, gives each op a context deadline. Zero leaves
	// timeouts to the target (a per-op timer costs an allocation).
	OpTimeout time.Duration
	// Seed makes key choice, op mix and payload bytes reproducible; every
	// value, 0 included, is a seed. DefaultConfig has 1.
	Seed uint64
	// ClassifyError overrides the error classifier; nil uses the Target's
	// ErrorKind method if it has one, else ErrorKind.
	ClassifyError func(error) string `json:"-"`
	// System names the system under test ("raftpipe", "hashicorp-raft").
	// System, Version, Mode and Nodes are only echoed in the report, so
	// result files say what they measured.
	System string
	// Version is the system's version or commit.
	Version string
	// Mode names the configuration that matters for the numbers, e.g. the
	// durability setting ("fsync", "nosync").
	Mode string
	// Nodes is the cluster size.
	Nodes int
	// Groups is the number of Raft groups the keys are sharded over (0 or
	// 1: one group); echoed in the report like Nodes.
	Groups int
	// CPUPIDs are processes besides this one whose CPU time is charged to
	// the run (the members of a cluster in other processes); see cpu.go.
	CPUPIDs []int
}

// DefaultConfig is the load raftbench runs with no flags: 64 closed-loop
// clients writing 128-byte values over 100000 uniform keys for 10s after a
// 2s warm-up. Start a Config from it: the fields where zero is a real value
// (WriteFraction, Warmup, PayloadBytes, RateOpsPerSec, OpTimeout, Seed)
// are taken as given, so a zero Config{} runs reads only with no warm-up.
func DefaultConfig() Config {
	return Config{
		Clients:       defaultClients,
		Inflight:      defaultInflight,
		WriteFraction: defaultWriteFraction,
		PayloadBytes:  defaultPayloadBytes,
		Keys:          defaultKeys,
		Distribution:  DistUniform,
		Duration:      defaultDuration,
		Warmup:        defaultWarmup,
		DrainTimeout:  defaultDrainTimeout,
		Seed:          defaultSeed,
	}
}

// withDefaults returns cfg with defaults in the fields whose zero cannot
// mean anything (Clients, Inflight, Keys, Distribution, Duration,
// DrainTimeout, MaxOutstanding), or an error wrapping ErrInvalidConfig for
// any value out of range. Fields where zero is a real value are never
// replaced: a zero WriteFraction was once read as "default 1" and a reads
// benchmark silently measured writes.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Clients == 0 {
		cfg.Clients = defaultClients
	}
	if cfg.Inflight == 0 {
		cfg.Inflight = defaultInflight
	}
	if cfg.Keys == 0 {
		cfg.Keys = defaultKeys
	}
	if cfg.Distribution == "" {
		cfg.Distribution = DistUniform
	}
	if cfg.Duration == 0 {
		cfg.Duration = defaultDuration
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = defaultDrainTimeout
	}
	if cfg.MaxOutstanding == 0 {
		cfg.MaxOutstanding = max(defaultMaxOutstanding, cfg.Clients*cfg.Inflight)
	}
	bad := func(format string, args ...any) (Config, error) {
		return cfg, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case cfg.Clients < 0 || cfg.Clients > maxWorkers || cfg.Inflight < 0 || cfg.Inflight > maxWorkers:
		return bad("clients %d and inflight %d must be in 1..%d", cfg.Clients, cfg.Inflight, maxWorkers)
	case cfg.RateOpsPerSec <= 0 && cfg.Clients*cfg.Inflight > maxWorkers:
		return bad("clients*inflight = %d exceeds %d", cfg.Clients*cfg.Inflight, maxWorkers)
	case cfg.RateOpsPerSec > 0 && (cfg.MaxOutstanding < 1 || cfg.MaxOutstanding > maxWorkers):
		return bad("max outstanding %d not in 1..%d", cfg.MaxOutstanding, maxWorkers)
	case !(cfg.RateOpsPerSec >= 0 && cfg.RateOpsPerSec <= maxRateOpsPerSec):
		return bad("rate %v ops/s not in 0..%d", cfg.RateOpsPerSec, maxRateOpsPerSec)
	case !(cfg.WriteFraction >= 0 && cfg.WriteFraction <= 1):
		return bad("write fraction %v not in 0..1", cfg.WriteFraction)
	case cfg.PayloadBytes < 0 || cfg.PayloadBytes > maxPayloadBytes:
		return bad("payload %d bytes not in 0..%d", cfg.PayloadBytes, maxPayloadBytes)
	case cfg.Keys < 0 || cfg.Keys > maxKeys:
		return bad("keys %d not in 1..%d", cfg.Keys, maxKeys)
	case cfg.Distribution != DistUniform && cfg.Distribution != DistZipfian:
		return bad("distribution %q is not %q or %q", cfg.Distribution, DistUniform, DistZipfian)
	case cfg.Duration < 0 || cfg.Duration > maxDuration:
		return bad("duration %v not in (0, %v]", cfg.Duration, maxDuration)
	case cfg.Warmup < 0 || cfg.Warmup > maxWarmup:
		return bad("warm-up %v not in 0..%v", cfg.Warmup, maxWarmup)
	case cfg.DrainTimeout < 0 || cfg.DrainTimeout > maxDrainTimeout:
		return bad("drain timeout %v not in (0, %v]", cfg.DrainTimeout, maxDrainTimeout)
	case cfg.OpTimeout < 0 || cfg.OpTimeout > maxOpTimeout:
		return bad("op timeout %v not in 0..%v", cfg.OpTimeout, maxOpTimeout)
	}
	return cfg, nil
}

// LoadModel names the load model for the report: "closed" or "open".
func (cfg Config) LoadModel() string {
	if cfg.RateOpsPerSec > 0 {
		return "open"
	}
	return "closed"
}
