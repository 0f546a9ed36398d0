package bench

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"sort"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Plot sizes. PNGs are rendered at vgimg's default 96 dpi.
const (
	plotWidth       = 8 * vg.Inch
	plotHeight      = 4.5 * vg.Inch
	plotPanelHeight = 3 * vg.Inch
)

// WritePlots writes base+"-latency.png" (latency by percentile),
// base+"-throughput.png" (ops/s and p99 per second), base+"-lag.png" if
// lag was sampled and base+"-stages.png" if a stage breakdown was read.
func (r *Report) WritePlots(base string) error {
	h, err := r.Histogram()
	if err != nil {
		return err
	}
	if err := PlotPercentiles(base+"-latency.png", map[string]*hdr.Histogram{r.label(): h}); err != nil {
		return err
	}
	if err := r.plotSeries(base + "-throughput.png"); err != nil {
		return err
	}
	if len(r.LagSeries) > 0 {
		if err := r.plotLag(base + "-lag.png"); err != nil {
			return err
		}
	}
	if r.Stages != nil && r.Stages.Stage("total").Count > 0 {
		return r.plotStages(base + "-stages.png")
	}
	return nil
}

// stackedStages are the stages that add up to a sample's total, bottom
// first; sideStages run in parallel inside "durable" and are drawn beside
// the stack, not on it.
var (
	stackedStages = []string{"queue", "durable", "loop", "commit_to_applied", "applied_to_reply"}
	sideStages    = []string{"leader_wal", "replication"}
)

// plotStages writes the stage breakdown: for p50 and for p99, a bar of the
// stages that add up to the total, stacked, with leader WAL and
// replication (parallel parts of "durable") as bars beside it and the
// measured total as a bar on the other side. Percentiles of parts do not
// add up to the percentile of the whole, so a stack can differ from its
// total bar; per sample the parts add up exactly.
func (r *Report) plotStages(path string) error {
	b := r.Stages
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: commit latency by stage (leader %d, 1 in %d writes)", r.label(), b.Leader, b.SampleEvery)
	p.Y.Label.Text = "latency (µs)"
	p.NominalX("p50", "p99")
	w := vg.Points(28)
	vals := func(name string) plotter.Values {
		s := b.Stage(name)
		return plotter.Values{float64(s.P50Us), float64(s.P99Us)}
	}
	var below *plotter.BarChart
	for i, name := range stackedStages {
		bc, err := plotter.NewBarChart(vals(name), w)
		if err != nil {
			return fmt.Errorf("bench: plot stage %s: %w", name, err)
		}
		bc.Color = plotutil.Color(i)
		bc.LineStyle.Width = vg.Points(0.5)
		if below != nil {
			bc.StackOn(below)
		}
		below = bc
		p.Add(bc)
		p.Legend.Add(name, bc)
	}
	side := append([]string{"total"}, sideStages...)
	offsets := []vg.Length{-w, w, 2 * w}
	for i, name := range side {
		bc, err := plotter.NewBarChart(vals(name), w)
		if err != nil {
			return fmt.Errorf("bench: plot stage %s: %w", name, err)
		}
		// plotutil's palette has 7 colours and the stack uses 5: the total
		// is grey so that no two bars share a colour.
		bc.Color = color.Gray{Y: 0x99}
		if i > 0 {
			bc.Color = plotutil.Color(len(stackedStages) + i - 1)
		}
		bc.LineStyle.Width = vg.Points(0.5)
		bc.Offset = offsets[i]
		p.Add(bc)
		label := name
		if name != "total" {
			label += " (inside durable)"
		}
		p.Legend.Add(label, bc)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.X.Min, p.X.Max = -0.6, 1.6
	p.Y.Min = 0
	top := 1.0
	for _, name := range side {
		top = max(top, float64(b.Stage(name).P99Us))
	}
	var stack float64
	for _, name := range stackedStages {
		stack += float64(b.Stage(name).P99Us)
	}
	p.Y.Max = max(top, stack) * 1.6 // headroom for the legend
	p.Add(plotter.NewGrid())
	return savePlot(p, path, plotWidth, plotHeight)
}

func (r *Report) label() string {
	s := r.System
	if s == "" {
		s = "run"
	}
	if r.Mode != "" {
		s += " " + r.Mode
	}
	return s
}

// percentileTicks labels the 1/(1-p) axis with percentiles, HdrHistogram style.
func percentileTicks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	labels := []string{"0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%", "99.99999%"}
	for i, x := 0, 1.0; x <= max*1.0001; i, x = i+1, x*10 {
		l := fmt.Sprintf("1-1e-%d", i)
		if i < len(labels) {
			l = labels[i]
		}
		if x >= min/1.0001 {
			ticks = append(ticks, plot.Tick{Value: x, Label: l})
		}
	}
	return ticks
}

