package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram geometry. Latencies are recorded in microseconds.
const (
	// histMinMicros and histMaxMicros bound recorded latency: 1 µs to 60 s.
	// Slower ops are recorded as 60 s and counted in Report.ClampedOps.
	histMinMicros = 1
	histMaxMicros = 60_000_000
	// histSigFigs gives 0.1% value resolution for the run histogram.
	histSigFigs = 3
	// secHistSigFigs is the per-second histogram's precision: 1% is enough
	// for a p99 time series and keeps one second's histogram near 20 KiB.
	secHistSigFigs = 2
	// maxSeriesSeconds bounds the per-second series (and so its memory, about
	// 20 KiB per second): 24 hours.
	maxSeriesSeconds = 24 * 3600
)

func newRunHist() *hdr.Histogram { return hdr.New(histMinMicros, histMaxMicros, histSigFigs) }
func newSecHist() *hdr.Histogram { return hdr.New(histMinMicros, histMaxMicros, secHistSigFigs) }

// worker is one closed-loop request slot, or one open-loop sender. Owned by
// its goroutine; the fields read by other goroutines are atomics.
type worker struct {
	// hist holds this worker's measured latencies (µs); merged after the run,
	// so the hot path takes no lock.
	hist *hdr.Histogram
	// sec holds latencies of ops completed in second curSec of the window;
	// handed to the seconds aggregator when the worker sees a new second.
	sec *hdr.Histogram
	// curSec is the window second sec covers; secErrors its failures.
	curSec    int
	secErrors uint64
	// errors counts failed measured ops by kind. Errors are off the hot path.
	errors map[string]uint64
	// clamped counts latencies above histMaxMicros.
	clamped uint64
	// doneOps counts every successful op, warm-up included, for the live
	// progress line. Written only by the owner, read atomically by progress.
	doneOps atomic.Uint64
	// pad keeps doneOps of neighbouring workers on separate cache lines.
	_ [56]byte
}

// runState is what all goroutines of one Run share, read-only after setup
// except for the aggregator and the counters noted.
type runState struct {
	// cfg is the run's configuration with defaults applied.
	cfg Config
	// target is the system under test.
	target Target
	// classify names an error's kind for errors_by_kind.
	classify func(error) string
	// start is when load begins; measureStart and measureEnd delimit the
	// window in which ops are recorded (by send time, or scheduled time in
	// the open loop).
	start, measureStart, measureEnd time.Time
	// opsCtx is cancelled at the drain deadline or when the caller cancels.
	opsCtx context.Context
	// nsPerOp is the open-loop schedule spacing; 0 in the closed loop.
	nsPerOp float64
	// nextSeq hands out open-loop schedule slots to workers.
	nextSeq atomic.Uint64
	// seconds collects the per-second series.
	seconds *secondsAgg
	// workers are indexed by worker number; fixed after setup.
	workers []*worker
}

// secondsAgg merges per-worker per-second histograms. Workers call flush
// about once a second each, so the mutex is off the hot path.
type secondsAgg struct {
	mu struct {
		sync.Mutex
		// hists[s] holds latencies of ops completed in second s of the
		// window; errs[s] their failures. Invariant: len <= maxSeriesSeconds.
		hists []*hdr.Histogram
		errs  []uint64
	}
}

func (a *secondsAgg) flush(sec int, h *hdr.Histogram, errs uint64) {
	if sec < 0 || (h.TotalCount() == 0 && errs == 0) {
		return
	}
	sec = min(sec, maxSeriesSeconds-1)
	a.mu.Lock()
	defer a.mu.Unlock()
	for len(a.mu.hists) <= sec {
		a.mu.hists = append(a.mu.hists, nil)
		a.mu.errs = append(a.mu.errs, 0)
	}
	if a.mu.hists[sec] == nil {
		a.mu.hists[sec] = newSecHist()
	}
	a.mu.hists[sec].Merge(h)
	a.mu.errs[sec] += errs
}

// p99 returns the p99 (µs) of second sec, or -1 if nothing is there yet.
func (a *secondsAgg) p99(sec int) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sec < 0 || sec >= len(a.mu.hists) || a.mu.hists[sec] == nil {
		return -1
	}
	return a.mu.hists[sec].ValueAtQuantile(99)
}

// record accounts one measured op that was due at sched and finished at done.
func (rs *runState) record(w *worker, sched, done time.Time, err error) {
	sec := int(done.Sub(rs.measureStart) / time.Second)
	if sec != w.curSec {
		rs.seconds.flush(w.curSec, w.sec, w.secErrors)
		w.sec.Reset()
		w.secErrors = 0
		w.curSec = sec
	}
	if err != nil {
		w.errors[rs.classify(err)]++
		w.secErrors++
		return
	}
	us := done.Sub(sched).Microseconds()
	if us < histMinMicros {
		us = histMinMicros
	} else if us > histMaxMicros {
		us = histMaxMicros
		w.clamped++
	}
	// RecordValue fails only outside the histogram range, excluded above.
	_ = w.hist.RecordValue(us)
	_ = w.sec.RecordValue(us)
}

