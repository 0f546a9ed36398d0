package bench

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/internal/testutil"
)

func TestClosedLoopCountsAndConcurrency(t *testing.T) {
	cfg := shortCfg()
	ft := &fakeTarget{delay: 200 * time.Microsecond, barrier: cfg.Clients * cfg.Inflight}
	rep, err := Run(context.Background(), cfg, ft, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	workers := int64(cfg.Clients * cfg.Inflight)
	// The barrier only releases once all workers are inside Do at once, so
	// reaching the run's end proves the peak; the bound proves no more.
	if got := ft.peak.Load(); got != workers {
		t.Fatalf("peak concurrency %d, want exactly %d", got, workers)
	}
	for c := 0; c < cfg.Clients; c++ {
		if _, ok := ft.clients.Load(c); !ok {
			t.Errorf("client %d never issued an op", c)
		}
	}
	if rep.Ops == 0 || rep.Errors != 0 {
		t.Fatalf("ops %d errors %d", rep.Ops, rep.Errors)
	}
	if rep.Ops > ft.calls.Load() {
		t.Fatalf("recorded %d ops but target saw only %d calls", rep.Ops, ft.calls.Load())
	}
	var seriesOps uint64
	for _, s := range rep.Series {
		seriesOps += s.Ops
	}
	if seriesOps != rep.Ops {
		t.Fatalf("per-second series sums to %d ops, report says %d", seriesOps, rep.Ops)
	}
	if want := float64(rep.Ops) / rep.DurationS; rep.OpsPerS != want {
		t.Fatalf("ops_per_s %v, want ops/duration %v", rep.OpsPerS, want)
	}
	if rep.LoadModel != "closed" || rep.Clients != 4 || rep.Inflight != 2 || rep.Payload != 64 || rep.Nodes != 3 {
		t.Fatalf("labels not echoed: %+v", rep)
	}
	// The fake delay is a floor on every successful op's latency.
	if rep.P50Us < 200 || rep.MinUs < 200 {
		t.Fatalf("p50 %dµs / min %dµs below the target's 200µs floor", rep.P50Us, rep.MinUs)
	}
	if !(rep.P50Us <= rep.P90Us && rep.P90Us <= rep.P99Us && rep.P99Us <= rep.P999Us &&
		rep.P999Us <= rep.P9999Us && rep.P9999Us <= rep.MaxUs) {
		t.Fatalf("percentiles not monotonic: %+v", rep)
	}
}

// openLoopSlots is how many slots an open-loop run schedules in its window
// when warm-up is disabled: slot i at i/rate for i/rate < duration.
func openLoopSlots(rate float64, d time.Duration) uint64 {
	n := uint64(0)
	for float64(n)*1e9/rate < float64(d) {
		n++
	}
	return n
}

func TestOpenLoopSendsEveryScheduledOp(t *testing.T) {
	cfg := shortCfg()
	cfg.Warmup = 0
	cfg.RateOpsPerSec = 2000
	cfg.Duration = 400 * time.Millisecond
	cfg.MaxOutstanding = 8
	ft := &fakeTarget{}
	rep, err := Run(context.Background(), cfg, ft, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := openLoopSlots(cfg.RateOpsPerSec, cfg.Duration)
	if rep.Ops+rep.Errors != want || rep.Errors != 0 {
		t.Fatalf("ops %d + errors %d, want %d scheduled ops, no errors", rep.Ops, rep.Errors, want)
	}
	if ft.calls.Load() != want {
		t.Fatalf("target saw %d calls, want exactly the %d scheduled", ft.calls.Load(), want)
	}
	if rep.OpsPerS != float64(want)/cfg.Duration.Seconds() {
		t.Fatalf("ops_per_s %v", rep.OpsPerS)
	}
	if p := ft.peak.Load(); p > int64(cfg.MaxOutstanding) {
		t.Fatalf("peak concurrency %d above MaxOutstanding %d", p, cfg.MaxOutstanding)
	}
	if rep.LoadModel != "open" || rep.MaxOutstanding != 8 {
		t.Fatalf("load model %q max outstanding %d", rep.LoadModel, rep.MaxOutstanding)
	}
}

// TestOpenLoopCountsStall is the coordinated-omission test: a 200 ms stall
// in the target must show in the open loop's tail, because every op
// scheduled during the stall is measured from its scheduled time.
func TestOpenLoopCountsStall(t *testing.T) {
	const stall = 200 * time.Millisecond
	cfg := shortCfg()
	cfg.Warmup = 0
	cfg.RateOpsPerSec = 1000
	cfg.Duration = 600 * time.Millisecond
	cfg.MaxOutstanding = 4
	ft := &fakeTarget{stallAfter: 100, stallFor: stall}
	rep, err := Run(context.Background(), cfg, ft, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := openLoopSlots(cfg.RateOpsPerSec, cfg.Duration)
	if rep.Ops != want {
		t.Fatalf("ops %d (errors %v), want all %d scheduled ops measured", rep.Ops, rep.ErrorsByKind, want)
	}
	// The op that opened the stall waited the whole stall after its
	// scheduled time, so max >= stall. About 200 of 600 ops were scheduled
	// during the stall, with latencies spread from ~0 to 200 ms, so well
	// over 1% of ops took more than half the stall.
	if rep.MaxUs < stall.Microseconds() {
		t.Fatalf("max %dµs below the %v stall: the stall was not measured", rep.MaxUs, stall)
	}
	if half := stall.Microseconds() / 2; rep.P999Us < half || rep.P99Us < half {
		t.Fatalf("p99 %dµs / p99.9 %dµs below %dµs: ops delayed by the stall were omitted",
			rep.P99Us, rep.P999Us, half)
	}
	if p := ft.peak.Load(); p > int64(cfg.MaxOutstanding) {
		t.Fatalf("peak concurrency %d above MaxOutstanding %d", p, cfg.MaxOutstanding)
	}
}

// kindErr carries its own kind, as a target's error type might.
type kindErr struct{ kind string }

func (e kindErr) Error() string { return "kind " + e.kind }
func (e kindErr) Kind() string  { return e.kind }

type netTimeout struct{}

func (netTimeout) Error() string { return "i/o timeout" }
func (netTimeout) Timeout() bool { return true }

func TestErrorKind(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{fmt.Errorf("propose: %w", ErrNotLeader), KindNotLeader},
		{fmt.Errorf("queue: %w", ErrBusy), KindBusy},
		{fmt.Errorf("wait: %w", ErrTimeout), KindTimeout},
		{fmt.Errorf("ctx: %w", context.DeadlineExceeded), KindTimeout},
		{context.Canceled, KindCanceled},
		{fmt.Errorf("dial: %w", netTimeout{}), KindTimeout},
		{fmt.Errorf("wrapped: %w", kindErr{"leadership_lost"}), "leadership_lost"},
		{errors.New("boom"), KindOther},
	}
	for _, c := range cases {
		if got := ErrorKind(c.err); got != c.want {
			t.Errorf("ErrorKind(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// classifyingTarget supplies its own classifier.
type classifyingTarget struct{ *fakeTarget }

func (classifyingTarget) ErrorKind(err error) string {
	if errors.Is(err, errShed) {
		return "shed"
	}
	return ErrorKind(err)
}

var errShed = errors.New("load shed")

func TestRunCountsErrorsByKind(t *testing.T) {
	cfg := shortCfg()
	cfg.Warmup = 0
	cfg.RateOpsPerSec = 1000
	cfg.Duration = 300 * time.Millisecond
	ft := &fakeTarget{fail: func(n uint64) error {
		switch n % 4 {
		case 1:
			return fmt.Errorf("x: %w", ErrNotLeader)
		case 2:
			return errShed
		case 3:
			return errors.New("other failure")
		}
		return nil
	}}
	rep, err := Run(context.Background(), cfg, classifyingTarget{ft}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := openLoopSlots(cfg.RateOpsPerSec, cfg.Duration)
	if rep.Ops+rep.Errors != want {
		t.Fatalf("ops %d + errors %d != scheduled %d", rep.Ops, rep.Errors, want)
	}
	var sum uint64
	for _, v := range rep.ErrorsByKind {
		sum += v
	}
	if sum != rep.Errors {
		t.Fatalf("errors_by_kind sums to %d, errors %d", sum, rep.Errors)
	}
	// Call n fails by n%4, and exactly the calls 0..want-1 happen.
	q, r := want/4, want%4
	expect := map[string]uint64{KindNotLeader: q, "shed": q, KindOther: q}
	if r > 1 {
		expect[KindNotLeader]++
	}
	if r > 2 {
		expect["shed"]++
	}
	for k, v := range expect {
		if rep.ErrorsByKind[k] != v {
			t.Errorf("kind %s: %d errors, want %d (all: %v)", k, rep.ErrorsByKind[k], v, rep.ErrorsByKind)
		}
	}
	var seriesErr uint64
	for _, s := range rep.Series {
		seriesErr += s.Errors
	}
	if seriesErr != rep.Errors {
		t.Fatalf("series errors %d != %d", seriesErr, rep.Errors)
	}

	// Config.ClassifyError overrides the target's classifier.
	cfg.ClassifyError = func(error) string { return "custom" }
	ft2 := &fakeTarget{fail: ft.fail}
	rep, err = Run(context.Background(), cfg, classifyingTarget{ft2}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.ErrorsByKind) != 1 || rep.ErrorsByKind["custom"] != rep.Errors {
		t.Fatalf("override ignored: %v", rep.ErrorsByKind)
	}
}

func TestDrainTimeoutCancelsStuckOps(t *testing.T) {
	cfg := shortCfg()
	cfg.Warmup = 0
	cfg.Duration = 100 * time.Millisecond
	cfg.DrainTimeout = 100 * time.Millisecond
	// Every call hangs until the run cancels it.
	ft := &fakeTarget{stallAfter: 1, stallFor: time.Hour, delay: time.Millisecond}
	rep, err := Run(context.Background(), cfg, ft, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ErrorsByKind[KindCanceled] == 0 {
		t.Fatalf("stuck ops not reported as canceled: %v", rep.ErrorsByKind)
	}
}

func TestRunStopsWhenCallerCancels(t *testing.T) {
	cfg := shortCfg()
	cfg.Duration = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	ft := &fakeTarget{delay: 100 * time.Microsecond}
	lag := &fakeLag{perCall: 10, behind: map[uint64]uint64{2: 1}}
	done := make(chan struct{})
	var rep *Report
	var err error
	go func() {
		rep, err = Run(ctx, cfg, ft, lag, nil)
		close(done)
	}()
	// Cancel once the run has demonstrably started.
	testutil.Poll(10*time.Second, func() bool { return ft.calls.Load() >= 100 })
	cancel()
	<-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if rep == nil || rep.DurationS >= time.Hour.Seconds() {
		t.Fatalf("report %v should cover only the time run", rep)
	}
}

func TestInvalidConfig(t *testing.T) {
	bad := []Config{
		{Clients: -1},
		{Distribution: "pareto"},
		{WriteFraction: 1.5},
		{Clients: maxWorkers + 1},
		{RateOpsPerSec: 10, MaxOutstanding: maxWorkers + 1},
		{PayloadBytes: maxPayloadBytes + 1},
	}
	for _, c := range bad {
		if _, err := Run(context.Background(), c, &fakeTarget{}, nil, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("config %+v: err %v, want ErrInvalidConfig", c, err)
		}
	}
}
