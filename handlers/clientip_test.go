package handlers

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:1::/48")}
	tests := []struct {
		name    string
		peer    string
		xff     []string
		fwd     []string
		trusted []netip.Prefix
		want    string
	}{
		{name: "no proxy", peer: "192.0.2.1:1234", want: "192.0.2.1"},
		{name: "headers from an untrusted peer are ignored", peer: "192.0.2.1:1234", xff: []string{"198.51.100.7"}, want: "192.0.2.1"},
		{name: "none trusted by default", peer: "10.0.0.1:1234", xff: []string{"198.51.100.7"}, trusted: []netip.Prefix{}, want: "10.0.0.1"},
		{name: "one trusted proxy", peer: "10.0.0.1:1234", xff: []string{"198.51.100.7"}, want: "198.51.100.7"},
		{name: "a spoofed leftmost entry is skipped", peer: "10.0.0.1:1234", xff: []string{"6.6.6.6, 198.51.100.7"}, want: "198.51.100.7"},
		{name: "past trusted hops", peer: "10.0.0.1:1234", xff: []string{"6.6.6.6, 198.51.100.7, 10.2.0.1"}, want: "198.51.100.7"},
		{name: "several header lines are one list", peer: "10.0.0.1:1234", xff: []string{"6.6.6.6", "198.51.100.7", "10.2.0.1"}, want: "198.51.100.7"},
		{name: "every hop trusted: the leftmost", peer: "10.0.0.1:1234", xff: []string{"10.3.0.1, 10.2.0.1"}, want: "10.3.0.1"},
		{name: "garbage ends the walk at the proxy that reported it", peer: "10.0.0.1:1234", xff: []string{"198.51.100.7, bogus, 10.2.0.1"}, want: "10.2.0.1"},
		{name: "empty header", peer: "10.0.0.1:1234", xff: []string{""}, want: "10.0.0.1"},
		{name: "port in X-Forwarded-For", peer: "10.0.0.1:1234", xff: []string{"198.51.100.7:5555"}, want: "198.51.100.7"},
		{name: "IPv6 peer and hop", peer: "[2001:db8:1::5]:443", xff: []string{"2001:db8:2::9"}, want: "2001:db8:2::9"},
		{name: "IPv4-mapped hop", peer: "10.0.0.1:1234", xff: []string{"::ffff:198.51.100.7"}, want: "198.51.100.7"},
		{name: "Forwarded", peer: "10.0.0.1:1234", fwd: []string{`for=198.51.100.7;proto=https;by=10.0.0.1`}, want: "198.51.100.7"},
		{name: "Forwarded beats X-Forwarded-For", peer: "10.0.0.1:1234", fwd: []string{"for=198.51.100.7"}, xff: []string{"203.0.113.9"}, want: "198.51.100.7"},
		{name: "Forwarded, quoted IPv6 with port", peer: "10.0.0.1:1234", fwd: []string{`for="[2001:db8:2::9]:4711"`}, want: "2001:db8:2::9"},
		{name: "Forwarded, several hops, case of the key", peer: "10.0.0.1:1234", fwd: []string{`for=6.6.6.6, FOR=198.51.100.7;proto=http, for="10.2.0.1:80"`}, want: "198.51.100.7"},
		{name: "Forwarded, quoted separators", peer: "10.0.0.1:1234", fwd: []string{`for=198.51.100.7;host="a,b;c", for=10.2.0.1`}, want: "198.51.100.7"},
		{name: "Forwarded, unknown hop", peer: "10.0.0.1:1234", fwd: []string{"for=198.51.100.7, for=unknown"}, want: "10.0.0.1"},
		{name: "Forwarded, obfuscated hop", peer: "10.0.0.1:1234", fwd: []string{`for=198.51.100.7, for="_hidden"`}, want: "10.0.0.1"},
		{name: "Forwarded, element without for", peer: "10.0.0.1:1234", fwd: []string{"for=198.51.100.7, proto=https"}, want: "10.0.0.1"},
		{name: "Forwarded from an untrusted peer is ignored", peer: "192.0.2.1:1234", fwd: []string{"for=198.51.100.7"}, want: "192.0.2.1"},
		{name: "peer without a port", peer: "10.0.0.1", xff: []string{"198.51.100.7"}, want: "198.51.100.7"},
		{name: "peer not an address", peer: "@", want: "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			for _, v := range tt.fwd {
				r.Header.Add("Forwarded", v)
			}
			tr := trusted
			if tt.trusted != nil {
				tr = tt.trusted
			}
			if got := ClientIP(r, tr).String(); got != tt.want {
				t.Errorf("ClientIP = %s, want %s", got, tt.want)
			}
		})
	}
}
