package bench

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the result of one Run. Its JSON field names are a stable
// interface: result files, plotting scripts and the comparison tables read
// them, so rename nothing; add fields instead.
type Report struct {
	// Labels echoed from Config, so a result file says what it measured.
	System  string `json:"system"`
	Version string `json:"version"`
	Mode    string `json:"mode"`
	Nodes   int    `json:"nodes"`
	// Groups is the number of Raft groups keys were sharded over; absent
	// for one group (so older result files read the same).
	Groups int `json:"groups,omitempty"`
	// LoadModel is "closed" (Clients*Inflight outstanding) or "open"
	// (RateOpsPerSec, latency from the scheduled time).
	LoadModel string `json:"load_model"`
	// Clients and Inflight give the closed loop's concurrency.
	Clients  int `json:"clients"`
	Inflight int `json:"inflight"`
	// RateOpsPerSec and MaxOutstanding describe the open loop (absent for
	// the closed loop).
	RateOpsPerSec  float64 `json:"rate_ops_per_s,omitempty"`
	MaxOutstanding int     `json:"max_outstanding,omitempty"`
	// Payload is the value size of each write, bytes.
	Payload int `json:"payload"`
	// WriteFraction, StaleReads, Keys, Distribution and Seed describe the
	// operation mix, so a run can be repeated exactly.
	WriteFraction float64 `json:"write_fraction"`
	StaleReads    bool    `json:"stale_reads"`
	Keys          int     `json:"keys"`
	Distribution  string  `json:"distribution"`
	Seed          uint64  `json:"seed"`
	// DurationS is the measurement window actually run (shorter than
	// configured only if the caller cancelled).
	DurationS float64 `json:"duration_s"`
	// WarmupS is the unrecorded warm-up before the window.
	WarmupS float64 `json:"warmup_s"`
	// StartTime is when the window opened (UTC, RFC 3339).
	StartTime string `json:"start_time"`
	// GoVersion, GOMAXPROCS and NumCPU describe the load generator's
	// process, which shares the CPU with an embedded cluster.
	GoVersion  string `json:"go_version"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	NumCPU     int    `json:"num_cpu"`

	// Ops counts successful ops sent (closed) or scheduled (open) in the
	// window; OpsPerS divides by DurationS.
	Ops     uint64  `json:"ops"`
	OpsPerS float64 `json:"ops_per_s"`
	// Latency percentiles of successful ops, µs, from the merged histogram.
	// Values are the highest value equivalent at 3 significant digits.
	MeanUs   float64 `json:"mean_us"`
	P50Us    int64   `json:"p50_us"`
	P90Us    int64   `json:"p90_us"`
	P99Us    int64   `json:"p99_us"`
	P999Us   int64   `json:"p999_us"`
	P9999Us  int64   `json:"p9999_us"`
	MaxUs    int64   `json:"max_us"`
	MinUs    int64   `json:"min_us"`
	StdDevUs float64 `json:"stddev_us"`
	// ClampedOps took longer than the histogram's 60 s ceiling.
	ClampedOps uint64 `json:"clamped_ops"`
	// Errors counts failed ops in the window; ErrorsByKind splits them.
	Errors       uint64            `json:"errors"`
	ErrorsByKind map[string]uint64 `json:"errors_by_kind"`

	// CPU charged to the window (see cpu.go): user and system seconds of
	// this process plus Config.CPUPIDs, sampled when the window opens and
	// closes. CPUUsPerOp is (user+sys) µs per successful op, the cost of
	// one committed write in a write-only load; CPUCores is the average
	// number of cores busy; CPUProcesses how many processes were summed.
	// All zero if CPU was not measured (a note says why).
	CPUUserS     float64 `json:"cpu_user_s"`
	CPUSysS      float64 `json:"cpu_sys_s"`
	CPUUsPerOp   float64 `json:"cpu_us_per_op"`
	CPUCores     float64 `json:"cpu_cores"`
	CPUProcesses int     `json:"cpu_processes"`

	// Follower lag over all followers: entries behind the leader's last
	// index (p50/p99/max), entries behind its commit index (p99), and time
	// lag (ms). Zero when no LagSource was given.
	FollowerLagP50Entries       uint64  `json:"follower_lag_p50_entries"`
	FollowerLagP99Entries       uint64  `json:"follower_lag_p99_entries"`
	FollowerLagMaxEntries       uint64  `json:"follower_lag_max_entries"`
	FollowerLagP99CommitEntries uint64  `json:"follower_lag_p99_commit_entries"`
	FollowerLagP50Ms            float64 `json:"follower_lag_p50_ms"`
	FollowerLagP99Ms            float64 `json:"follower_lag_p99_ms"`
	FollowerLagMaxMs            float64 `json:"follower_lag_max_ms"`
	// FollowerLagSaturated: some time lag exceeded the bounded history and
	// is a lower bound.
	FollowerLagSaturated bool `json:"follower_lag_saturated"`
	// FollowerLag has the statistics per follower, in ID order.
	FollowerLag []FollowerLagStats `json:"follower_lag"`
	// LagSampleErrors counts failed SampleLag calls in the window.
	LagSampleErrors uint64 `json:"lag_sample_errors"`
	// LagSamplesDropped counts samples past the maxLagSamples bound.
	LagSamplesDropped uint64 `json:"lag_samples_dropped"`

	// Stages is the commit-latency breakdown by stage measured by the
	// nodes over the window, when the run had a StageSource (nil
	// otherwise; raftbench has one for the embedded cluster, and with
	// -cluster when -admin is given).
	Stages *StageBreakdown `json:"stages,omitempty"`

	// Series has one point per second of the window, by completion time.
	Series []SecondPoint `json:"series"`
	// LagSeries has one point per lag sample (every 100 ms).
	LagSeries []LagPoint `json:"lag_series"`
	// LatencyHist is the merged histogram in HdrHistogram's compressed
	// base64 form, so runs can be re-merged or re-plotted later.
	LatencyHist string `json:"latency_hist"`
	// Notes carries anything a reader must know about this run.
	Notes []string `json:"notes,omitempty"`

	// hist is the merged histogram (nil for a Report read back from JSON;
	// WriteHgrm then decodes LatencyHist).
	hist *hdr.Histogram
}

// SecondPoint is one second of the per-second series.
type SecondPoint struct {
	// T is the second's index from the window's start.
	T int `json:"t_s"`
	// Ops and Errors count ops completed (successfully, or not) in it.
	Ops    uint64 `json:"ops"`
	Errors uint64 `json:"errors"`
	// P50Us, P99Us and MaxUs are that second's latencies at 2 significant
	// digits (the per-second histograms trade precision for memory).
	P50Us int64 `json:"p50_us"`
	P99Us int64 `json:"p99_us"`
	MaxUs int64 `json:"max_us"`
}

// setLatency fills the latency fields from h.
func (r *Report) setLatency(h *hdr.Histogram) {
	r.Ops = uint64(h.TotalCount())
	if r.Ops == 0 {
		return
	}
	r.MeanUs = h.Mean()
	r.StdDevUs = h.StdDev()
	r.P50Us = h.ValueAtQuantile(50)
	r.P90Us = h.ValueAtQuantile(90)
	r.P99Us = h.ValueAtQuantile(99)
	r.P999Us = h.ValueAtQuantile(99.9)
	r.P9999Us = h.ValueAtQuantile(99.99)
	r.MaxUs = h.Max()
	r.MinUs = h.Min()
}

func encodeHist(h *hdr.Histogram) (string, error) {
	b, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
	return string(b), err
}

// Histogram returns the merged latency histogram (µs), decoding it from
// LatencyHist for a report read back from JSON.
func (r *Report) Histogram() (*hdr.Histogram, error) {
	if r.hist != nil {
		return r.hist, nil
	}
	if r.LatencyHist == "" {
		return nil, errors.New("bench: report has no latency histogram")
	}
	h, err := hdr.Decode([]byte(r.LatencyHist))
	if err != nil {
		return nil, fmt.Errorf("bench: decode latency histogram: %w", err)
	}
	r.hist = h
	return h, nil
}

// ReadReport parses a report written by WriteJSON.
func ReadReport(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("bench: read report: %w", err)
	}
	return &r, nil
}

// WriteJSON writes the report as exactly one JSON object and a newline.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteSummary writes a short human-readable summary. Its first line is
// the effective load (LoadLine), so a run that measured something other
// than what was meant says so before any number.
func (r *Report) WriteSummary(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, r.LoadLine())
	label := r.System
	if r.Version != "" {
		label += " " + r.Version
	}
	if r.Mode != "" {
		label += " (" + r.Mode + ")"
	}
	groups := ""
	if r.Groups > 1 {
		groups = fmt.Sprintf(", %d groups", r.Groups)
	}
	fmt.Fprintf(bw, "%s, %d nodes%s, %d B payload, %d keys %s\n", label, r.Nodes, groups, r.Payload, r.Keys, r.Distribution)
	fmt.Fprintf(bw, "window %.1fs after %.1fs warm-up: %d ops, %.0f ops/s, %d errors",
		r.DurationS, r.WarmupS, r.Ops, r.OpsPerS, r.Errors)
	if len(r.ErrorsByKind) > 0 {
		kinds := make([]string, 0, len(r.ErrorsByKind))
		for k := range r.ErrorsByKind {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for i, k := range kinds {
			sep := ", "
			if i == 0 {
				sep = " ("
			}
			fmt.Fprintf(bw, "%s%s %d", sep, k, r.ErrorsByKind[k])
		}
		fmt.Fprint(bw, ")")
	}
	fmt.Fprintln(bw)
	fmt.Fprintf(bw, "latency: p50 %s  p90 %s  p99 %s  p99.9 %s  p99.99 %s  max %s\n",
		fmtUs(r.P50Us), fmtUs(r.P90Us), fmtUs(r.P99Us), fmtUs(r.P999Us), fmtUs(r.P9999Us), fmtUs(r.MaxUs))
	if r.CPUProcesses > 0 {
		per := "op"
		if r.WriteFraction == 1 {
			per = "write"
		}
		fmt.Fprintf(bw, "cpu: %.1fµs per %s (user %.2fs + sys %.2fs in the window, %.2f cores, %d process",
			r.CPUUsPerOp, per, r.CPUUserS, r.CPUSysS, r.CPUCores, r.CPUProcesses)
		if r.CPUProcesses > 1 {
			fmt.Fprint(bw, "es")
		}
		fmt.Fprintln(bw, ")")
	}
	if len(r.FollowerLag) > 0 {
		fmt.Fprintf(bw, "follower lag (all): p99 %d entries behind last (max %d), p99 %d behind commit, time p99 %.2f ms (max %.2f ms)\n",
			r.FollowerLagP99Entries, r.FollowerLagMaxEntries, r.FollowerLagP99CommitEntries,
			r.FollowerLagP99Ms, r.FollowerLagMaxMs)
		for _, f := range r.FollowerLag {
			fmt.Fprintf(bw, "  follower %d: behind last p50/p99/max %d/%d/%d, behind commit %d/%d/%d, time %.2f/%.2f/%.2f ms\n",
				f.ID, f.BehindLastP50, f.BehindLastP99, f.BehindLastMax,
				f.BehindCommitP50, f.BehindCommitP99, f.BehindCommitMax,
				f.TimeLagP50Ms, f.TimeLagP99Ms, f.TimeLagMaxMs)
		}
		if r.FollowerLagSaturated {
			fmt.Fprintln(bw, "  (some time lags exceeded the sample history and are lower bounds)")
		}
	}
	if r.Stages != nil {
		r.Stages.writeSummary(bw)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(bw, "note: %s\n", n)
	}
	return bw.Flush()
}

// LoadLine names the load a run applied, from the effective (defaulted)
// settings: the mix, whether reads were stale or linearizable, and the
// load model with its rate or concurrency. For example
// "load: reads only (stale), closed loop, 64 clients x 1 inflight".
func (r *Report) LoadLine() string {
	var mix string
	switch {
	case r.WriteFraction >= 1:
		mix = "writes only"
	case r.WriteFraction <= 0:
		mix = "reads only"
	default:
		mix = fmt.Sprintf("%.4g%% writes, %.4g%% reads", r.WriteFraction*100, (1-r.WriteFraction)*100)
	}
	if r.WriteFraction < 1 {
		if r.StaleReads {
			mix += " (stale)"
		} else {
			mix += " (linearizable)"
		}
	}
	if r.LoadModel == "open" {
		return fmt.Sprintf("load: %s, open loop at %.0f ops/s (max %d outstanding)", mix, r.RateOpsPerSec, r.MaxOutstanding)
	}
	return fmt.Sprintf("load: %s, closed loop, %d clients x %d inflight", mix, r.Clients, r.Inflight)
}

// fmtUs formats microseconds with a unit that keeps 3 significant digits.
func fmtUs(us int64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%dµs", us)
	case us < 1_000_000:
		return fmt.Sprintf("%.2fms", float64(us)/1e3)
	default:
		return fmt.Sprintf("%.2fs", float64(us)/1e6)
	}
}

// hgrmTicksPerHalfDistance is the percentile resolution of .hgrm output;
// 5 is what HdrHistogram's own tools print by default.
const hgrmTicksPerHalfDistance = 5

// WriteHgrm writes the latency distribution in HdrHistogram's percentile
// distribution format (the input of HdrHistogram's plotFiles.html), values
// in milliseconds as that plotter expects.
func (r *Report) WriteHgrm(w io.Writer) error {
	h, err := r.Histogram()
	if err != nil {
		return err
	}
	_, err = h.PercentilesPrint(w, hgrmTicksPerHalfDistance, 1000.0)
	return err
}

// WriteCSV writes the per-second series: t_s,ops,errors,p50_us,p99_us,max_us.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"t_s", "ops", "errors", "p50_us", "p99_us", "max_us"}); err != nil {
		return err
	}
	for _, p := range r.Series {
		rec := []string{
			strconv.Itoa(p.T), strconv.FormatUint(p.Ops, 10), strconv.FormatUint(p.Errors, 10),
			strconv.FormatInt(p.P50Us, 10), strconv.FormatInt(p.P99Us, 10), strconv.FormatInt(p.MaxUs, 10),
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteLagCSV writes the lag series, one row per follower per sample:
// t_ms,follower,index,leader_last,leader_commit,behind_last,behind_commit,time_lag_ms.
func (r *Report) WriteLagCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"t_ms", "follower", "index", "leader_last", "leader_commit",
		"behind_last_entries", "behind_commit_entries", "time_lag_ms"})
	for _, p := range r.LagSeries {
		for _, f := range p.Followers {
			_ = cw.Write([]string{
				strconv.FormatFloat(p.TMs, 'f', 1, 64), strconv.FormatUint(f.ID, 10),
				strconv.FormatUint(f.Index, 10), strconv.FormatUint(p.LeaderLast, 10),
				strconv.FormatUint(p.LeaderCommit, 10), strconv.FormatUint(f.BehindLast, 10),
				strconv.FormatUint(f.BehindCommit, 10), strconv.FormatFloat(f.TimeLagMs, 'f', 3, 64),
			})
		}
	}
	cw.Flush()
	return cw.Error()
}

// BaseName is the file stem WriteOut uses: system-mode-cN-iN (closed) or
// system-mode-rateN (open), made safe for file names.
func (r *Report) BaseName() string {
	name := r.System
	if name == "" {
		name = "run"
	}
	if r.Mode != "" {
		name += "-" + r.Mode
	}
	if r.LoadModel == "open" {
		name += fmt.Sprintf("-rate%.0f", r.RateOpsPerSec)
	} else {
		name += fmt.Sprintf("-c%d-i%d", r.Clients, r.Inflight)
	}
	return safeFileName(name)
}

// safeFileName maps every byte outside [A-Za-z0-9._-] to '-', so labels
// with spaces or '=' still give portable file names.
func safeFileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c == '.' || c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			b[i] = '-'
		}
	}
	return string(b)
}

// WriteOut writes BaseName().json, .txt (summary), .hgrm, .csv (per
// second), -lag.csv (if lag was sampled) and PNG plots into dir, creating it.
func (r *Report) WriteOut(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: create output dir: %w", err)
	}
	base := filepath.Join(dir, r.BaseName())
	files := []struct {
		suffix string
		write  func(io.Writer) error
	}{
		{".json", r.WriteJSON},
		{".txt", r.WriteSummary},
		{".hgrm", r.WriteHgrm},
		{".csv", r.WriteCSV},
	}
	if len(r.LagSeries) > 0 {
		files = append(files, struct {
			suffix string
			write  func(io.Writer) error
		}{"-lag.csv", r.WriteLagCSV})
	}
	for _, f := range files {
		if err := writeFile(base+f.suffix, f.write); err != nil {
			return err
		}
	}
	return r.WritePlots(base)
}

// writeFile creates path and fills it with write.
func writeFile(path string, write func(io.Writer) error) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("bench: close %s: %w", path, cerr)
		}
	}()
	bw := bufio.NewWriter(f)
	if err := write(bw); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return bw.Flush()
}