// Run drives the target with the configured load for Warmup+Duration,
// samples follower lag from lag (nil for none) every 100 ms, shows live
// progress on progress (nil for none), and returns the report.
//
// If ctx is cancelled before the window ends, Run stops early and returns
// the report of what was measured together with ctx's error.
func Run(ctx context.Context, cfg Config, t Target, lag LagSource, progress io.Writer) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rs := &runState{cfg: cfg, target: t, seconds: &secondsAgg{}}
	rs.classify = cfg.ClassifyError
	if rs.classify == nil {
		if c, ok := t.(ErrorClassifier); ok {
			rs.classify = c.ErrorKind
		} else {
			rs.classify = ErrorKind
		}
	}
	nWorkers := cfg.Clients * cfg.Inflight
	if cfg.RateOpsPerSec > 0 {
		nWorkers = cfg.MaxOutstanding
		rs.nsPerOp = 1e9 / cfg.RateOpsPerSec
	}
	rs.workers = make([]*worker, nWorkers)
	gens := make([]*opGen, nWorkers)
	for i := range rs.workers {
		rs.workers[i] = &worker{hist: newRunHist(), sec: newSecHist(), errors: map[string]uint64{}}
		gens[i] = newOpGen(&cfg, i)
	}

	opsCtx, cancelOps := context.WithCancel(ctx)
	defer cancelOps()
	rs.opsCtx = opsCtx
	rs.start = time.Now()
	rs.measureStart = rs.start.Add(cfg.Warmup)
	rs.measureEnd = rs.measureStart.Add(cfg.Duration)

	var lagRec *lagRecorder
	var bg sync.WaitGroup
	bgCtx, stopBG := context.WithCancel(ctx)
	defer stopBG()
	if lag != nil {
		lagRec = newLagRecorder()
		bg.Add(1)
		go func() {
			defer bg.Done()
			rs.sampleLag(bgCtx, lag, lagRec)
		}()
	}
	if progress != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			rs.showProgress(bgCtx, progress)
		}()
	}
	// stageReset is written by its goroutine before bg.Done and read
	// after bg.Wait.
	stageSrc := stageSourceOf(t, lag)
	var stageReset error
	if stageSrc != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			stageReset = resetStagesAt(bgCtx, stageSrc, rs.measureStart)
		}()
	}
	// cpu is written by its goroutine before bg.Done and read after bg.Wait.
	var cpu cpuWindow
	bg.Add(1)
	go func() {
		defer bg.Done()
		cpu = measureCPU(bgCtx, cfg.CPUPIDs, rs.measureStart, rs.measureEnd)
	}()

	var wg sync.WaitGroup
	for i := range rs.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rs.nsPerOp > 0 {
				rs.openLoop(i, gens[i])
			} else {
				rs.closedLoop(i, gens[i])
			}
		}()
	}
	// Wait for the window, then give in-flight ops DrainTimeout to finish.
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	drain := time.NewTimer(time.Until(rs.measureEnd.Add(cfg.DrainTimeout)))
	select {
	case <-allDone:
	case <-drain.C:
		cancelOps()
		<-allDone
	}
	drain.Stop()
	finished := time.Now()
	stopBG()
	bg.Wait()
	for _, w := range rs.workers {
		rs.seconds.flush(w.curSec, w.sec, w.secErrors)
	}
	// Workers stop at the window's end without waiting for it, so only a
	// caller's cancellation shortens the window.
	if ctx.Err() == nil || finished.After(rs.measureEnd) {
		finished = rs.measureEnd
	}
	rep := rs.buildReport(lagRec, finished)
	cpu.fill(rep, 1+len(cfg.CPUPIDs))
	if stageSrc != nil {
		if stageReset != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("no stage breakdown: reset at the window's start failed: %v", stageReset))
		} else if b, err := readStages(ctx, stageSrc); err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("no stage breakdown: %v", err))
		} else {
			rep.Stages = b
		}
	}
	return rep, ctx.Err()
}

// closedLoop sends the next op as soon as the previous one returns.
//
// One clock read per op: an op's send time is the previous op's completion
// time, so its latency also covers the driver's own bookkeeping between the
// two (recording and generating the op, well under a microsecond). Reading
// the clock twice was tried; time.Now costs about 250 ns on the KVM
// development machine, a visible share of the per-write CPU budget.
func (rs *runState) closedLoop(id int, gen *opGen) {
	w := rs.workers[id]
	op := Op{Client: id % rs.cfg.Clients}
	now := time.Now()
	for {
		sent := now
		if !sent.Before(rs.measureEnd) || rs.opsCtx.Err() != nil {
			return
		}
		gen.next(&op)
		err := rs.do(&op)
		now = time.Now()
		if err == nil {
			w.doneOps.Add(1)
		}
		if !sent.Before(rs.measureStart) {
			rs.record(w, sent, now, err)
		}
	}
}

