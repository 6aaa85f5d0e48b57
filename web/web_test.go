package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	tests := []struct {
		name, method, path string
		status             int
		ctype, contains    string
	}{
		{name: "app", method: "GET", path: "/", status: 200, ctype: "text/html", contains: `src="/app.js"`},
		{name: "room", method: "GET", path: "/r/team-1.a_b", status: 200, ctype: "text/html", contains: `src="/app.js"`},
		{name: "check", method: "GET", path: "/check", status: 200, ctype: "text/html", contains: `src="/check.js"`},
		{name: "library", method: "GET", path: "/switchboard.js", status: 200, ctype: "text/javascript", contains: "export function connect"},
		{name: "types", method: "GET", path: "/types/switchboard.d.ts", status: 200, ctype: "text/plain", contains: "export function connect"},
		{name: "old types address", method: "GET", path: "/switchboard.d.ts", status: 200, ctype: "text/plain", contains: "export class Session"},
		{name: "negotiation", method: "GET", path: "/negotiation.js", status: 200, ctype: "text/javascript", contains: "export class Negotiator"},
		{name: "call", method: "GET", path: "/call.js", status: 200, ctype: "text/javascript", contains: "export class Call"},
		{name: "no tooling", method: "GET", path: "/package.json", status: 404},
		{name: "no tooling in types", method: "GET", path: "/types/tsconfig.json", status: 404},
		{name: "css", method: "GET", path: "/app.css", status: 200, ctype: "text/css"},
		{name: "icon", method: "GET", path: "/icon.svg", status: 200, ctype: "image/svg+xml"},
		{name: "head", method: "HEAD", path: "/", status: 200, ctype: "text/html"},
		{name: "html by name is not a route", method: "GET", path: "/index.html", status: 404},
		{name: "unknown", method: "GET", path: "/nope.js", status: 404},
		{name: "room with a slash", method: "GET", path: "/r/a/b", status: 404},
		{name: "room too long", method: "GET", path: "/r/" + strings.Repeat("a", 65), status: 404},
		{name: "empty room", method: "GET", path: "/r/", status: 404},
		{name: "post", method: "POST", path: "/", status: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.status {
				t.Fatalf("%s %s = %d, want %d", tt.method, tt.path, res.StatusCode, tt.status)
			}
			if tt.status != 200 {
				return
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.ctype) {
				t.Errorf("Content-Type = %q, want %q", ct, tt.ctype)
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body lacks %q", tt.contains)
			}
			csp := res.Header.Get("Content-Security-Policy")
			for _, want := range []string{"script-src 'self'", "default-src 'none'", "style-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-") {
				t.Errorf("CSP %q allows unsafe-*", csp)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no X-Content-Type-Options: nosniff")
			}
		})
	}
}

func TestCSPFor(t *testing.T) {
	tests := []struct {
		host string
		want string // suffix after connect-src 'self'
	}{
		{host: "call.example.com", want: " ws://call.example.com wss://call.example.com"},
		{host: "127.0.0.1:8080", want: " ws://127.0.0.1:8080 wss://127.0.0.1:8080"},
		{host: "[::1]:8080", want: " ws://[::1]:8080 wss://[::1]:8080"},
		{host: "", want: ""},
		{host: "evil; script-src *", want: ""},
		{host: "a b", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got := cspFor(tt.host)
			if want := csp + tt.want; got != want {
				t.Errorf("cspFor(%q) = %q, want %q", tt.host, got, want)
			}
		})
	}
}

func TestHandlerETag(t *testing.T) {
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	res, err := http.Get(srv.URL + "/switchboard.js")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/switchboard.js", nil)
	req.Header.Set("If-None-Match", etag)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation with ETag = %d, want 304", res.StatusCode)
	}
}

// TestStaticFilesFitCSP checks what the CSP would break at run time: no
// inline script or style, no event-handler attributes, and nothing fetched
// from another host (the app must work on a LAN without internet).
func TestStaticFilesFitCSP(t *testing.T) {
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)
	handlerAttr := regexp.MustCompile(`\son[a-z]+\s*=`)
	external := regexp.MustCompile(`(?:src|href)\s*=\s*"(?:https?:)?//|@import|url\(\s*["']?(?:https?:)?//|from\s+"https?:|import\("https?:`)
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		s := string(b)
		if strings.HasSuffix(path, ".html") {
			if inlineScript.MatchString(s) {
				t.Errorf("%s: inline <script>", path)
			}
			if strings.Contains(s, "<style") || strings.Contains(s, " style=") {
				t.Errorf("%s: inline style", path)
			}
			if handlerAttr.MatchString(s) {
				t.Errorf("%s: inline event handler attribute", path)
			}
		}
		if m := external.FindString(s); m != "" {
			t.Errorf("%s: loads from another host: %q", path, m)
		}
		if strings.HasSuffix(path, ".js") && !strings.HasPrefix(s, "// @ts-check") {
			t.Errorf("%s: does not start with // @ts-check", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
