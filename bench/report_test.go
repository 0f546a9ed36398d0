package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runShort returns a report from a short run with lag sampling, shared by
// the output tests.
func runShort(t *testing.T) *Report {
	t.Helper()
	cfg := shortCfg()
	lag := &fakeLag{perCall: 100, commitBehind: 20, behind: map[uint64]uint64{2: 50, 3: 5}}
	rep, err := Run(context.Background(), cfg, &fakeTarget{delay: 100 * time.Microsecond}, lag, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestJSONFieldNames(t *testing.T) {
	rep := runShort(t)
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Fatal("WriteJSON wrote more than one JSON value")
	}
	required := []string{"system", "version", "mode", "nodes", "clients", "inflight", "payload",
		"duration_s", "ops", "ops_per_s", "p50_us", "p90_us", "p99_us", "p999_us", "p9999_us",
		"max_us", "errors", "follower_lag_p99_entries", "follower_lag_max_entries",
		"follower_lag_p99_ms", "errors_by_kind", "series", "follower_lag", "lag_series", "latency_hist"}
	for _, k := range required {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks field %q", k)
		}
	}
	if m["system"] != "fake" || m["nodes"] != float64(3) || m["ops"] != float64(rep.Ops) {
		t.Fatalf("values not as reported: system %v nodes %v ops %v", m["system"], m["nodes"], m["ops"])
	}
	series := m["series"].([]any)[0].(map[string]any)
	for _, k := range []string{"t_s", "ops", "p99_us"} {
		if _, ok := series[k]; !ok {
			t.Errorf("series point lacks %q", k)
		}
	}
	fl := m["follower_lag"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "behind_last_p50_entries", "behind_last_p99_entries", "behind_last_max_entries",
		"behind_commit_p50_entries", "behind_commit_p99_entries", "behind_commit_max_entries",
		"time_lag_p50_ms", "time_lag_p99_ms", "time_lag_max_ms"} {
		if _, ok := fl[k]; !ok {
			t.Errorf("follower_lag entry lacks %q", k)
		}
	}

	// Round trip: the histogram survives JSON, so .hgrm can be redone later.
	back, err := ReadReport(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	h, err := back.Histogram()
	if err != nil {
		t.Fatal(err)
	}
	if uint64(h.TotalCount()) != rep.Ops || h.Max() != rep.MaxUs {
		t.Fatalf("decoded histogram count %d max %d, want %d %d", h.TotalCount(), h.Max(), rep.Ops, rep.MaxUs)
	}
}

// parseHgrm reads HdrHistogram's percentile distribution text: a header,
// rows "value percentile totalcount 1/(1-p)", and "#[" footer lines.
func parseHgrm(t *testing.T, r io.Reader) (values, pcts []float64, counts []int64, footer []string) {
	t.Helper()
	sc := bufio.NewScanner(r)
	if !sc.Scan() || !strings.Contains(sc.Text(), "Value") || !strings.Contains(sc.Text(), "Percentile") {
		t.Fatalf("bad .hgrm header %q", sc.Text())
	}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "#["):
			footer = append(footer, line)
		default:
			f := strings.Fields(line)
			if len(f) != 4 {
				t.Fatalf(".hgrm row %q has %d fields", line, len(f))
			}
			v, err1 := strconv.ParseFloat(f[0], 64)
			p, err2 := strconv.ParseFloat(f[1], 64)
			c, err3 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				t.Fatalf(".hgrm row %q does not parse", line)
			}
			if f[3] != "inf" {
				if _, err := strconv.ParseFloat(f[3], 64); err != nil {
					t.Fatalf(".hgrm row %q: %v", line, err)
				}
			}
			values, pcts, counts = append(values, v), append(pcts, p), append(counts, c)
		}
	}
	return values, pcts, counts, footer
}

func TestHgrmParses(t *testing.T) {
	rep := runShort(t)
	var buf bytes.Buffer
	if err := rep.WriteHgrm(&buf); err != nil {
		t.Fatal(err)
	}
	values, pcts, counts, footer := parseHgrm(t, &buf)
	if len(values) < 10 || len(footer) != 3 {
		t.Fatalf("%d rows, %d footer lines", len(values), len(footer))
	}
	for i := 1; i < len(values); i++ {
		if values[i] < values[i-1] || pcts[i] < pcts[i-1] || counts[i] < counts[i-1] {
			t.Fatalf("row %d not monotonic", i)
		}
	}
	n := len(values) - 1
	if pcts[n] != 1 || counts[n] != int64(rep.Ops) {
		t.Fatalf("last row percentile %v count %d, want 1 and %d", pcts[n], counts[n], rep.Ops)
	}
	// Values are in ms; the last is the highest value equivalent to max.
	if maxMs := float64(rep.MaxUs) / 1e3; values[n] < maxMs || values[n] > maxMs*1.002+0.001 {
		t.Fatalf("last value %v ms, max %v ms", values[n], maxMs)
	}
}

