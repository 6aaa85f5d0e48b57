package wire

import (
	"bufio"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// jsonFields lists the JSON names of t's fields, embedded structs flattened.
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			for k := range jsonFields(f.Type) {
				out[k] = true
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out[name] = true
	}
	return out
}

var (
	parens   = regexp.MustCompile(`\([^)]*\)`)
	backtick = regexp.MustCompile("`([^`]*)`")
)

// protocolTables reads the message tables of PROTOCOL.md: section → type → fields.
func protocolTables(t *testing.T) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open("../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tables := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			section = strings.TrimSpace(strings.TrimLeft(line, "#"))
			continue
		}
		if section != "Client → server" && section != "Server → client" || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		typ := strings.Trim(strings.TrimSpace(cells[1]), "`")
		var fields []string
		for _, m := range backtick.FindAllStringSubmatch(parens.ReplaceAllString(cells[2], ""), -1) {
			name := strings.TrimSuffix(m[1], "?")
			name, _, _ = strings.Cut(name, ":")
			fields = append(fields, name)
		}
		if tables[section] == nil {
			tables[section] = map[string][]string{}
		}
		tables[section][typ] = fields
	}
	return tables
}

// TestStructsMatchProtocol: every message PROTOCOL.md lists has a struct here with
// every field it names, so the Go clients cannot drift from the document.
func TestStructsMatchProtocol(t *testing.T) {
	structs := map[string]map[string]any{
		"Client → server": {
			TypeHello: Hello{}, TypeSignal: Signal{}, TypeJoin: Join{}, TypeCall: Call{},
			TypeAccept: CallAction{}, TypeDecline: CallAction{}, TypeCancel: CallAction{},
			TypeHangup: CallAction{}, TypePing: Ping{},
		},
		"Server → client": {
			TypeWelcome: Welcome{}, TypePeerJoined: PeerJoined{}, TypePeerLeft: PeerLeft{},
			TypeSignal: Relayed{}, TypeJoined: Joined{}, TypeRinging: Ringing{}, TypeCall: Incoming{},
			TypeAccepted: Accepted{}, TypeDeclined: CallEnded{}, TypeCancelled: CallEnded{},
			TypeBusy: CallEnded{}, TypeHangup: Hangup{}, TypeTimeout: Timeout{},
			TypeICEServers: Credentials{}, TypeToken: Token{}, TypeError: Error{}, TypePong: Pong{},
		},
	}
	tables := protocolTables(t)
	for section, rows := range tables {
		for typ, fields := range rows {
			v, ok := structs[section][typ]
			if !ok {
				t.Errorf("%s: %q has no struct in package wire", section, typ)
				continue
			}
			have := jsonFields(reflect.TypeOf(v))
			for _, f := range fields {
				if !have[f] {
					t.Errorf("%s: %s (%T) lacks field %q", section, typ, v, f)
				}
			}
			delete(structs[section], typ)
		}
	}
	for section, rest := range structs {
		for typ := range rest {
			t.Errorf("%s: %q is not in PROTOCOL.md's table", section, typ)
		}
	}
	// Any covers every server field.
	anyFields := jsonFields(reflect.TypeOf(Any{}))
	for typ, fields := range tables["Server → client"] {
		for _, f := range fields {
			if !anyFields[f] {
				t.Errorf("Any lacks %q of %s", f, typ)
			}
		}
	}
}

func TestAnyPeer(t *testing.T) {
	tests := []struct {
		name, in string
		wantID   string
		wantPeer Peer
	}{
		{name: "peer-joined", in: `{"type":"peer-joined","seq":1,"peer":{"id":"a","name":"A","nearby":true}}`, wantPeer: Peer{ID: "a", Name: "A", Nearby: true}},
		{name: "accepted", in: `{"type":"accepted","seq":2,"call":"c","peer":"b","polite":false}`, wantID: "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Any
			if err := json.Unmarshal([]byte(tt.in), &a); err != nil {
				t.Fatal(err)
			}
			if tt.wantID != "" {
				if id, err := a.PeerID(); err != nil || id != tt.wantID {
					t.Fatalf("PeerID() = %q, %v; want %q", id, err, tt.wantID)
				}
				return
			}
			if p, err := a.PeerInfo(); err != nil || p != tt.wantPeer {
				t.Fatalf("PeerInfo() = %+v, %v; want %+v", p, err, tt.wantPeer)
			}
		})
	}
}
