package main

import "log/slog"

// jsonLogOptions returns opts for the JSON handler with time.Duration values
// written as Go duration strings ("1.5s", "25s"), as the text handler does.
// slog's JSON handler writes them as integer nanoseconds (25000000000),
// which nobody reads at a glance and log tools do not know to be a duration.
// A ReplaceAttr already in opts runs first.
func jsonLogOptions(opts *slog.HandlerOptions) *slog.HandlerOptions {
	o := *opts
	prev := o.ReplaceAttr
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if prev != nil {
			a = prev(groups, a)
		}
		// The handler resolves LogValuers before calling ReplaceAttr, and
		// slog.Any(d) with a time.Duration is already KindDuration.
		if a.Value.Kind() == slog.KindDuration {
			a.Value = slog.StringValue(a.Value.Duration().String())
		}
		return a
	}
	return &o
}
