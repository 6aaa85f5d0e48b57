package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	promscrape "github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/scrape"
)

// natServerReadyTimeout bounds how long the server role waits for its own /readyz: the
// server binds a handful of sockets, which takes milliseconds; 20 s is slack for -race
// on a loaded 2-core machine.
const natServerReadyTimeout = 20 * time.Second

// natServerRole runs Switchboard exactly as `switchboard serve` would, inside the
// server namespace: run() with this process's SWITCHBOARD_ environment (set by the test
// in TestNAT), SIGTERM turned into a graceful stop as in main. Its log goes to
// stderr; stdout carries the events "ready" (its /readyz answered 200), "metrics" (the
// answer to a "metrics" command on stdin) and "exit".
func natServerRole() int {
	emit := newNATEmit(os.Stdout)
	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// stdin EOF means the test is done with us, or gone (killed by go test's -timeout,
	// say): stop gracefully then too, so no server outlives its test.
	ctx, cancel := context.WithCancel(sigCtx)
	defer cancel()

	go func() { // owner: this process; ends at stdin EOF, which also stops the server
		defer cancel()
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			var cmd natCommand
			if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil || cmd.Cmd != "metrics" {
				emit.emit(natEvent{Ev: "error", Err: fmt.Sprintf("bad command %q", sc.Bytes())})
				continue
			}
			m, err := natScrape(ctx, "http://127.0.0.1:"+natHTTPPort+"/metrics")
			ev := natEvent{Ev: "metrics", Metrics: m}
			if err != nil {
				ev.Ev, ev.Err = "error", err.Error()
			}
			emit.emit(ev)
		}
	}()

	var environ []string
	for _, kv := range os.Environ() {
		// The role variable is ours, not a setting of the server.
		if !strings.HasPrefix(kv, envTestRole+"=") {
			environ = append(environ, kv)
		}
	}
	status := make(chan int, 1)
	go func() { status <- run(ctx, []string{"serve"}, environ, os.Stderr, os.Stderr) }()

	// Readiness is checked from inside the namespace, over its loopback: the test itself
	// (in the host namespace) has no route into the simulated network, by design.
	ready := "http://127.0.0.1:" + natHTTPPort + "/readyz"
	deadline := time.After(natServerReadyTimeout)
	tick := time.NewTicker(50 * time.Millisecond) // fast enough not to matter, slow enough not to spin
	defer tick.Stop()
poll:
	for {
		select {
		case code := <-status:
			emit.emit(natEvent{Ev: "exit", Status: code, Err: "run returned before ready"})
			return code
		case <-deadline:
			emit.emit(natEvent{Ev: "error", Err: "not ready after " + natServerReadyTimeout.String()})
			break poll
		case <-tick.C:
			if natGetOK(ctx, ready) {
				emit.emit(natEvent{Ev: "ready"})
				break poll
			}
		}
	}
	code := <-status
	emit.emit(natEvent{Ev: "exit", Status: code})
	return code
}

func natGetOK(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// natScrape reads the switchboard_ series of the server role's /metrics (the rest
// would only make the test log harder to read).
func natScrape(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, natIOTimeout)
	defer cancel()
	return promscrape.Get(ctx, url, func(name string) bool { return strings.HasPrefix(name, "switchboard_") })
}
