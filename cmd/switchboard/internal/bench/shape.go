package bench

import (
	"fmt"
	"strings"

	"github.com/switchboard-rtc/switchboard/relay/loadgen"
)

// Shape is a named TURN load: the traffic one kind of deployment puts on
// a relay. Duration, Warmup, MaxPackets and Window always come from the
// flags; a fixed shape sets everything else.
type Shape struct {
	Name string
	// About says what the shape models, printed above its runs.
	About string
	// Fixed: the shape sets allocations, peers, payload sizes, rate and
	// echo itself, so those flags must not be given with it.
	Fixed bool
	apply func(*loadgen.Config)
}

// ShapeNames is what --shape accepts.
const ShapeNames = "default|many-slow|video|all"

// The presets. many-slow is the deployment shape: many calls,
// each a slow audio-and-video flow (150 packets/s per allocation each
// way), sizes spread over the whole range. video is 1,000 allocations at
// 30 packets/s of 900-1200 B (mean 1,050 B, about 250 kbit/s each way: a
// low simulcast layer or a 360p stream at one packet per frame of 30 fps),
// also 30,000 packets/s offered, so the two differ in flow count and
// packet size, not in rate. 1,000 allocations stay under loadgen's limit
// of 1,024 and under each server's relay port range (2,000 ports, see
// startCoturn and relayPorts) and per-user quota (every allocation is its
// own REST user); open-file limits are checked before the shape runs
// (fitLimits).
var shapePresets = []Shape{
	{
		Name:  "default",
		About: "the load the flags give; with the defaults the closed loop, whose pkts/s is the saturation throughput",
		apply: func(*loadgen.Config) {},
	},
	{
		Name:  "many-slow",
		About: "many slow flows: 200 allocations, 8 peers, 30,000 packets/s offered (150 per allocation), 60-1200 B",
		Fixed: true,
		apply: func(c *loadgen.Config) {
			c.Allocations, c.Peers, c.Rate, c.PayloadSize, c.PayloadMax, c.SinkOnly = 200, 8, 30_000, 60, 1200, false
		},
	},
	{
		Name:  "video",
		About: "1,000 allocations at video rates: 30 packets/s of 900-1200 B each (~250 kbit/s), 8 peers, 30,000 packets/s offered",
		Fixed: true,
		apply: func(c *loadgen.Config) {
			c.Allocations, c.Peers, c.Rate, c.PayloadSize, c.PayloadMax, c.SinkOnly = 1000, 8, 30_000, 900, 1200, false
		},
	},
}

// ParseShape returns the shapes --shape names, in run order.
func ParseShape(name string) ([]Shape, error) {
	if name == "all" {
		return shapePresets, nil
	}
	for _, s := range shapePresets {
		if s.Name == name {
			return []Shape{s}, nil
		}
	}
	return nil, fmt.Errorf("--shape %q: want %s", name, ShapeNames)
}

// Load is base with the shape applied.
func (s Shape) Load(base loadgen.Config) loadgen.Config {
	if s.apply != nil {
		s.apply(&base)
	}
	return base
}

// closedLoop reports whether the load is the closed loop, whose pkts/s is
// the most the server sustains: its saturation throughput.
func closedLoop(c loadgen.Config) bool { return c.Rate == 0 }

// shapeLabel names a shape in the summary; "*" marks the closed loop.
func shapeLabel(s Shape, load loadgen.Config) string {
	if closedLoop(load) {
		return s.Name + "*"
	}
	return s.Name
}

// fdMargin is the descriptors a process needs besides one per allocation:
// listeners, epoll, timers, logs, the runtime's own. 256 leaves room for
// coturn's per-thread listeners on many cores.
const fdMargin = 256

// fitLimits checks that load fits this process's open-file limit and each
// server's (PIDs; 0 is skipped) and relay port range, before anything is
// started: a run that runs out of descriptors half-way fails in a way
// that reads like a slow server.
func fitLimits(load loadgen.Config, self uint64, servers []*turnServer) error {
	need := uint64(load.Allocations + load.Peers + fdMargin)
	var errs []string
	if self != 0 && self < need {
		errs = append(errs, fmt.Sprintf("this process may open %d files, the load needs %d (ulimit -n)", self, need))
	}
	for _, s := range servers {
		if s.fdLimit != 0 && s.fdLimit < uint64(load.Allocations+fdMargin) {
			errs = append(errs, fmt.Sprintf("%s may open %d files, %d allocations need %d (ulimit -n before starting the benchmark)",
				s.Name, s.fdLimit, load.Allocations, load.Allocations+fdMargin))
		}
		if s.relayPorts != 0 && s.relayPorts < load.Allocations {
			errs = append(errs, fmt.Sprintf("%s has %d relay ports for %d allocations", s.Name, s.relayPorts, load.Allocations))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d allocations do not fit: %s", load.Allocations, strings.Join(errs, "; "))
	}
	return nil
}
