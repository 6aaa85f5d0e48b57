// Package scrape reads a Prometheus text exposition into plain values.
package scrape

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Get fetches the /metrics page at url (no proxy: the servers scraped are
// on loopback or in the caller's own network namespace) and returns Parse
// of its body.
func Get(ctx context.Context, url string, keep func(name string) bool) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	m, err := Parse(resp.Body, keep)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return m, nil
}

// Parse reads the counters, gauges and untyped samples of the families
// whose name keep accepts (nil: all) from a text exposition, keyed
// `name` or `name{k1=v1,k2=v2}` with the labels sorted by name. Histograms
// and summaries are left out: no caller needs them.
func Parse(r io.Reader, keep func(name string) bool) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, f := range fams {
		if keep != nil && !keep(name) {
			continue
		}
		for _, m := range f.GetMetric() {
			var v float64
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Untyped != nil:
				v = m.GetUntyped().GetValue()
			default:
				continue
			}
			out[Key(name, m.GetLabel())] = v
		}
	}
	return out, nil
}

// label is the part of a Prometheus label pair Key needs.
type label interface {
	GetName() string
	GetValue() string
}

// Key renders a sample's name and labels as `name{k1=v1,k2=v2}`, labels
// sorted by name, or just `name` without labels.
func Key[L label](name string, labels []L) string {
	if len(labels) == 0 {
		return name
	}
	kv := make([]string, len(labels))
	for i, l := range labels {
		kv[i] = l.GetName() + "=" + l.GetValue()
	}
	slices.Sort(kv)
	return name + "{" + strings.Join(kv, ",") + "}"
}
