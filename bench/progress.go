package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

const (
	// progressTermInterval is the redraw period of the one-line bar on a
	// terminal.
	progressTermInterval = 250 * time.Millisecond
	// progressLogInterval is the period of plain progress lines when the
	// writer is not a terminal (a log file or pipe should not get 4 lines/s).
	progressLogInterval = time.Second
	// progressBarCells is the width of the bar in characters.
	progressBarCells = 24
)

// isTerminal reports whether w is a character device (a terminal). The
// project avoids a golang.org/x/term dependency for this one check.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// showProgress prints live throughput and the p99 of the last complete
// second until ctx is done: a redrawn bar on a terminal, else a line per
// second.
func (rs *runState) showProgress(ctx context.Context, w io.Writer) {
	term := isTerminal(w)
	interval := progressLogInterval
	if term {
		interval = progressTermInterval
	}
	// Start half an interval late, so per-line updates fall mid-second,
	// after workers have handed in the previous second's histograms.
	select {
	case <-ctx.Done():
		return
	case <-time.After(interval / 2):
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	total := rs.measureEnd.Sub(rs.start)
	lastOps, lastAt := rs.liveOps(), time.Now()
	for {
		select {
		case <-ctx.Done():
			if term {
				fmt.Fprint(w, "\r\033[K")
			}
			return
		case now := <-tick.C:
			ops := rs.liveOps()
			rate := float64(ops-lastOps) / now.Sub(lastAt).Seconds()
			lastOps, lastAt = ops, now
			fmt.Fprint(w, rs.progressLine(now, total, rate, term))
		}
	}
}

// progressLine formats one progress update.
func (rs *runState) progressLine(now time.Time, total time.Duration, rate float64, term bool) string {
	elapsed := now.Sub(rs.start)
	phase := "measure"
	if now.Before(rs.measureStart) {
		phase = "warm-up"
	} else if !now.Before(rs.measureEnd) {
		phase = "drain"
	}
	p99 := "-"
	if sec := int(now.Sub(rs.measureStart)/time.Second) - 1; sec >= 0 {
		if v := rs.seconds.p99(sec); v >= 0 {
			p99 = fmtUs(v)
		}
	}
	frac := min(float64(elapsed)/float64(max(total, 1)), 1)
	filled := int(frac * progressBarCells)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", progressBarCells-filled)
	line := fmt.Sprintf("[%s] %3.0f%% %-7s %6.1fs  %9.0f ops/s  p99(1s) %s",
		bar, frac*100, phase, elapsed.Seconds(), rate, p99)
	if term {
		return "\r\033[K" + line
	}
	return line + "\n"
}
