package main

import (
	"errors"
	"strings"
	"testing"
)

// FuzzConfigValue feeds arbitrary values to every variable: parsing never
// panics, and a refusal is always one line naming a SWITCHBOARD_ variable.
func FuzzConfigValue(f *testing.F) {
	vars := configVars()
	for i, seed := range []string{
		"", ":8080", "127.0.0.1:0", "[::1]:3478", "10.0.0.0/8,fd00::/8", "10.0.0/8", "49152-65535",
		"65535-1", "1h30m", "-1s", "true", "maybe", "debug", "json", "off", ":5349,:443", "a.example.com",
		"0123456789abcdef0123456789abcdef", "203.0.113.7", "::ffff:1.2.3.4", "fe80::1%eth0", "\x00\n,",
	} {
		f.Add(uint8(i), seed)
	}
	f.Fuzz(func(t *testing.T, idx uint8, value string) {
		name := vars[int(idx)%len(vars)].Name
		_, err := parseConfigMap(map[string]string{name: value})
		if err == nil {
			return
		}
		var ce *configError
		if !errors.As(err, &ce) {
			t.Fatalf("%s=%q: error %T %v is not a configError", name, value, err, err)
		}
		if !strings.HasPrefix(ce.Var, envPrefix) {
			t.Fatalf("%s=%q: error names %q", name, value, ce.Var)
		}
		if strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("%s=%q: error %q is more than one line", name, value, err)
		}
	})
}

// FuzzPrefixList: whatever parses prints back (as masked CIDRs) to a list
// that parses to the same prefixes.
func FuzzPrefixList(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "192.168.1.7", " 10.0.0.0/8 , ,fd00::/8", "1.2.3.4/33", "::ffff:10.0.0.1/128", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var l prefixList
		if err := l.UnmarshalText([]byte(s)); err != nil {
			return
		}
		var parts []string
		for _, p := range l {
			if p != p.Masked() {
				t.Fatalf("%q: prefix %v not masked", s, p)
			}
			parts = append(parts, p.String())
		}
		var again prefixList
		if err := again.UnmarshalText([]byte(strings.Join(parts, ","))); err != nil {
			t.Fatalf("%q: reparse of %q: %v", s, parts, err)
		}
		if len(again) != len(l) {
			t.Fatalf("%q: round trip %v != %v", s, again, l)
		}
		for i := range l {
			if again[i] != l[i] {
				t.Fatalf("%q: round trip %v != %v", s, again, l)
			}
		}
	})
}

// FuzzPortRange: a parsed range is valid and round-trips through String.
func FuzzPortRange(f *testing.F) {
	for _, s := range []string{"49152-65535", "1024-1024", "100-200", "65535-1", " 5000 - 6000 ", "-", "a-b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var r portRange
		if err := r.UnmarshalText([]byte(s)); err != nil {
			return
		}
		if r.min < 1024 || r.min > r.max {
			t.Fatalf("%q parsed to invalid range %v", s, r)
		}
		var again portRange
		if err := again.UnmarshalText([]byte(r.String())); err != nil || again != r {
			t.Fatalf("%q: round trip %v -> %q -> %v, %v", s, r, r.String(), again, err)
		}
	})
}
