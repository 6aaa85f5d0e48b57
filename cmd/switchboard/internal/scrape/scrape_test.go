package scrape

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
)

func TestGet(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_x_total", Help: "x"}, []string{"reason", "kind"})
	c.WithLabelValues("slow", "ws").Add(3)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchboard_sessions", Help: "s"})
	g.Set(7)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "switchboard_h", Help: "h"})
	h.Observe(1)
	o := prometheus.NewGauge(prometheus.GaugeOpts{Name: "other", Help: "o"})
	reg.MustRegister(c, g, h, o)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	got, err := Get(t.Context(), srv.URL, func(n string) bool { return strings.HasPrefix(n, "switchboard_") })
	want := map[string]float64{"switchboard_x_total{kind=ws,reason=slow}": 3, "switchboard_sessions": 7}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("Get = %v, %v; want %v", got, err, want)
	}
}

func TestGetErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.Write([]byte("not a metric line {\n"))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	for _, path := range []string{"/missing", "/bad"} {
		if m, err := Get(t.Context(), srv.URL+path, nil); err == nil {
			t.Errorf("Get(%s) = %v, nil; want an error", path, m)
		}
	}
	if _, err := Get(t.Context(), "http://127.0.0.1:1/metrics", nil); err == nil {
		t.Error("Get(closed port) = nil error")
	}
}

func TestParseUntyped(t *testing.T) {
	got, err := Parse(strings.NewReader("a 1\nb{z=\"1\",a=\"2\"} 2\n"), nil)
	want := map[string]float64{"a": 1, "b{a=2,z=1}": 2}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("Parse = %v, %v; want %v", got, err, want)
	}
}

// FuzzParse: any input parses or errors without panicking, and a counter
// written in the text format reads back under its key.
func FuzzParse(f *testing.F) {
	f.Add([]byte("# TYPE a counter\na_total 1\n"), "reason", "slow", 3.5)
	f.Add([]byte("b{x=\"1\"} NaN\n"), "k", "", 0.0)
	f.Fuzz(func(t *testing.T, raw []byte, label, value string, v float64) {
		_, _ = Parse(bytes.NewReader(raw), nil)
		if !model.LabelName(label).IsValidLegacy() || strings.HasPrefix(label, "__") || !utf8.ValidString(value) || math.IsNaN(v) {
			return
		}
		// The text format escapes only backslash, double quote and newline.
		esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(value)
		in := fmt.Sprintf("# TYPE switchboard_x_total counter\nswitchboard_x_total{%s=\"%s\"} %v\n", label, esc, v)
		got, err := Parse(strings.NewReader(in), nil)
		key := "switchboard_x_total{" + label + "=" + value + "}"
		if err != nil || got[key] != v {
			t.Errorf("Parse(%q) = %v, %v; want %s = %v", in, got, err, key, v)
		}
	})
}
