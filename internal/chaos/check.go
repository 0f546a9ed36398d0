package chaos

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/anishathalye/porcupine"
)

// Sentinel errors of a linearizability check; the returned error wraps one
// of them in a *CheckError.
var (
	// ErrNotLinearizable: no order of the operations agrees with both the
	// KV model and real time. The cluster broke linearizability (or the
	// history was recorded wrongly).
	ErrNotLinearizable = errors.New("chaos: history is not linearizable")
	// ErrCheckTimedOut: the checker ran out of time without a verdict
	// (porcupine.Unknown). Not a violation found; callers decide whether
	// to fail. Shorter runs or fewer keys per client make it rarer.
	ErrCheckTimedOut = errors.New("chaos: linearizability check timed out")
)

// CheckConfig configures CheckOperations.
type CheckConfig struct {
	// Timeout bounds the checker; 0 means no limit.
	Timeout time.Duration
	// VisualizationDir receives the HTML visualization of a failing
	// history; "" means os.TempDir(). A test passes t.TempDir() only if it
	// also prints the file before the directory is removed; the default
	// keeps the file for a human to open.
	VisualizationDir string
	// Seed is the chaos run's seed, named in the error and the file name
	// so that the failing run can be repeated.
	Seed uint64
}

// CheckError reports a failed or inconclusive check.
type CheckError struct {
	// Result is porcupine's verdict: Illegal or Unknown.
	Result porcupine.CheckResult
	// Seed is the run's seed from CheckConfig.
	Seed uint64
	// Ops is the number of operations checked.
	Ops int
	// VisualizationPath is the HTML file showing the longest partial
	// linearizations and where each one fails; "" if none was written.
	VisualizationPath string
	// Err is ErrNotLinearizable or ErrCheckTimedOut, possibly joined with
	// the error that stopped the visualization from being written.
	Err error
}

// Error names the seed and the visualization, the two things needed to
// investigate a failure.
func (e *CheckError) Error() string {
	msg := fmt.Sprintf("%v (seed %d, %d operations)", e.Err, e.Seed, e.Ops)
	if e.VisualizationPath != "" {
		msg += "; visualization: " + e.VisualizationPath
	}
	return msg
}

// Unwrap exposes the sentinel for errors.Is.
func (e *CheckError) Unwrap() error { return e.Err }

// VisualizationPath returns the HTML path carried by err, or "".
func VisualizationPath(err error) string {
	var ce *CheckError
	if errors.As(err, &ce) {
		return ce.VisualizationPath
	}
	return ""
}

// Check checks h against KVModel. On ErrNotLinearizable the visualization
// is written under os.TempDir() and its path is in the error
// (VisualizationPath).
func Check(h *History, timeout time.Duration) (porcupine.CheckResult, error) {
	return CheckOperations(h.Operations(), CheckConfig{Timeout: timeout})
}

// CheckOperations checks a porcupine history of KVInput/KVOutput
// operations against KVModel, for histories built by hand or merged from
// several Histories.
//
// The check runs twice on a violation: first without the bookkeeping for
// partial linearizations (about 1.7x faster on passing histories, the
// common case), then, only if that found a violation, again with it to
// draw the visualization. Each run gets cfg.Timeout.
func CheckOperations(ops []porcupine.Operation, cfg CheckConfig) (porcupine.CheckResult, error) {
	res := porcupine.CheckOperationsTimeout(KVModel, ops, cfg.Timeout)
	switch res {
	case porcupine.Ok:
		return res, nil
	case porcupine.Unknown:
		return res, &CheckError{Result: res, Seed: cfg.Seed, Ops: len(ops), Err: ErrCheckTimedOut}
	}
	ce := &CheckError{Result: res, Seed: cfg.Seed, Ops: len(ops), Err: ErrNotLinearizable}
	vres, info := porcupine.CheckOperationsVerbose(KVModel, ops, cfg.Timeout)
	if vres != porcupine.Illegal {
		ce.Err = fmt.Errorf("%w (no visualization: second pass gave %v)", ErrNotLinearizable, vres)
		return res, ce
	}
	path, err := writeVisualization(info, cfg)
	if err != nil {
		ce.Err = errors.Join(ErrNotLinearizable, err)
	}
	ce.VisualizationPath = path
	return res, ce
}

// writeVisualization writes porcupine's HTML for info to a fresh file.
func writeVisualization(info porcupine.LinearizationInfo, cfg CheckConfig) (string, error) {
	dir := cfg.VisualizationDir
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, fmt.Sprintf("raftpipe-linearizability-seed%d-*.html", cfg.Seed))
	if err != nil {
		return "", fmt.Errorf("chaos: create visualization: %w", err)
	}
	werr := porcupine.Visualize(KVModel, info, f)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return f.Name(), fmt.Errorf("chaos: write visualization %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}
