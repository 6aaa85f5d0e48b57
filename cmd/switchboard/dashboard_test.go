package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// dashboardFile is the Grafana dashboard the README points operators to.
var dashboardFile = filepath.Join(deployDir, "grafana-dashboard.json")

// registeredMetrics returns every metric family the server's /metrics can
// expose, with its label names: the app's registry as newApp builds it
// (Go and process collectors), plus every Desc of the app's collector and
// of the cluster's, including series that only appear once the relay runs,
// a reason has been counted or clustering is on (a scrape of a fresh app
// would not show those).
func registeredMetrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	cfg, err := parseConfigMap(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	fams := map[string]*dto.MetricFamily{}
	got, err := a.reg.Gather()
	if err != nil {
		t.Fatalf("gather the app's registry: %v", err)
	}
	for _, f := range got {
		fams[f.GetName()] = f
	}
	// Each described metric, emitted once with placeholder label values,
	// through a registry of its own: Gather then names it and its labels.
	reg := prometheus.NewPedanticRegistry()
	// The cluster's collector is registered only with SWITCHBOARD_CLUSTER
	// set; its Describe needs no node.
	for _, c := range []prometheus.Collector{newCollector(a), clusterCollector{}} {
		if err := reg.Register(describedOnly{c}); err != nil {
			t.Fatalf("register the descriptions of %T: %v", c, err)
		}
	}
	got, err = reg.Gather()
	if err != nil {
		t.Fatalf("gather the app's collector descriptions: %v", err)
	}
	for _, f := range got {
		if _, ok := fams[f.GetName()]; !ok {
			fams[f.GetName()] = f
		}
	}
	if len(fams) < 20 || fams["switchboard_turn_allocations"] == nil || fams["process_cpu_seconds_total"] == nil {
		t.Fatalf("registered metrics look incomplete: %v", slices.Sorted(func(yield func(string) bool) {
			for n := range fams {
				if !yield(n) {
					return
				}
			}
		}))
	}
	return fams
}

// describedOnly emits one untyped sample per Desc of c, with placeholder
// label values, so a registry's Gather reports every described name.
type describedOnly struct{ c prometheus.Collector }

func (d describedOnly) Describe(ch chan<- *prometheus.Desc) { d.c.Describe(ch) }

func (d describedOnly) Collect(ch chan<- prometheus.Metric) {
	descs := make(chan *prometheus.Desc)
	go func() {
		d.c.Describe(descs)
		close(descs)
	}()
	for desc := range descs {
		// The number of variable labels is not exported: the one that
		// NewConstMetric accepts is it.
		for n := 0; n <= 8; n++ {
			vals := make([]string, n)
			for i := range vals {
				vals[i] = "x"
			}
			if m, err := prometheus.NewConstMetric(desc, prometheus.UntypedValue, 0, vals...); err == nil {
				ch <- m
				break
			}
		}
	}
}

// dashboardTarget is one query of one panel.
type dashboardTarget struct {
	panel, expr string
}