// PlotPercentiles writes a PNG of latency (ms) against percentile for each
// named histogram (µs values), with the x axis at 1/(1-p) on a log scale
// so the tail is spread out as in HdrHistogram's plotter.
func PlotPercentiles(path string, hists map[string]*hdr.Histogram) error {
	p := plot.New()
	p.Title.Text = "Latency by percentile"
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (ms)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.TickerFunc(percentileTicks)
	names := make([]string, 0, len(hists))
	for n := range hists {
		names = append(names, n)
	}
	sort.Strings(names)
	maxX := 10.0
	for i, name := range names {
		h := hists[name]
		if h.TotalCount() == 0 {
			continue
		}
		// The top percentile is 1/(1-p) = inf; put it one decade past the
		// count, where no finer percentile can be resolved anyway.
		top := math.Pow(10, math.Ceil(math.Log10(float64(h.TotalCount())))+1)
		var xys plotter.XYs
		for _, b := range h.CumulativeDistributionWithTicks(hgrmTicksPerHalfDistance) {
			x := 1 / (1 - b.Quantile/100)
			if math.IsInf(x, 0) || x > top {
				x = top
			}
			xys = append(xys, plotter.XY{X: x, Y: float64(b.ValueAt) / 1e3})
		}
		maxX = max(maxX, top)
		line, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("bench: plot %s: %w", name, err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(name, line)
	}
	p.X.Min, p.X.Max = 1, maxX
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return savePlot(p, path, plotWidth, plotHeight)
}

// plotSeries writes throughput and p99 per second, stacked. Seconds not
// wholly inside the window (a partial last second, drain seconds) are left
// out of the plot, since their op counts cover less than a second; they
// stay in the JSON and CSV.
func (r *Report) plotSeries(path string) error {
	ops, p99 := make(plotter.XYs, 0, len(r.Series)), make(plotter.XYs, 0, len(r.Series))
	whole := int(math.Floor(r.DurationS + 1e-9))
	for _, s := range r.Series {
		if s.T >= whole {
			continue
		}
		ops = append(ops, plotter.XY{X: float64(s.T), Y: float64(s.Ops)})
		if s.Ops > 0 {
			p99 = append(p99, plotter.XY{X: float64(s.T), Y: float64(s.P99Us) / 1e3})
		}
	}
	top := plot.New()
	top.Title.Text = r.label() + ": throughput and p99 per second"
	top.Y.Label.Text = "ops/s"
	bottom := plot.New()
	bottom.X.Label.Text = "time in window (s)"
	bottom.Y.Label.Text = "p99 (ms)"
	if err := addLine(top, "ops/s", ops, 0); err != nil {
		return err
	}
	if err := addLine(bottom, "p99", p99, 1); err != nil {
		return err
	}
	top.Y.Min, bottom.Y.Min = 0, 0
	return saveStacked(path, top, bottom)
}

// plotLag writes time lag (ms) and entries behind the leader's last index
// per follower over time, stacked.
func (r *Report) plotLag(path string) error {
	timeLag := map[uint64]plotter.XYs{}
	entries := map[uint64]plotter.XYs{}
	for _, p := range r.LagSeries {
		for _, f := range p.Followers {
			x := p.TMs / 1e3
			timeLag[f.ID] = append(timeLag[f.ID], plotter.XY{X: x, Y: f.TimeLagMs})
			entries[f.ID] = append(entries[f.ID], plotter.XY{X: x, Y: float64(f.BehindLast)})
		}
	}
	ids := make([]uint64, 0, len(timeLag))
	for id := range timeLag {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	top := plot.New()
	top.Title.Text = r.label() + ": follower lag"
	top.Y.Label.Text = "time lag (ms)"
	bottom := plot.New()
	bottom.X.Label.Text = "time in window (s)"
	bottom.Y.Label.Text = "entries behind last"
	for i, id := range ids {
		name := fmt.Sprintf("follower %d", id)
		if err := addLine(top, name, timeLag[id], i); err != nil {
			return err
		}
		if err := addLine(bottom, name, entries[id], i); err != nil {
			return err
		}
	}
	top.Y.Min, bottom.Y.Min = 0, 0
	return saveStacked(path, top, bottom)
}

// addLine adds a named line in the i-th default colour; an empty series
// adds nothing (gonum refuses empty lines).
func addLine(p *plot.Plot, name string, xys plotter.XYs, i int) error {
	if len(xys) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("bench: plot %s: %w", name, err)
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	p.Legend.Top = true
	// Leave headroom above the data for the legend.
	for _, xy := range xys {
		p.Y.Max = max(p.Y.Max, xy.Y*1.3)
	}
	return nil
}

func savePlot(p *plot.Plot, path string, w, h vg.Length) error {
	if err := p.Save(w, h, path); err != nil {
		return fmt.Errorf("bench: save plot %s: %w", path, err)
	}
	return nil
}

// saveStacked draws plots one above the other, x axes aligned, into a PNG.
func saveStacked(path string, plots ...*plot.Plot) (err error) {
	img := vgimg.NewWith(vgimg.UseWH(plotWidth, plotPanelHeight*vg.Length(len(plots))),
		vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	grid := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		p.Add(plotter.NewGrid())
		grid[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadX: vg.Millimeter, PadY: 2 * vg.Millimeter,
		PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8)}
	canvases := plot.Align(grid, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return nil
}

// PlotThroughputLatency writes a PNG of p99 latency (ms) against throughput
// (ops/s), one line per named series of reports (for example one per
// system), each point one run of a sweep.
func PlotThroughputLatency(path string, series map[string][]*Report) error {
	p := plot.New()
	p.Title.Text = "Throughput vs p99 latency"
	p.X.Label.Text = "throughput (ops/s)"
	p.Y.Label.Text = "p99 latency (ms)"
	names := make([]string, 0, len(series))
	for n := range series {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, name := range names {
		var xys plotter.XYs
		for _, r := range series[name] {
			if r.Ops > 0 {
				xys = append(xys, plotter.XY{X: r.OpsPerS, Y: float64(r.P99Us) / 1e3})
			}
		}
		if len(xys) == 0 {
			continue
		}
		l, s, err := plotter.NewLinePoints(xys)
		if err != nil {
			return fmt.Errorf("bench: plot %s: %w", name, err)
		}
		l.Color, s.Color = plotutil.Color(i), plotutil.Color(i)
		s.Shape = plotutil.Shape(i)
		p.Add(l, s)
		p.Legend.Add(name, l, s)
	}
	p.X.Min, p.Y.Min = 0, 0
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	return savePlot(p, path, plotWidth, plotHeight)
}
