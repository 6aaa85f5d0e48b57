package proc

import (
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"plain", "1234 (turnserver) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0", 3 * time.Second, false},
		{"comm with spaces and parens", "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 0 0", 100 * time.Millisecond, false},
		{"no parens", "1234 turnserver S 1", 0, true},
		{"too short", "1 (x) S 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 1 0", 0, true},
		{"negative", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 -5 1 0", 0, true},
		{"overflow", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 9223372036854775807 1 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseProcStat(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseCPUTimes(t *testing.T) {
	const tick = time.Second / userHZ
	tests := []struct {
		name, stat string
		want       CPUTimes
	}{
		{
			name: "two cpus, guest fields",
			stat: "cpu  100 5 50 1000 20 3 7 2 9 0\ncpu0 50 2 25 500 10 1 3 0 4 0\ncpu1 50 3 25 500 10 2 4 0 5 0\nintr 1 2\n",
			want: CPUTimes{User: 100 * tick, Nice: 5 * tick, System: 50 * tick, Idle: 1000 * tick, IOWait: 20 * tick,
				IRQ: 3 * tick, SoftIRQ: 7 * tick, Steal: 2 * tick, CPUs: 2},
		},
		{
			name: "old kernel without steal, no per-cpu lines",
			stat: "cpu 1 2 3 4 5 6 7\n",
			want: CPUTimes{User: tick, Nice: 2 * tick, System: 3 * tick, Idle: 4 * tick, IOWait: 5 * tick, IRQ: 6 * tick, SoftIRQ: 7 * tick, CPUs: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPUTimes([]byte(tt.stat))
			if err != nil || got != tt.want {
				t.Errorf("parseCPUTimes(%q) = %+v, %v; want %+v", tt.stat, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "intr 1\n", "cpu 1 2 3\n", "cpu 1 2 3 x 5 6 7\n", "cpu 1 2 3 4 5 6 7\ncpu 1 2 3 4 5 6 7\n",
		"cpu 1 2 3 4 5 6 -7\n", "cpu 92233720368547758 1 1 1 1 1 1\n", "cpu 92233720368547757 92233720368547757 1 1 1 1 1\n"} {
		if c, err := parseCPUTimes([]byte(bad)); err == nil {
			t.Errorf("parseCPUTimes(%q) = %+v, want error", bad, c)
		}
	}
}

// TestCPUTimesDelta is the machine-wide accounting of a bench run: two
// /proc/stat readings, the busy time between them with softirq in and
// idle, iowait and steal out, and counters that went backwards read as 0.
func TestCPUTimesDelta(t *testing.T) {
	const tick = time.Second / userHZ
	tests := []struct {
		name            string
		before, after   string
		busy, softirq   time.Duration
		idle, steal, io time.Duration
	}{
		{
			name:   "server and generator busy, fast path in softirq",
			before: "cpu  1000 10 500 9000 30 5 200 7 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0 0 0\n",
			after:  "cpu  1120 10 580 9100 31 6 260 9 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0 0 0\n",
			// 120 user + 0 nice + 80 system + 1 irq + 60 softirq
			busy: 261 * tick, softirq: 60 * tick, idle: 100 * tick, steal: 2 * tick, io: tick,
		},
		{
			name:   "iowait went backwards",
			before: "cpu 10 0 10 100 50 0 0 0\n",
			after:  "cpu 20 0 10 150 40 0 0 0\n",
			busy:   10 * tick, idle: 50 * tick,
		},
		{
			name:   "nothing happened",
			before: "cpu 10 0 10 100 50 0 0 0\n",
			after:  "cpu 10 0 10 100 50 0 0 0\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := parseCPUTimes([]byte(tt.before))
			if err != nil {
				t.Fatal(err)
			}
			a, err := parseCPUTimes([]byte(tt.after))
			if err != nil {
				t.Fatal(err)
			}
			d := a.Sub(b)
			if d.Busy() != tt.busy || d.SoftIRQ != tt.softirq || d.Idle != tt.idle || d.Steal != tt.steal || d.IOWait != tt.io {
				t.Errorf("delta = %+v (busy %v); want busy %v softirq %v idle %v steal %v iowait %v",
					d, d.Busy(), tt.busy, tt.softirq, tt.idle, tt.steal, tt.io)
			}
			if d.CPUs != a.CPUs {
				t.Errorf("delta CPUs = %d, want %d", d.CPUs, a.CPUs)
			}
		})
	}
}

// FuzzParseCPUTimes: any input parses or errors without panicking, a
// parsed reading is never negative, and a cpu line written from tick
// counts reads back to them; a reading minus itself is all zero.
func FuzzParseCPUTimes(f *testing.F) {
	f.Add([]byte("cpu  100 5 50 1000 20 3 7 0 9 0\ncpu0 50 2 25 500 10 1 3 0 4 0\n"), uint32(1), uint32(2), uint32(3), uint32(4))
	f.Add([]byte("cpu 1 2 3\n"), uint32(0), uint32(0), uint32(0), uint32(0))
	f.Fuzz(func(t *testing.T, raw []byte, user, system, softirq, idle uint32) {
		if c, err := parseCPUTimes(raw); err == nil {
			if c.Busy() < 0 || c.CPUs < 1 || c.Idle < 0 || c.Steal < 0 {
				t.Errorf("parseCPUTimes(%q) = %+v, negative or no CPUs", raw, c)
			}
			if z := c.Sub(c); z.Busy() != 0 || z.Idle != 0 || z.IOWait != 0 || z.Steal != 0 {
				t.Errorf("%+v.Sub(itself) = %+v, want zero", c, z)
			}
		}
		line := fmt.Sprintf("cpu  %d 0 %d %d 0 0 %d 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n", user, system, idle, softirq)
		c, err := parseCPUTimes([]byte(line))
		tick := time.Second / userHZ
		want := (time.Duration(user) + time.Duration(system) + time.Duration(softirq)) * tick
		if err != nil || c.Busy() != want || c.SoftIRQ != time.Duration(softirq)*tick || c.Idle != time.Duration(idle)*tick || c.CPUs != 1 {
			t.Errorf("parseCPUTimes(%q) = %+v (busy %v), %v; want busy %v", line, c, c.Busy(), err, want)
		}
	})
}

func TestParseSNMP(t *testing.T) {
	const snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 2 3 9 42 0\n"
	tests := []struct {
		name, in, proto, field string
		want                   uint64
		wantErr                bool
	}{
		{"found", snmp, "Udp", "RcvbufErrors", 42, false},
		{"first field", snmp, "Ip", "Forwarding", 1, false},
		{"missing field", snmp, "Udp", "Nope", 0, true},
		{"missing proto", snmp, "Tcp", "RcvbufErrors", 0, true},
		{"header only", "Udp: RcvbufErrors\n", "Udp", "RcvbufErrors", 0, true},
		{"length mismatch", "Udp: A RcvbufErrors\nUdp: 1\n", "Udp", "RcvbufErrors", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSNMP([]byte(tt.in), tt.proto, tt.field)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseSNMP(%s %s) = %d, %v; want %d, error %v", tt.proto, tt.field, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseSoftnet(t *testing.T) {
	tests := []struct {
		name, in string
		want     uint64
		wantErr  bool
	}{
		{"two cpus", "01e46d43 0000112d 00000002 00000000\n01c47371 00000103 00000002 00000000\n", 0x112d + 0x103, false},
		{"empty", "", 0, false},
		{"one field", "01e46d43\n", 0, true},
		{"not hex", "01e46d43 zz 0\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSoftnet([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseSoftnet(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseUDPDrops(t *testing.T) {
	const udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n" +
		"  494: 0100007F:AAA7 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2907595 2 000000003e2d04d6 7\n" +
		"  495: 0100007F:AAA8 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2907596 2 000000009615784a 5\n" +
		"  496: 0100007F:AAA9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2907597 2 000000009615784b 100\n"
	tests := []struct {
		name    string
		in      string
		inodes  map[uint64]bool
		want    map[uint64]uint64
		wantErr bool
	}{
		{"two of three", udp, map[uint64]bool{2907595: true, 2907596: true}, map[uint64]uint64{2907595: 7, 2907596: 5}, false},
		{"none", udp, map[uint64]bool{1: true}, map[uint64]uint64{}, false},
		{"header only", "sl local_address\n", map[uint64]bool{1: true}, map[uint64]uint64{}, false},
		{"short row", "header\n  1: 0100007F:AAA7 x\n", nil, nil, true},
		{"bad drops", "header\n  1: a b c d e f g h 42 j k x\n", map[uint64]bool{42: true}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[uint64]uint64{}
			err := parseUDPDrops([]byte(tt.in), tt.inodes, got)
			if (err != nil) != tt.wantErr || (!tt.wantErr && !maps.Equal(got, tt.want)) {
				t.Errorf("parseUDPDrops = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestDropsSince(t *testing.T) {
	before := map[uint64]uint64{1: 10, 2: 5, 3: 100}
	after := map[uint64]uint64{1: 12, 2: 5, 4: 7} // 3 closed, 4 opened
	if got, want := DropsSince(before, after), uint64(2+7); got != want {
		t.Errorf("DropsSince(%v, %v) = %d, want %d", before, after, got, want)
	}
}

// TestLiveProc reads this machine's real files, so a format change in
// /proc shows up here rather than as a silently wrong benchmark.
func TestLiveProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if _, err := ProcessCPU(os.Getpid()); err != nil {
		t.Error(err)
	}
	if _, n, err := MachineBusy(); err != nil || n < 1 {
		t.Errorf("MachineBusy: %d CPUs, %v", n, err)
	}
	if _, err := UDPRcvbufErrors(); err != nil {
		t.Error(err)
	}
	if _, err := BacklogDrops(); err != nil {
		t.Error(err)
	}
	if _, err := SocketDrops(os.Getpid()); err != nil {
		t.Error(err)
	}
	if _, err := SelfCPU(); err != nil {
		t.Error(err)
	}
	if _, err := FDLimit(); err != nil {
		t.Error(err)
	}
	if got := LoadAvg(); len(strings.Fields(got)) != 3 {
		t.Errorf("LoadAvg() = %q, want three figures", got)
	}
	if got := Nice(); got == "?" {
		t.Errorf("Nice() = %q, want a number", got)
	}
	// However loaded the machine, its CPUs are at most 100% busy, and
	// /proc/stat's 10ms ticks add at most one tick per CPU to a 500ms
	// sample (2%): a limit of 2 is met by the first sample. (A limit of 1
	// is not, on a busy machine, and what WaitIdle sees there is tested
	// without a real machine in TestWaitIdleRealElapsed.)
	if ok, err := WaitIdle(t.Context(), 2, time.Minute); !ok || err != nil {
		t.Errorf("WaitIdle(2) = %v, %v; want true, nil", ok, err)
	}
}

// FuzzParseProcStat: any input parses or errors without panicking, and a
// stat line built from a command name and tick counts parses back to them.
func FuzzParseProcStat(f *testing.F) {
	f.Add("turnserver", uint32(250), uint32(50), []byte("1 (x) S 1 1 1 0 -1 0 0 0 0 0 1 2 0"))
	f.Add("a) b (c", uint32(0), uint32(1), []byte(")))"))
	f.Fuzz(func(t *testing.T, comm string, utime, stime uint32, raw []byte) {
		if d, err := parseProcStat(raw); err == nil && d < 0 {
			t.Errorf("parseProcStat(%q) = %v, negative", raw, d)
		}
		if strings.ContainsAny(comm, "\n") {
			return // the kernel's comm never holds a newline
		}
		line := fmt.Sprintf("42 (%s) S 1 42 42 0 -1 4194560 0 0 0 0 %d %d 0 0 20 0 1 0 1 0 0", comm, utime, stime)
		got, err := parseProcStat([]byte(line))
		want := time.Duration(uint64(utime)+uint64(stime)) * (time.Second / userHZ)
		if err != nil || got != want {
			t.Errorf("parseProcStat(%q) = %v, %v; want %v", line, got, err, want)
		}
	})
}

// FuzzParseSNMP: any input parses or errors without panicking, and a
// counter written in the two-line format reads back.
func FuzzParseSNMP(f *testing.F) {
	f.Add([]byte("Udp: InDatagrams RcvbufErrors\nUdp: 1 2\n"), uint64(7))
	f.Add([]byte("Udp:\nUdp:\n"), uint64(0))
	f.Fuzz(func(t *testing.T, raw []byte, v uint64) {
		_, _ = parseSNMP(raw, "Udp", "RcvbufErrors")
		_, _ = parseCPUTimes(raw)
		_, _ = parseSoftnet(raw)
		_ = parseUDPDrops(raw, map[uint64]bool{0: true, 1: true}, map[uint64]uint64{})
		in := fmt.Sprintf("Ip: A\nIp: 1\nUdp: InDatagrams RcvbufErrors\nUdp: 5 %d\n", v)
		if got, err := parseSNMP([]byte(in), "Udp", "RcvbufErrors"); err != nil || got != v {
			t.Errorf("parseSNMP(%q) = %d, %v; want %d", in, got, err, v)
		}
	})
}

func TestParseOpenFileLimit(t *testing.T) {
	tests := []struct {
		name, limits string
		want         uint64
		wantErr      bool
	}{
		{"real", "Limit                     Soft Limit           Hard Limit           Units     \nMax processes             96368                96368                processes \nMax open files            1024                 524288               files     \n", 1024, false},
		{"unlimited", "Max open files            unlimited            unlimited            files\n", 0, false},
		{"missing", "Max processes 1 1 processes\n", 0, true},
		{"no hard limit", "Max open files 1024\n", 0, true},
		{"garbage", "Max open files lots many files\n", 0, true},
		{"zero", "Max open files 0 0 files\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseOpenFileLimit([]byte(tt.limits))
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("parseOpenFileLimit(%q) = %d, %v; want %d, error %v", tt.limits, got, err, tt.want, tt.wantErr)
			}
		})
	}
	if n, err := OpenFileLimit(os.Getpid()); err != nil {
		t.Errorf("OpenFileLimit(self) = %d, %v", n, err)
	}
}

// FuzzParseOpenFileLimit: any input parses or errors without panicking,
// and a limits line written from a number reads back.
func FuzzParseOpenFileLimit(f *testing.F) {
	f.Add([]byte("Max open files            1024                 524288               files\n"), uint64(1024))
	f.Add([]byte("Max open files\n"), uint64(1))
	f.Fuzz(func(t *testing.T, raw []byte, n uint64) {
		_, _ = parseOpenFileLimit(raw)
		if n == 0 {
			return
		}
		line := fmt.Sprintf("Limit Soft Limit Hard Limit Units\nMax open files %d %d files\n", n, n)
		if got, err := parseOpenFileLimit([]byte(line)); err != nil || got != n {
			t.Errorf("parseOpenFileLimit(%q) = %d, %v; want %d", line, got, err, n)
		}
	})
}
