package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard-rtc/switchboard/web"
)

// TestBrowserUnit runs the client library's unit tests (web/testdata/
// unit_test.js: backoff, close codes, seq/ack, perfect negotiation with fake
// and real peer connections, stats summary, session resume against a fake
// server, /check verdicts) inside headless Chromium: CI has Chromium but no
// Node.js, and the negotiation tests want real RTCPeerConnections anyway.
func TestBrowserUnit(t *testing.T) {
	chromiumPath(t)
	mux := http.NewServeMux()
	mux.Handle("/test/", http.StripPrefix("/test/", http.FileServerFS(os.DirFS("../../web/testdata"))))
	mux.HandleFunc("/blank", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<!doctype html><title>unit tests</title>"))
	})
	mux.Handle("/", web.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	p := newPage(t, "unit")
	p.do(20*time.Second, chromedp.Navigate(srv.URL+"/blank"))
	var results []struct {
		Name, Error string
		OK          bool
		MS          int
	}
	p.eval(`import("/test/unit_test.js").then((m) => m.run())`, &results)
	if len(results) == 0 {
		t.Fatal("unit_test.js ran no tests")
	}
	for _, r := range results {
		t.Run(r.Name, func(t *testing.T) {
			if !r.OK {
				t.Error(r.Error)
			}
			t.Logf("%d ms", r.MS)
		})
	}
}