// openLoop takes schedule slots in order and sends each at its scheduled
// time, or at once if it is already late (all workers were busy). Latency
// counts from the scheduled time, so waiting for a free worker is included.
func (rs *runState) openLoop(id int, gen *opGen) {
	w := rs.workers[id]
	op := Op{Client: id % rs.cfg.Clients}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// last is the latest clock reading; when it is already past the
	// schedule (the run is behind) no further clock read is needed to know
	// that the op is due.
	last := time.Now()
	for {
		seq := rs.nextSeq.Add(1) - 1
		sched := rs.start.Add(time.Duration(float64(seq) * rs.nsPerOp))
		if !sched.Before(rs.measureEnd) {
			return
		}
		if !last.Before(sched) {
			// Due already.
		} else if d := time.Until(sched); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-rs.opsCtx.Done():
				return
			}
		}
		if rs.opsCtx.Err() != nil {
			return
		}
		gen.next(&op)
		err := rs.do(&op)
		done := time.Now()
		last = done
		if err == nil {
			w.doneOps.Add(1)
		}
		if !sched.Before(rs.measureStart) {
			rs.record(w, sched, done, err)
		}
	}
}

// do sends op with the run's context, adding the per-op timeout if set.
func (rs *runState) do(op *Op) error {
	if rs.cfg.OpTimeout <= 0 {
		return rs.target.Do(rs.opsCtx, op)
	}
	ctx, cancel := context.WithTimeout(rs.opsCtx, rs.cfg.OpTimeout)
	defer cancel()
	return rs.target.Do(ctx, op)
}

// scheduledInWindow is how many open-loop slots fall in the window.
func (rs *runState) scheduledInWindow() uint64 {
	first := func(t time.Time) uint64 {
		return uint64(math.Ceil(float64(t.Sub(rs.start)) / rs.nsPerOp))
	}
	return first(rs.measureEnd) - first(rs.measureStart)
}

// liveOps sums the workers' completed-op counters.
func (rs *runState) liveOps() uint64 {
	var n uint64
	for _, w := range rs.workers {
		n += w.doneOps.Load()
	}
	return n
}

// buildReport merges worker state into the report.
func (rs *runState) buildReport(lagRec *lagRecorder, finished time.Time) *Report {
	cfg := rs.cfg
	all := newRunHist()
	errs := map[string]uint64{}
	var clamped, nErr uint64
	for _, w := range rs.workers {
		all.Merge(w.hist)
		for k, v := range w.errors {
			errs[k] += v
			nErr += v
		}
		clamped += w.clamped
	}
	// The window is shorter than configured if the caller cancelled.
	window := cfg.Duration
	if finished.Before(rs.measureEnd) {
		window = max(finished.Sub(rs.measureStart), 0)
	}
	if rs.nsPerOp > 0 && window == cfg.Duration {
		sent := uint64(all.TotalCount()) + nErr
		if due := rs.scheduledInWindow(); due > sent {
			errs[KindUnsent] += due - sent
			nErr += due - sent
		}
	}
	r := &Report{
		System: cfg.System, Version: cfg.Version, Mode: cfg.Mode, Nodes: cfg.Nodes, Groups: cfg.Groups,
		LoadModel: cfg.LoadModel(), Clients: cfg.Clients, Inflight: cfg.Inflight,
		RateOpsPerSec: cfg.RateOpsPerSec, Payload: cfg.PayloadBytes,
		WriteFraction: cfg.WriteFraction, StaleReads: cfg.StaleReads,
		Keys: cfg.Keys, Distribution: cfg.Distribution, Seed: cfg.Seed,
		DurationS: window.Seconds(), WarmupS: cfg.Warmup.Seconds(),
		StartTime:  rs.measureStart.UTC().Format(time.RFC3339),
		GoVersion:  runtime.Version(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(),
		Errors: nErr, ErrorsByKind: errs, ClampedOps: clamped,
		hist: all,
	}
	if cfg.RateOpsPerSec > 0 {
		r.MaxOutstanding = cfg.MaxOutstanding
	}
	r.setLatency(all)
	if window > 0 {
		r.OpsPerS = float64(r.Ops) / window.Seconds()
	}
	rs.seconds.mu.Lock()
	for s, h := range rs.seconds.mu.hists {
		p := SecondPoint{T: s, Errors: rs.seconds.mu.errs[s]}
		if h != nil {
			p.Ops = uint64(h.TotalCount())
			p.P50Us = h.ValueAtQuantile(50)
			p.P99Us = h.ValueAtQuantile(99)
			p.MaxUs = h.Max()
		}
		r.Series = append(r.Series, p)
	}
	rs.seconds.mu.Unlock()
	if lagRec != nil {
		lagRec.fill(r)
	}
	if enc, err := encodeHist(all); err == nil {
		r.LatencyHist = enc
	} else {
		r.Notes = append(r.Notes, fmt.Sprintf("histogram not encoded: %v", err))
	}
	return r
}
