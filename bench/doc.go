// Package bench drives a replicated key-value system with load, measures
// commit latency and follower lag, and writes reports: JSON, a summary,
// HdrHistogram .hgrm, per-second CSV and PNG plots. raftbench uses it
// against raftpipe; bench/peers/hashicorp uses the same code against
// hashicorp/raft, so the two are measured identically.
//
// # The pieces
//
//   - A Target is the system under test: Do(ctx, op) returns when a write
//     is committed or a read answered. It must be safe for concurrent use.
//     The driver owns op and its buffers; a target copies what it keeps.
//   - A LagSource (optional) reports the leader's last and commit index and
//     each follower's match/applied index; it is polled every 100 ms.
//   - Run(ctx, cfg, target, lag, progress) runs one load point and returns a
//     Report. Sweep runs one point per client count and writes a
//     throughput-latency table and plot.
//   - MeasureFdatasync times write+fdatasync on a preallocated file, the
//     floor under every durable commit (bench/fsynclat wraps it).
//   - RegisterFlags gives every load generator the same flag names.
//   - Op.Client tells a target which logical client sends an op, so it can
//     give each client its own connection.
//
// # Load models
//
// Closed loop (the default): Clients*Inflight worker goroutines each keep
// one request outstanding; the next is sent the moment the previous one
// returns. Throughput is whatever the system sustains at that concurrency.
// Latency is measured from the moment each request is sent (taken as the
// same worker's previous completion time: one clock read per op, since
// time.Now costs ~250 ns on the KVM development machine; the driver's own
// sub-microsecond bookkeeping is therefore inside the measured latency). Beware: a
// closed loop under-reports tail latency during stalls, because while the
// system stalls the workers send nothing, so the requests that "should"
// have been sent are never measured (coordinated omission). Use it to find
// peak throughput at a given concurrency, not to describe tail latency at a
// given rate.
//
// Open loop (RateOpsPerSec > 0): op i is scheduled at start + i/rate,
// independent of how fast the system answers. MaxOutstanding workers take
// schedule slots in order; each sleeps until its slot's time (or sends at
// once if the slot is already past) and measures latency from the SCHEDULED
// time, not the send time. If the system stalls for 200 ms, every op
// scheduled during the stall waits for a free worker and its latency
// includes that wait, so the stall shows in p99.9 and max as a user at that
// rate would see it. Memory stays bounded by MaxOutstanding; ops scheduled
// in the window but never sent (because the drain deadline passed) are
// counted as errors of kind "unsent". Go's timer adds tens of microseconds
// of send delay to each scheduled op and that delay is (honestly) counted.
//
// # What is measured
//
// Timeline: Warmup (load, nothing recorded), then the window of Duration
// (recorded), then a drain of at most DrainTimeout in which ops sent (or
// scheduled) inside the window may finish and are still recorded; after the
// drain the op context is cancelled. An op belongs to the window by its
// send time (closed loop) or scheduled time (open loop), so a stall at the
// end of the window is not dropped.
//
// Latency: each worker records into its own HdrHistogram (1 µs to 60 s, 3
// significant digits); no lock on the hot path. Histograms are merged after
// the run for p50, p90, p99, p99.9, p99.99 and max. Only successful ops are
// in the histogram; failures are counted by kind (ErrorKind, a Target's
// ErrorKind method, or Config.ClassifyError). Each worker also keeps a 2
// significant digit histogram of the current second, handed to a shared
// aggregator once per second, for the per-second series (ops, errors, p50,
// p99, max by completion second) and the live progress line. Series
// points at or past duration_s hold ops that completed during the drain.
//
// Throughput: ops is the number of successful ops in the window, ops_per_s
// is ops divided by the window's length.
//
// # CPU per op
//
// User+sys CPU time of this process (getrusage RUSAGE_SELF; for an
// embedded cluster that is every node plus the load generator) and of the
// processes in Config.CPUPIDs (/proc/PID/stat utime+stime; the members of
// a cluster in other processes), read when the window opens and when it
// closes, summed, and divided by the window's successful ops:
// cpu_us_per_op, with cpu_user_s, cpu_sys_s, cpu_cores (average cores
// busy) and cpu_processes. Warm-up and start-up are excluded. cpu.go says
// why these two counters are comparable.
//
// # Follower lag
//
// Every 100 ms the LagSource gives (LeaderLast, LeaderCommit, follower
// index per follower). For each follower and sample:
//
//   - entries behind last   = LeaderLast - index   (replication backlog)
//   - entries behind commit = LeaderCommit - index (how stale a read from
//     that follower is, in committed entries)
//   - time lag = how long ago the leader's last index first reached the
//     follower's current index. The driver keeps a bounded history of
//     (time, leader last index) samples (5 minutes), finds the first sample
//     at or above the follower's index and interpolates linearly with the
//     previous sample, assuming a steady append rate between samples. A
//     follower that is caught up has time lag 0. One further behind than
//     the history reports the history's span, flagged as a lower bound.
//
// The report gives p50/p99/max of each, per follower and pooled over all
// followers, and the full lag series.
//
// # Output
//
// Report's JSON field names are stable (system, version, mode, nodes,
// clients, inflight, payload, duration_s, ops, ops_per_s, p50_us ...
// max_us, errors, errors_by_kind, follower_lag_p99_entries,
// follower_lag_max_entries, follower_lag_p99_ms, series, follower_lag,
// lag_series, latency_hist). WriteOut writes NAME.json, NAME.txt,
// NAME.hgrm (values in ms, as HdrHistogram's plotter expects), NAME.csv,
// NAME-lag.csv and NAME-latency.png, NAME-throughput.png, NAME-lag.png.
package bench
