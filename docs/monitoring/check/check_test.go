package check

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/raftpipe/raftpipe/bench/cluster"
	"github.com/raftpipe/raftpipe/raft/node"
)

const (
	rulesFile     = "../alerts.yml"
	dashboardFile = "../grafana-dashboard.json"
	deployDoc     = "../../deploy.md"
)

// grafanaVars stand in for the dashboard's template variables so its
// queries parse as plain PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$job", ".*")

var promql = parser.NewParser(parser.Options{})

// metricNames returns the metric names expr selects.
func metricNames(t *testing.T, where, expr string) []string {
	t.Helper()
	e, err := promql.ParseExpr(expr)
	if err != nil {
		t.Fatalf("%s: %q does not parse: %v", where, expr, err)
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			t.Errorf("%s: %q selects series without a metric name", where, expr)
		}
		names = append(names, name)
		return nil
	})
	return names
}

// ruleMetrics parses the alerting rules with Prometheus' own rule parser
// and returns the metric names per alert.
func ruleMetrics(t *testing.T) map[string][]string {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("rulefmt: %v", err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	out := map[string][]string{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: rule %q is not an alert", g.Name, r.Record)
				continue
			}
			if r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				t.Errorf("alert %s lacks a summary annotation or a severity label", r.Alert)
			}
			out["alert "+r.Alert] = metricNames(t, "alert "+r.Alert, r.Expr)
		}
	}
	return out
}

// dashboardMetrics reads the Grafana dashboard and returns the metric
// names per panel.
func dashboardMetrics(t *testing.T) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: no title or no panels", dashboardFile)
	}
	out := map[string][]string{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, tg := range p.Targets {
			where := "panel " + p.Title
			out[where] = append(out[where], metricNames(t, where, grafanaVars.Replace(tg.Expr))...)
		}
	}
	return out
}

// family maps a selected series name to its metric family: histograms are
// selected through their _bucket, _sum and _count series.
func family(name string, exposed map[string]bool) string {
	if exposed[name] {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && exposed[base] {
			return base
		}
	}
	return name
}

// scrapeCluster starts a real 3-node cluster on 127.0.0.1, writes through
// it until the leader has timed a heartbeat to each follower, and returns
// the union of families every node exposes, plus the leader's exposition.
func scrapeCluster(t *testing.T) (map[string]bool, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Nodes: 3, Dir: t.TempDir(), Tune: func(cfg *node.Config) {
		cfg.TickInterval = 20 * time.Millisecond
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exposed := map[string]bool{}
	var leaderBody []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		var leader *node.Node
		for _, n := range c.Nodes {
			if n.IsLeader() {
				leader = n
			}
		}
		if leader != nil {
			if _, err := leader.Put(ctx, []byte("k"), []byte("v")); err == nil {
				body := scrape(t, leader)
				if bytes.Count(body, []byte("raftpipe_peer_round_trip_time_seconds_count{")) == 2 {
					leaderBody = body
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for a leader that has timed a heartbeat to both followers")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, n := range c.Nodes {
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(scrape(t, n)))
		if err != nil {
			t.Fatal(err)
		}
		for name := range fams {
			exposed[name] = true
		}
	}
	return exposed, leaderBody
}

func scrape(t *testing.T, n *node.Node) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	n.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.Bytes()
}

// TestMonitoringFiles is the whole check: rules parse, the dashboard
// parses, every metric either names is exposed by a live node, every
// exposed raftpipe metric is documented in docs/deploy.md, and the
// exposition passes promlint.
func TestMonitoringFiles(t *testing.T) {
	uses := ruleMetrics(t)
	for where, names := range dashboardMetrics(t) {
		uses[where] = names
	}
	exposed, body := scrapeCluster(t)

	var missing []string
	for where, names := range uses {
		for _, name := range names {
			if !exposed[family(name, exposed)] {
				missing = append(missing, where+": "+name)
			}
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("not exposed by a live node: %s", m)
	}

	doc, err := os.ReadFile(deployDoc)
	if err != nil {
		t.Fatal(err)
	}
	for name := range exposed {
		if strings.HasPrefix(name, "raftpipe_") && !bytes.Contains(doc, []byte("`"+name)) {
			t.Errorf("%s is exposed but not documented in %s", name, filepath.Clean(deployDoc))
		}
	}

	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