func TestWriteOutFiles(t *testing.T) {
	rep := runShort(t)
	dir := t.TempDir()
	if err := rep.WriteOut(dir); err != nil {
		t.Fatal(err)
	}
	if got := rep.BaseName(); got != "fake-mem-c4-i2" {
		t.Fatalf("base name %q", got)
	}
	if got := (&Report{System: "a b", Mode: "x=1/y", LoadModel: "open", RateOpsPerSec: 5}).BaseName(); got != "a-b-x-1-y-rate5" {
		t.Fatalf("unsafe label gave base name %q", got)
	}
	base := filepath.Join(dir, rep.BaseName())
	for _, suffix := range []string{".json", ".txt", ".hgrm", ".csv", "-lag.csv"} {
		if st, err := os.Stat(base + suffix); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty: %v", suffix, err)
		}
	}
	for _, suffix := range []string{"-latency.png", "-throughput.png", "-lag.png"} {
		checkPNG(t, base+suffix)
	}
	csvData, _ := os.ReadFile(base + ".csv")
	lines := strings.Split(strings.TrimSpace(string(csvData)), "\n")
	if lines[0] != "t_s,ops,errors,p50_us,p99_us,max_us" || len(lines) != len(rep.Series)+1 {
		t.Fatalf("csv header %q, %d lines for %d seconds", lines[0], len(lines), len(rep.Series))
	}
	summary, _ := os.ReadFile(base + ".txt")
	for _, want := range []string{"fake test (mem)", "ops/s", "p99.99", "follower 2"} {
		if !strings.Contains(string(summary), want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
}

// checkPNG asserts path is a decodable, non-empty PNG.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	if cfg.Width < 100 || cfg.Height < 100 {
		t.Fatalf("%s is %dx%d", path, cfg.Width, cfg.Height)
	}
}

func TestSweepWritesTableAndPlot(t *testing.T) {
	cfg := shortCfg()
	cfg.Duration, cfg.Warmup = 150*time.Millisecond, 0
	var setups, closes int
	setup := func(ctx context.Context, pc Config) (Target, LagSource, func() error, error) {
		setups++
		return &fakeTarget{delay: 100 * time.Microsecond}, nil, func() error { closes++; return nil }, nil
	}
	var progress bytes.Buffer
	sr, err := Sweep(context.Background(), cfg, []int{1, 4}, setup, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if len(sr.Points) != 2 || sr.Points[0].Clients != 1 || sr.Points[1].Clients != 4 || setups != 2 || closes != 2 {
		t.Fatalf("points %d setups %d closes %d", len(sr.Points), setups, closes)
	}
	dir := t.TempDir()
	if err := sr.WriteOut(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "sweep.md"))
	if err != nil {
		t.Fatal(err)
	}
	if rows := strings.Count(string(md), "\n| fake |"); rows != 2 {
		t.Fatalf("sweep.md has %d rows:\n%s", rows, md)
	}
	checkPNG(t, filepath.Join(dir, "sweep-throughput-p99.png"))
	if !strings.Contains(progress.String(), "sweep point: 4 clients") {
		t.Fatalf("progress: %q", progress.String())
	}

	rates, err := SweepRates(context.Background(), cfg, []float64{500, 1000}, setup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rates.Points) != 2 || rates.Points[1].RateOpsPerSec != 1000 || rates.Points[1].LoadModel != "open" {
		t.Fatalf("rate sweep points %+v", rates.Points)
	}
	var md2 bytes.Buffer
	if err := rates.WriteMarkdown(&md2); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md2.String(), "| open 1000/s |") {
		t.Fatalf("rate table:\n%s", md2.String())
	}
	if _, err := SweepRates(context.Background(), cfg, []float64{0}, setup, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("zero rate: %v", err)
	}
}

func TestProgressLine(t *testing.T) {
	start := time.Now()
	rs := &runState{start: start, measureStart: start.Add(time.Second), measureEnd: start.Add(3 * time.Second),
		seconds: &secondsAgg{}}
	h := newSecHist()
	_ = h.RecordValue(1500)
	rs.seconds.flush(0, h, 0)
	line := rs.progressLine(start.Add(2500*time.Millisecond), 3*time.Second, 12345, false)
	for _, want := range []string{"measure", "12345 ops/s", "p99(1s) 1.50ms", "83%"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}
	if !strings.HasSuffix(line, "\n") {
		t.Error("non-terminal progress should be whole lines")
	}
	if term := rs.progressLine(start, 3*time.Second, 0, true); !strings.HasPrefix(term, "\r") || !strings.Contains(term, "warm-up") {
		t.Errorf("terminal line %q", term)
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
}

// TestWriteOutWithNoSuccessfulOps: a run where every op fails still writes
// every file (empty histogram, empty series plots) instead of failing.
func TestWriteOutWithNoSuccessfulOps(t *testing.T) {
	cfg := shortCfg()
	cfg.Duration, cfg.Warmup = 100*time.Millisecond, 0
	ft := &fakeTarget{delay: time.Millisecond, fail: func(uint64) error { return ErrNotLeader }}
	rep, err := Run(context.Background(), cfg, ft, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ops != 0 || rep.Errors == 0 || rep.ErrorsByKind[KindNotLeader] != rep.Errors {
		t.Fatalf("ops %d errors %v", rep.Ops, rep.ErrorsByKind)
	}
	dir := t.TempDir()
	if err := rep.WriteOut(dir); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, filepath.Join(dir, rep.BaseName()+"-latency.png"))
	checkPNG(t, filepath.Join(dir, rep.BaseName()+"-throughput.png"))
}