type grafanaPanel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Datasource json.RawMessage          `json:"datasource"`
	Targets    []struct {
		Expr       string          `json:"expr"`
		RefID      string          `json:"refId"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // collapsed rows hold theirs
}

type grafanaDashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

func loadDashboard(t *testing.T) (grafanaDashboard, []dashboardTarget) {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var targets []dashboardTarget
	ids := map[int]string{}
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.Type != "row" {
				if !usesDatasourceVar(p.Datasource) {
					t.Errorf("panel %q: datasource %s, want the ${datasource} variable", p.Title, p.Datasource)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no queries", p.Title)
				}
			}
			for _, tg := range p.Targets {
				if !usesDatasourceVar(tg.Datasource) {
					t.Errorf("panel %q query %s: datasource %s, want the ${datasource} variable", p.Title, tg.RefID, tg.Datasource)
				}
				targets = append(targets, dashboardTarget{p.Title, tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	// Top-level panels tile the 24-column grid without overlapping.
	for i, p := range d.Panels {
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for _, q := range d.Panels[:i] {
			h := q.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("panels %q %+v and %q %+v overlap", q.Title, h, p.Title, g)
			}
		}
	}
	return d, targets
}

func usesDatasourceVar(raw json.RawMessage) bool {
	var ds struct{ Type, UID string }
	return json.Unmarshal(raw, &ds) == nil && ds.Type == "prometheus" && ds.UID == "${datasource}"
}

// TestDashboard: the Grafana dashboard in deploy/ parses, picks its
// Prometheus data source from a variable, and every metric and label its
// queries use is one the server registers, so it cannot drift from the code.
func TestDashboard(t *testing.T) {
	d, targets := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q, uid %q: want both", d.Title, d.UID)
	}
	var dsVar bool
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			dsVar = true
		}
	}
	if !dsVar {
		t.Error(`no templating variable "datasource" of type datasource, query "prometheus"`)
	}
	if len(targets) < 20 {
		t.Fatalf("dashboard has %d queries; expected panels for signaling, relay and process", len(targets))
	}

	fams := registeredMetrics(t)
	used := map[string]bool{}
	for _, tg := range targets {
		names, labels, err := promqlNames(tg.expr)
		if err != nil {
			t.Errorf("panel %q: %q: %v", tg.panel, tg.expr, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("panel %q: %q names no metric", tg.panel, tg.expr)
		}
		for _, n := range names {
			f := family(fams, n)
			if f == nil {
				t.Errorf("panel %q: %q uses %s, which the server does not register", tg.panel, tg.expr, n)
				continue
			}
			used[f.GetName()] = true
			have := map[string]bool{"instance": true, "job": true} // added by Prometheus at scrape
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					have[l.GetName()] = true
				}
			}
			for _, l := range labels {
				if !have[l] {
					t.Errorf("panel %q: %q uses label %q, which %s does not have", tg.panel, tg.expr, l, f.GetName())
				}
			}
		}
	}
	// Every switchboard_ series has a panel: a new metric needs one too.
	for name := range fams {
		if strings.HasPrefix(name, "switchboard_") && !used[name] {
			t.Errorf("no dashboard panel shows %s", name)
		}
	}
}

// family finds the registered family of a series name: the name itself,
// or a summary's or histogram's _count, _sum or _bucket series.
func family(fams map[string]*dto.MetricFamily, name string) *dto.MetricFamily {
	if f := fams[name]; f != nil {
		return f
	}
	for _, suffix := range []string{"_count", "_sum", "_bucket"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		f := fams[base]
		if f == nil {
			continue
		}
		switch t := f.GetType(); {
		case t == dto.MetricType_SUMMARY && suffix != "_bucket",
			t == dto.MetricType_HISTOGRAM, t == dto.MetricType_GAUGE_HISTOGRAM:
			return f
		}
	}
	return nil
}

// promqlKeywords are identifiers in a PromQL expression that are not metric
// names although no "(" may follow them: operators, and aggregations
// written as "sum by (x) (...)".
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"inf": true, "nan": true,
	"sum": true, "min": true, "max": true, "avg": true, "count": true, "group": true,
	"stddev": true, "stdvar": true, "topk": true, "bottomk": true, "quantile": true,
	"count_values": true, "limitk": true, "limit_ratio": true,
}

// promqlLabelLists are the words whose parenthesised list names labels.
var promqlLabelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// promqlNames lists the metric names an expression selects and the label
// names it groups by or matches on. It understands the subset of PromQL the
// dashboard uses (selectors, matchers, ranges, functions, aggregations with
// by/without, arithmetic, Grafana's $variables) and refuses anything else
// rather than guess, so a new kind of query makes this test fail loudly.
func promqlNames(expr string) (names, labels []string, err error) {
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	ident := func(i int) (string, int) {
		j := i
		for j < len(expr) && isPart(expr[j]) {
			j++
		}
		return expr[i:j], j
	}
	skipSpace := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n') {
			i++
		}
		return i
	}
	closing := func(i int, end byte) (int, error) { // index after end, outside strings
		for ; i < len(expr); i++ {
			switch c := expr[i]; {
			case c == end:
				return i + 1, nil
			case c == '"' || c == '\'' || c == '`':
				k := strings.IndexByte(expr[i+1:], c)
				if k < 0 {
					return 0, fmt.Errorf("unterminated string at %d", i)
				}
				i += k + 1
			}
		}
		return 0, fmt.Errorf("missing %q", end)
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '{': // label matchers
			j, err := closing(i+1, '}')
			if err != nil {
				return nil, nil, err
			}
			for _, m := range strings.Split(expr[i+1:j-1], ",") {
				l := strings.TrimSpace(m)
				if k := strings.IndexAny(l, "=!~"); k > 0 {
					labels = append(labels, strings.TrimSpace(l[:k]))
				} else if l != "" {
					return nil, nil, fmt.Errorf("matcher %q not understood", m)
				}
			}
			i = j
		case c == '[': // range, with Grafana's $__rate_interval
			j, err := closing(i+1, ']')
			if err != nil {
				return nil, nil, err
			}
			i = j
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') {
				i++
			}
		case isStart(c):
			word, j := ident(i)
			k := skipSpace(j)
			switch {
			case promqlLabelLists[word]:
				if k >= len(expr) || expr[k] != '(' {
					if word == "group_left" || word == "group_right" { // the list is optional
						i = j
						continue
					}
					return nil, nil, fmt.Errorf("%s without a label list", word)
				}
				end, err := closing(k+1, ')')
				if err != nil {
					return nil, nil, err
				}
				for _, l := range strings.Split(expr[k+1:end-1], ",") {
					if l = strings.TrimSpace(l); l != "" {
						labels = append(labels, l)
					}
				}
				i = end
				continue
			case k < len(expr) && expr[k] == '(': // function or aggregation
			case promqlKeywords[strings.ToLower(word)]:
			default:
				names = append(names, word)
			}
			i = j
		case strings.IndexByte(" \t\n()+-*/%^,<>=!", c) >= 0:
			i++
		default:
			return nil, nil, fmt.Errorf("character %q at %d not understood", c, i)
		}
	}
	return names, labels, nil
}

