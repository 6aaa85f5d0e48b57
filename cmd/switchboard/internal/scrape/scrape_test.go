package scrape

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
