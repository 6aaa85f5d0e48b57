// Package web serves the browser client: the call app, the network self-check
// and the switchboard.js client library, embedded in the binary.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// csp allows only same-origin scripts, styles and connections: no inline code,
// no CDN, no external fonts. media-src needs blob:/mediastream: for <video>
// srcObject, img-src blob: for received image previews. connect-src 'self'
// covers ws(s) to the same host only in CSP level 3 browsers; older Safari
// needs the ws:/wss: origin spelled out, which cspFor adds per request.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " +
	"media-src 'self' blob: mediastream:; font-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'; connect-src 'self'"

// cspFor returns the policy for a request to host, with the WebSocket origins
// of that host when it is a plain host[:port] (anything else could smuggle
// directives into the header, so it gets 'self' alone).
func cspFor(host string) string {
	if host == "" || len(host) > 255 {
		return csp
	}
	for _, c := range host {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == ':', c == '[', c == ']':
		default:
			return csp
		}
	}
	return csp + " ws://" + host + " wss://" + host
}

// pages maps a route to the embedded HTML file that answers it.
var pages = map[string]string{
	"/":      "index.html",
	"/check": "check.html",
}

// types overrides mime types the stdlib table gets wrong for us (".ts" is
// MPEG transport stream there).
var types = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".ts":   "text/plain; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".html": "text/html; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

type asset struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves "/", "/r/{room}", "/check", "/switchboard.js", its
// declarations under "/types/" and the other static assets with strict
// security headers.
// Every file is read once at construction; the handler holds no mutable state.
func Handler() http.Handler {
	assets := map[string]asset{}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic("web: embedded static dir missing: " + err.Error()) // build-time invariant
	}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := types[path.Ext(p)]
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		assets["/"+p] = asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("web: reading embedded files: " + err.Error()) // build-time invariant
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := r.URL.Path
		if name == "/switchboard.d.ts" {
			// The declarations moved next to those of the modules they import.
			http.Redirect(w, r, "/types/switchboard.d.ts", http.StatusMovedPermanently)
			return
		}
		switch room, isRoom := strings.CutPrefix(name, "/r/"); {
		case pages[name] != "":
			name = "/" + pages[name]
		case isRoom && validRoom(room):
			name = "/" + pages["/"]
		case strings.HasSuffix(name, ".html"):
			// Pages have one address each; /index.html is not another one.
			http.NotFound(w, r)
			return
		}
		a, ok := assets[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", cspFor(r.Host))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)")
		h.Set("Content-Type", a.ctype)
		// no-cache, not no-store: the browser revalidates with the ETag, so a new
		// binary is picked up at once and an unchanged file costs a 304.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		if match := r.Header.Get("If-None-Match"); match != "" && match == a.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(a.body)
	})
}

// validRoom accepts the room names the app produces: 1-64 characters of
// letters, digits, '-', '_' and '.'; the hub enforces its own rules again.
func validRoom(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