func TestPromqlNames(t *testing.T) {
	tests := []struct {
		expr          string
		names, labels []string
		wantErr       bool
	}{
		{`up`, []string{"up"}, nil, false},
		{`switchboard_ready{instance=~"$instance"}`, []string{"switchboard_ready"}, []string{"instance"}, false},
		{`8 * sum by (direction) (rate(switchboard_turn_relayed_bytes_total{instance=~"$instance"}[$__rate_interval]))`,
			[]string{"switchboard_turn_relayed_bytes_total"}, []string{"direction", "instance"}, false},
		{`sum(rate(a_total[5m])) by (reason) / on(instance) group_left b`, []string{"a_total", "b"}, []string{"reason", "instance"}, false},
		{`a / on(instance) group_left(version) b`, []string{"a", "b"}, []string{"instance", "version"}, false},
		{`rate(x{le="0.5",a!="}"}[1m]) > 1e3 and bool y`, []string{"x", "y"}, []string{"le", "a"}, false},
		{`x{a="b"`, nil, nil, true},
		{`x @ 5`, nil, nil, true},
	}
	for _, tt := range tests {
		names, labels, err := promqlNames(tt.expr)
		if (err != nil) != tt.wantErr {
			t.Errorf("promqlNames(%q) err = %v, want error %v", tt.expr, err, tt.wantErr)
			continue
		}
		if tt.wantErr {
			continue
		}
		if !slices.Equal(names, tt.names) || !slices.Equal(labels, tt.labels) {
			t.Errorf("promqlNames(%q) = %q, %q, want %q, %q", tt.expr, names, labels, tt.names, tt.labels)
		}
	}
}

// TestDashboardInReadme: the README's metrics section points to the file.
func TestDashboardInReadme(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "deploy/grafana-dashboard.json") {
		t.Error("README.md does not mention deploy/grafana-dashboard.json")
	}
}
