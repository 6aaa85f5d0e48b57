package signaling

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestMain doubles as the server process of BenchmarkIdleSessions, so that the
// benchmark measures the hub's RSS without the clients' memory mixed in. Tests
// run twice: with the local router and with the asynchronous test router.
func TestMain(m *testing.M) {
	if os.Getenv("SIGNALING_BENCH_SERVER") == "1" {
		os.Exit(benchServer())
	}
	os.Exit(runBothRouters(m))
}

// benchServer runs a hub on 127.0.0.1:0, prints its address and serves until
// stdin closes (or gets a line other than a command). Environment:
//
//	SIGNALING_BENCH_PING        PingInterval (Go duration)
//	SIGNALING_BENCH_SECRET      AuthSecret (lets `switchboard bench signaling --url
//	                            ... --pid ... --auth-secret ...` drive this server)
//	SIGNALING_BENCH_CPUPROFILE  write a CPU profile here until exit
//	SIGNALING_BENCH_PROFILE     on "mem": write a heap profile here
//	SIGNALING_BENCH_STACKS      on "stacks": write a goroutine profile here
//
// Commands on stdin: "mem" prints hub stats and memory before/after GC to stderr
// and answers "ok" on stdout; "stacks" writes the goroutine profile.
func benchServer() int {
	pi, _ := time.ParseDuration(os.Getenv("SIGNALING_BENCH_PING"))
	if os.Getenv("SIGNALING_BENCH_PROFILE") != "" {
		runtime.MemProfileRate = 64
	}
	h, err := New(Config{ICE: &fakeICE{}, MaxSessions: 20000, PingInterval: pi,
		CredentialRate: 1e9, CredentialBurst: 1e6, MaxRoomSize: 20000,
		AuthSecret: []byte(os.Getenv("SIGNALING_BENCH_SECRET"))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	if p := os.Getenv("SIGNALING_BENCH_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	fmt.Println(ln.Addr())
	in := bufio.NewReader(os.Stdin)
	for {
		line, err := in.ReadString('\n')
		if p := os.Getenv("SIGNALING_BENCH_STACKS"); err == nil && line == "stacks\n" && p != "" {
			f, _ := os.Create(p)
			_ = pprof.Lookup("goroutine").WriteTo(f, 1)
			f.Close()
			continue
		}
		if err != nil || line != "mem\n" {
			break
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "hub: %+v\n", h.Stats())
		fmt.Fprintf(os.Stderr, "before GC: heapInuse=%d stackInuse=%d sys=%d goroutines=%d\n", ms.HeapInuse>>10, ms.StackInuse>>10, ms.Sys>>10, runtime.NumGoroutine())
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "after GC: heapInuse=%d KiB heapAlloc=%d stackInuse=%d KiB sys=%d goroutines=%d\n", ms.HeapInuse>>10, ms.HeapAlloc>>10, ms.StackInuse>>10, ms.Sys>>10, runtime.NumGoroutine())
		if os.Getenv("SIGNALING_BENCH_PROFILE") != "" {
			f, _ := os.Create(os.Getenv("SIGNALING_BENCH_PROFILE"))
			pprof.WriteHeapProfile(f)
			f.Close()
		}
		fmt.Println("ok")
	}
	srv.Close()
	h.Close()
	if os.Getenv("SIGNALING_BENCH_CPUPROFILE") != "" {
		pprof.StopCPUProfile()
	}
	return 0
}

func rssOf(b testing.TB, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkIdleSessions opens SIGNALING_BENCH_N (default 2000) idle sessions to a
// hub in a child process (4 per room), with keepalive pings every
// SIGNALING_BENCH_PINGEVERY (default 5 s), waits SIGNALING_BENCH_IDLE (default
// 7 s) and reports the child's RSS growth per session. SIGNALING_BENCH_MEM=1 also
// logs Go memory statistics. Example:
//
//	SIGNALING_BENCH_N=10000 go test -run '^$' -bench IdleSessions -benchtime 1x ./signaling/
func BenchmarkIdleSessions(b *testing.B) {
	n := 2000
	if s := os.Getenv("SIGNALING_BENCH_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SIGNALING_BENCH_SERVER=1", "SIGNALING_BENCH_PING="+benchPing())
		stdin, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		outR := bufio.NewReader(out)
		addr, err := outR.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		url := "ws://" + strings.TrimSpace(addr) + "/"
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var conns []*websocket.Conn
		dialOne := func(i int) {
			c, _, err := websocket.Dial(ctx, url, nil)
			if err != nil {
				b.Fatalf("dial %d: %v", i, err)
			}
			room := fmt.Sprintf("r%d", i/4)
			if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","name":"idle","room":"`+room+`"}`)); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
			wg.Go(func() { // reads (answers pings) until the end
				for {
					if _, _, err := c.Read(ctx); err != nil {
						return
					}
				}
			})
		}
		for i := range 100 {
			dialOne(i)
		}
		time.Sleep(2 * time.Second)
		before := rssOf(b, cmd.Process.Pid)
		for i := 100; i < n; i++ {
			dialOne(i)
		}
		idle := 7 * time.Second // every session pinged at least once while idle
		if d, err := time.ParseDuration(os.Getenv("SIGNALING_BENCH_IDLE")); err == nil {
			idle = d
		}
		time.Sleep(idle)
		after := rssOf(b, cmd.Process.Pid)
		if os.Getenv("SIGNALING_BENCH_MEM") != "" {
			fmt.Fprintln(stdin, "mem")
			_, _ = outR.ReadString('\n')
			b.Logf("RSS after GC: %d KiB", rssOf(b, cmd.Process.Pid)>>10)
		}
		per := float64(after-before) / float64(n-100)
		b.ReportMetric(per, "rss-bytes/session")
		b.ReportMetric(float64(after)/float64(n), "total-rss-bytes/session")
		b.Logf("%d sessions: RSS %d KiB -> %d KiB, %.0f B/session", n, before>>10, after>>10, per)
		for _, c := range conns {
			c.CloseNow()
		}
		cancel()
		wg.Wait()
		stdin.Close()
		_ = cmd.Wait()
	}
}

// BenchmarkRelay measures in-process relay latency between pairs of sessions.
func BenchmarkRelay(b *testing.B) {
	ts := newServer(b, Config{MessageRate: 1e9, MessageBurst: 1e9, MaxRoomSize: 1000, CredentialBurst: 1e6})
	const pairs = 50
	type pair struct{ a, b *client }
	var ps []pair
	for i := range pairs {
		room := fmt.Sprintf("p%d", i)
		a := join(b, ts, "a", room)
		c := join(b, ts, "b", room)
		a.expect("peer-joined")
		ps = append(ps, pair{a, c})
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p := ps[i%pairs]
		start := time.Now()
		p.a.sendRaw([]byte(`{"type":"signal","to":"` + p.b.id + `","data":{"candidate":"candidate:1 1 udp 2122260223 10.0.0.1 50000 typ host"},"ack":` + strconv.FormatUint(p.a.seq(), 10) + `}`))
		p.b.expect("signal")
		lat = append(lat, time.Since(start))
		if i%100 == 0 {
			p.b.send(map[string]any{"type": "ping", "ack": p.b.seq()})
			p.b.expect("pong")
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

func benchPing() string {
	if p := os.Getenv("SIGNALING_BENCH_PINGEVERY"); p != "" {
		return p
	}
	return "5s"
}
