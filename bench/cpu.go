package bench

import (
	"context"
	"fmt"
	"time"
)

// CPU accounting: how much processor time one committed op costs.
//
// A run is charged for the user+sys CPU time of this process (the load
// generator, and for an embedded cluster every node too) plus the
// processes listed in Config.CPUPIDs (the members of a cluster running in
// other processes). Each is read at the moment the measurement window
// opens and again when it closes, so warm-up, cluster start-up and the
// drain after the window are excluded; the difference, summed over the
// processes, divided by the window's successful ops, is
// Report.CPUUsPerOp.
//
// This process is read with getrusage(RUSAGE_SELF), other processes from
// /proc/PID/stat (utime+stime). Both are the kernel's per-process
// (thread-group) counters, so an in-process cluster and a multi-process
// one are measured alike; /proc reports them in clock ticks (10 ms), which
// over a 10 s window is a rounding error of at most 0.2% of a busy core
// per process. getrusage(RUSAGE_CHILDREN) was rejected: it is only
// available after the children exit, so it cannot exclude start-up and
// warm-up.

// cpuTime is cumulative CPU time of one or more processes.
type cpuTime struct {
	user, sys time.Duration
}

func (c cpuTime) add(d cpuTime) cpuTime { return cpuTime{c.user + d.user, c.sys + d.sys} }
func (c cpuTime) sub(d cpuTime) cpuTime { return cpuTime{c.user - d.user, c.sys - d.sys} }

// sampleCPU reads the cumulative CPU time of this process plus pids.
func sampleCPU(pids []int) (cpuTime, error) {
	total, err := selfCPU()
	if err != nil {
		return cpuTime{}, fmt.Errorf("bench: getrusage: %w", err)
	}
	for _, pid := range pids {
		c, err := procCPU(pid)
		if err != nil {
			return cpuTime{}, fmt.Errorf("bench: cpu of process %d: %w", pid, err)
		}
		total = total.add(c)
	}
	return total, nil
}

// cpuWindow is the CPU time charged to one measurement window.
type cpuWindow struct {
	// used is the CPU time spent between the two samples.
	used cpuTime
	// wall is the time between the two samples.
	wall time.Duration
	// err is why the window was not measured (nil if it was).
	err error
}

// measureCPU samples at start and at end (or when ctx is done, if that is
// earlier) and returns the difference. It returns a window with err set if
// ctx ends before start or a sample fails.
func measureCPU(ctx context.Context, pids []int, start, end time.Time) cpuWindow {
	if !sleepUntil(ctx, start) {
		return cpuWindow{err: fmt.Errorf("bench: run ended before the window opened")}
	}
	c0, err := sampleCPU(pids)
	t0 := time.Now()
	if err != nil {
		return cpuWindow{err: err}
	}
	sleepUntil(ctx, end)
	c1, err := sampleCPU(pids)
	t1 := time.Now()
	if err != nil {
		return cpuWindow{err: err}
	}
	return cpuWindow{used: c1.sub(c0), wall: t1.Sub(t0)}
}

// sleepUntil waits until t, and says false if ctx was done first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// fill records the window in r; call after r.Ops is set.
func (w cpuWindow) fill(r *Report, processes int) {
	if w.err != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("cpu not measured: %v", w.err))
		return
	}
	r.CPUProcesses = processes
	r.CPUUserS = w.used.user.Seconds()
	r.CPUSysS = w.used.sys.Seconds()
	if w.wall > 0 {
		r.CPUCores = (w.used.user + w.used.sys).Seconds() / w.wall.Seconds()
	}
	if r.Ops > 0 {
		r.CPUUsPerOp = float64((w.used.user + w.used.sys).Microseconds()) / float64(r.Ops)
	}
}
