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

// TestBrowserUnit runs the client library's tests that need a browser
// (web/testdata/unit_test.js: perfect negotiation with real
// RTCPeerConnections, calls of a session against a fake server, media state)
// inside headless Chromium. The pure modules' tests run under node --test
// (web/tools_test.go).
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
