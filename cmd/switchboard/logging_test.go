package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLogDurations: with LOG_FORMAT=json, durations come out as "1.5s", not
// integer nanoseconds, wherever they sit; other values keep their JSON type;
// the text format is unchanged.
func TestLogDurations(t *testing.T) {
	tests := []struct {
		name string
		log  func(l *slog.Logger)
		path []string // keys from the record's top level down to the value
		want any      // as encoding/json decodes it
	}{
		{"duration", func(l *slog.Logger) { l.Info("m", "drain_timeout", 25*time.Second) }, []string{"drain_timeout"}, "25s"},
		{"fraction", func(l *slog.Logger) { l.Info("m", "d", 1500*time.Millisecond) }, []string{"d"}, "1.5s"},
		{"sub-millisecond", func(l *slog.Logger) { l.Info("m", "d", 1500*time.Microsecond) }, []string{"d"}, "1.5ms"},
		{"zero", func(l *slog.Logger) { l.Info("m", "d", time.Duration(0)) }, []string{"d"}, "0s"},
		{"negative", func(l *slog.Logger) { l.Info("m", "d", -2*time.Minute) }, []string{"d"}, "-2m0s"},
		{"slog.Duration", func(l *slog.Logger) { l.Info("m", slog.Duration("d", time.Hour)) }, []string{"d"}, "1h0m0s"},
		{"in a group", func(l *slog.Logger) { l.Info("m", slog.Group("g", "d", 20*time.Second)) }, []string{"g", "d"}, "20s"},
		{"in With", func(l *slog.Logger) { l.With("d", 3*time.Second).Info("m") }, []string{"d"}, "3s"},
		{"in WithGroup", func(l *slog.Logger) { l.WithGroup("g").Info("m", "d", time.Second) }, []string{"g", "d"}, "1s"},
		{"LogValuer", func(l *slog.Logger) { l.Info("m", "d", durationValuer(4*time.Second)) }, []string{"d"}, "4s"},
		{"int stays a number", func(l *slog.Logger) { l.Info("m", "n", int64(25000000000)) }, []string{"n"}, float64(25000000000)},
		{"string stays", func(l *slog.Logger) { l.Info("m", "s", "25s") }, []string{"s"}, "25s"},
		{"time stays RFC 3339", func(l *slog.Logger) {
			l.Info("m", "t", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		}, []string{"t"}, "2026-01-02T03:04:05Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(newLogger(Config{LogFormat: "json", LogLevel: slog.LevelInfo}, &buf))
			var rec map[string]any
			if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
				t.Fatalf("log line %q is not JSON: %v", buf.String(), err)
			}
			var got any = rec
			for _, k := range tt.path {
				m, ok := got.(map[string]any)
				if !ok {
					t.Fatalf("log line %q: no object at %q", buf.String(), k)
				}
				got = m[k]
			}
			if got != tt.want {
				t.Errorf("%s in %q = %#v, want %#v", strings.Join(tt.path, "."), buf.String(), got, tt.want)
			}
			if rec["msg"] != "m" || rec["level"] != "INFO" {
				t.Errorf("log line %q lost its msg or level", buf.String())
			}
		})
	}
}

type durationValuer time.Duration

func (d durationValuer) LogValue() slog.Value { return slog.DurationValue(time.Duration(d)) }

// TestLogTextFormat: the text format already prints durations as strings and
// is left as it was.
func TestLogTextFormat(t *testing.T) {
	var buf bytes.Buffer
	newLogger(Config{LogFormat: "text", LogLevel: slog.LevelInfo}, &buf).Info("stopping", "drain_timeout", 25*time.Second, "n", 3)
	if got := buf.String(); !strings.Contains(got, " msg=stopping drain_timeout=25s n=3\n") {
		t.Errorf("text log line = %q, want ... msg=stopping drain_timeout=25s n=3", got)
	}
}

// TestJSONLogOptionsChain: a ReplaceAttr already set still runs, before the
// duration rewrite, and the caller's options are not modified.
func TestJSONLogOptionsChain(t *testing.T) {
	var calls int
	opts := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		calls++
		if a.Key == "secret" {
			return slog.String("secret", "REDACTED")
		}
		return a
	}}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, jsonLogOptions(opts))).Info("m", "secret", "x", "d", time.Second)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["secret"] != "REDACTED" || rec["d"] != "1s" || calls == 0 {
		t.Errorf("log line %q (earlier ReplaceAttr called %d times), want secret REDACTED and d 1s", buf.String(), calls)
	}
	// The caller's function is still its own, without the rewrite.
	if a := opts.ReplaceAttr(nil, slog.Duration("d", time.Second)); a.Value.Kind() != slog.KindDuration {
		t.Errorf("caller's ReplaceAttr now rewrites durations: %v", a)
	}
}
