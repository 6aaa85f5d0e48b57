package routertest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// Client is a protocol client for tests that run hubs (one node or a
// cluster): it reads every server message into a queue in the background.
type Client struct {
	t       testing.TB
	c       *websocket.Conn
	msgs    chan wire.Any
	Welcome wire.Any
	ID      string
	// Last is the highest seq received (by Next), Attempt the hello.attempt
	// of this socket: what a resume sends.
	Last    uint64
	Attempt uint64
}

// Dial opens /ws at base (http://host:port), sends hello with name and room,
// and waits for the welcome (failing t on an error answer).
func Dial(t testing.TB, base, name, room string) *Client {
	t.Helper()
	c := DialOnly(t, base)
	c.Attempt = 1
	c.Send(wire.Hello{Type: wire.TypeHello, Name: name, Room: &room, Attempt: 1})
	w := c.Next()
	if w.Type != wire.TypeWelcome {
		t.Fatalf("hello %s on %s: got %s %s %s, want welcome", name, base, w.Type, w.Code, w.Message)
	}
	c.Welcome, c.ID = w, w.ID
	return c
}

// DialOnly opens /ws at base without a hello.
func DialOnly(t testing.TB, base string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitFor)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/ws", nil)
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	ws.SetReadLimit(1 << 20)
	c := &Client{t: t, c: ws, msgs: make(chan wire.Any, 1024)}
	go c.read()
	t.Cleanup(func() { ws.CloseNow() })
	return c
}

func (c *Client) read() {
	defer close(c.msgs)
	for {
		_, b, err := c.c.Read(context.Background())
		if err != nil {
			return
		}
		var m wire.Any
		if json.Unmarshal(b, &m) == nil {
			c.msgs <- m
		}
	}
}

// Send writes v as JSON.
func (c *Client) Send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), WaitFor)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("client %s: write: %v", c.ID, err)
	}
}

// TrySend writes v as JSON, reporting a failed write (the server may have
// closed the connection) instead of failing.
func (c *Client) TrySend(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), WaitFor)
	defer cancel()
	return c.c.Write(ctx, websocket.MessageText, b)
}

// Next returns the next server message, failing after WaitFor.
func (c *Client) Next() wire.Any {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("client %s: connection closed", c.ID)
		}
		c.Last = max(c.Last, m.Seq)
		return m
	case <-time.After(WaitFor):
		c.t.Fatalf("client %s: no message within %v", c.ID, WaitFor)
	}
	return wire.Any{}
}

// Expect returns the next message, failing unless its type is typ.
func (c *Client) Expect(typ string) wire.Any {
	c.t.Helper()
	m := c.Next()
	if m.Type != typ {
		c.t.Fatalf("client %s: got %s (code %q, %s), want %s", c.ID, m.Type, m.Code, m.Message, typ)
	}
	return m
}

// Cut drops the connection without a close frame: the session goes into its
// resume grace.
func (c *Client) Cut() { c.c.CloseNow() }

// Resume opens a new connection to base and resumes c's session there (ack:
// the last seq c received, the next attempt). It returns the new client and
// the answer to the hello (welcome, or the error and close).
func (c *Client) Resume(t testing.TB, base string) (*Client, wire.Any) {
	t.Helper()
	n := DialOnly(t, base)
	n.ID, n.Last, n.Attempt = c.ID, c.Last, c.Attempt+1
	ack := c.Last
	n.Send(wire.Hello{Type: wire.TypeHello, Name: "resume", Resume: c.Welcome.Resume, Attempt: n.Attempt,
		Meta: wire.Meta{Ack: ack}})
	w, ok := n.TryNext()
	if ok && w.Type == wire.TypeWelcome {
		n.Welcome = w
		n.Welcome.Resume = c.Welcome.Resume
	}
	return n, w
}

// TryNext is Next, reporting a closed connection (false) instead of failing.
func (c *Client) TryNext() (wire.Any, bool) {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if ok {
			c.Last = max(c.Last, m.Seq)
		}
		return m, ok
	case <-time.After(WaitFor):
		c.t.Fatalf("client %s: no message within %v", c.ID, WaitFor)
	}
	return wire.Any{}, false
}

// Close closes the WebSocket normally.
func (c *Client) Close() { c.c.Close(websocket.StatusNormalClosure, "") }
