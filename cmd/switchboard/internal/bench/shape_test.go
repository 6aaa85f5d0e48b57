package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/proc"
	"github.com/switchboard-rtc/switchboard/relay/loadgen"
)

func TestParseShape(t *testing.T) {
	base := loadgen.Config{Allocations: 16, Window: 32, PayloadSize: 100, Duration: 2 * time.Second, MaxPackets: 1000}
	tests := []struct {
		name  string
		shape string
		want  []loadgen.Config
	}{
		{"default keeps the flags", "default", []loadgen.Config{base}},
		{"many slow flows", "many-slow", []loadgen.Config{
			{Allocations: 200, Peers: 8, Rate: 30_000, PayloadSize: 60, PayloadMax: 1200, Window: 32, Duration: 2 * time.Second, MaxPackets: 1000},
		}},
		{"video", "video", []loadgen.Config{
			{Allocations: 1000, Peers: 8, Rate: 30_000, PayloadSize: 900, PayloadMax: 1200, Window: 32, Duration: 2 * time.Second, MaxPackets: 1000},
		}},
		{"all, in order", "all", []loadgen.Config{
			base,
			{Allocations: 200, Peers: 8, Rate: 30_000, PayloadSize: 60, PayloadMax: 1200, Window: 32, Duration: 2 * time.Second, MaxPackets: 1000},
			{Allocations: 1000, Peers: 8, Rate: 30_000, PayloadSize: 900, PayloadMax: 1200, Window: 32, Duration: 2 * time.Second, MaxPackets: 1000},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shapes, err := ParseShape(tt.shape)
			if err != nil {
				t.Fatal(err)
			}
			if len(shapes) != len(tt.want) {
				t.Fatalf("ParseShape(%q) = %d shapes, want %d", tt.shape, len(shapes), len(tt.want))
			}
			for i, sh := range shapes {
				got := sh.Load(base)
				// Config holds a func (Meter) and a pointer (Logger): compare the load fields.
				if got.Allocations != tt.want[i].Allocations || got.Peers != tt.want[i].Peers || got.Rate != tt.want[i].Rate ||
					got.PayloadSize != tt.want[i].PayloadSize || got.PayloadMax != tt.want[i].PayloadMax || got.Window != tt.want[i].Window ||
					got.Duration != tt.want[i].Duration || got.MaxPackets != tt.want[i].MaxPackets || got.SinkOnly {
					t.Errorf("shape %s Load = %+v, want %+v", sh.Name, got, tt.want[i])
				}
				if sh.Fixed != (sh.Name != "default") {
					t.Errorf("shape %s Fixed = %v", sh.Name, sh.Fixed)
				}
				// Every preset fits loadgen's limits and the relay port ranges.
				if got.Allocations > 1024 || got.Allocations > relayPorts[0].max-relayPorts[0].min+1 {
					t.Errorf("shape %s: %d allocations exceed loadgen's 1024 or the relay ports", sh.Name, got.Allocations)
				}
			}
		})
	}
	if _, err := ParseShape("huge"); err == nil || !strings.Contains(err.Error(), ShapeNames) {
		t.Errorf("ParseShape(huge) = %v, want an error naming %s", err, ShapeNames)
	}
	// The presets are never changed by Load.
	shapes, _ := ParseShape("video")
	_ = shapes[0].Load(base)
	if base.Allocations != 16 {
		t.Error("Load changed its argument")
	}
}

func TestFitLimits(t *testing.T) {
	video := shapePresets[2].Load(loadgen.Config{})
	srv := func(fd uint64, ports int) *turnServer {
		return &turnServer{Process: &proc.Process{Name: "coturn"}, fdLimit: fd, relayPorts: ports}
	}
	tests := []struct {
		name    string
		self    uint64
		servers []*turnServer
		want    string // "" fits
	}{
		{"fits", 20000, []*turnServer{srv(20000, 2000), srv(0, 2000)}, ""},
		{"unknown limits are not checked", 0, []*turnServer{srv(0, 0)}, ""},
		{"generator short", 1024, nil, "this process may open 1024 files, the load needs 1264"},
		{"server short", 20000, []*turnServer{srv(1024, 2000)}, "coturn may open 1024 files, 1000 allocations need 1256"},
		{"ports short", 20000, []*turnServer{srv(20000, 500)}, "coturn has 500 relay ports for 1000 allocations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fitLimits(video, tt.self, tt.servers)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("fitLimits = %v, want %q", err, tt.want)
			}
		})
	}
}
