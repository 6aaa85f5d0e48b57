package main

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserSignIn follows the deploy guide as a self-hoster meets it: the
// server runs with SWITCHBOARD_AUTH_SECRET (and a passcode), the operator runs
// `switchboard invite --room family` (the real command, with the server's
// settings), two people open the printed link, join, one calls, the other
// accepts and they see each other; a third person without a link gets the sign-in screen and comes
// in with the passcode. TLS is the one setting left out: the test has no
// public CA, and http://localhost is a secure context, so cameras work.
func TestBrowserSignIn(t *testing.T) {
	chromiumPath(t)
	env := signInEnv(t)
	a := startStack(t, env)

	// The operator's command sees the server's settings, including where it
	// listens (the printed link names the bound port, as in a real deploy).
	cliEnv := maps.Clone(stackDefaults(t))
	maps.Copy(cliEnv, env)
	cliEnv["SWITCHBOARD_HTTP_ADDR"] = a.httpLn.Addr().String()
	link := runInvite(t, cliEnv)
	_, port, _ := net.SplitHostPort(a.httpLn.Addr().String())
	if want := "http://localhost:" + port + "/#invite="; !strings.HasPrefix(link, want) {
		t.Fatalf("switchboard invite printed %q, want %q...", link, want)
	}
	base := strings.TrimSuffix(link[:strings.Index(link, "#")], "/")

	ada := newPage(t, "ada")
	bob := newPage(t, "bob")
	ids := map[string]string{}
	for _, p := range []struct {
		pg   *page
		name string
	}{{ada, "Ada"}, {bob, "Bob"}} {
		p.pg.do(30*time.Second, chromedp.Navigate(link))
		p.pg.wait("the link to sign in and show the join form", `!document.getElementById("join").hidden && document.getElementById("signin").hidden`, 20*time.Second)
		if h := p.pg.str(`location.hash`); h != "" {
			t.Errorf("%s: the address bar still shows the invite (%q)", p.name, h)
		}
		ids[p.name] = joinShown(t, p.pg, p.name)
	}
	// Signed in across a reload: no sign-in screen, straight to the join form.
	bob.leave()
	bob.do(30*time.Second, chromedp.Reload())
	bob.wait("the join form after a reload", `!document.getElementById("join").hidden && document.getElementById("signin").hidden`, 20*time.Second)
	ids["Bob"] = joinShown(t, bob, "Bob")

	ada.wait("Bob in the presence list", fmt.Sprintf(`document.querySelector('#peers li[data-peer=%q]')`, ids["Bob"]), 15*time.Second)
	connectCall(t, ada, bob, "Ada", ids["Bob"])

	// No link: the sign-in screen with a passcode field; a wrong passcode is
	// refused, the right one lets Cy in.
	cy := newPage(t, "cy")
	cy.do(30*time.Second, chromedp.Navigate(base+"/"))
	cy.wait("the sign-in screen", `!document.getElementById("signin").hidden && !document.getElementById("signin-form").hidden && document.getElementById("join").hidden`, 20*time.Second)
	cy.do(10*time.Second, chromedp.SendKeys(chromedp.ID("passcode"), "not the passcode"), chromedp.Click(chromedp.ID("signin-button")))
	cy.wait("the wrong passcode refused", `!document.getElementById("signin-error").hidden`, 15*time.Second)
	cy.wait("the sign-in button back", `!document.getElementById("signin-button").disabled`, 15*time.Second)
	cy.do(10*time.Second, chromedp.SendKeys(chromedp.ID("passcode"), testPasscode), chromedp.Click(chromedp.ID("signin-button")))
	cy.wait("the join form after the passcode", `!document.getElementById("join").hidden`, 20*time.Second)
	joinShown(t, cy, "Cy")

	// Nothing the browsers did put a token into a URL the server saw.
	if u, err := url.Parse(cy.str(`location.href`)); err != nil || strings.Contains(u.RawQuery, "token") {
		t.Errorf("Cy's address %q carries a token", cy.str(`location.href`))
	}
}

// joinShown types name into the visible join form and joins; it returns the
// session id.
func joinShown(t *testing.T, p *page, name string) string {
	t.Helper()
	p.eval(`document.getElementById("name").value = ""`, nil)
	p.do(30*time.Second,
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.Click(chromedp.ID("join-button")),
	)
	p.wait("the session to open", `window.switchboardApp?.session?.state === "open"`, 20*time.Second)
	return p.str(`switchboardApp.session.id`)
}
