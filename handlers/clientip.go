package handlers

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP is the address of the client that sent r. It is the peer
// (r.RemoteAddr) unless the peer is in trusted, a load balancer or
// proxy; then the forwarding headers are read right to left, each hop
// named by a trusted one, and the first address outside trusted is the
// client. Forwarded (RFC 7239, its for= parameters) is read when
// present, else X-Forwarded-For; several lines of a header count as one
// list in order. A hop that names no usable address (RFC 7239's
// "unknown" or an obfuscated name, or garbage) ends the walk at the
// trusted proxy that reported it: headers past it cannot be trusted. If
// every hop is trusted, the leftmost is the client. Headers from an
// untrusted peer are ignored: anyone can send them. The zero Addr means
// r.RemoteAddr is not an address.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	addr := parseHop(r.RemoteAddr)
	if !addr.IsValid() || !isTrusted(addr, trusted) {
		return addr
	}
	hops := forwardedFor(r.Header.Values("Forwarded"))
	if hops == nil {
		hops = splitList(r.Header.Values("X-Forwarded-For"))
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop := parseHop(hops[i])
		if !hop.IsValid() {
			return addr
		}
		addr = hop
		if !isTrusted(addr, trusted) {
			return addr
		}
	}
	return addr
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop parses an address with or without a port, IPv6 in brackets
// or not; an IPv4-mapped IPv6 address becomes IPv4.
func parseHop(s string) netip.Addr {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// splitList splits comma-separated header lines into their elements.
func splitList(lines []string) []string {
	var out []string
	for _, line := range lines {
		for e := range strings.SplitSeq(line, ",") {
			out = append(out, strings.TrimSpace(e))
		}
	}
	return out
}

// forwardedFor returns the for= value of each element of Forwarded
// header lines ("" for an element without one), or nil without the
// header. Quoted values are unquoted; commas and semicolons inside
// quotes do not split.
func forwardedFor(lines []string) []string {
	if len(lines) == 0 {
		return nil
	}
	var out []string
	for _, line := range lines {
		for _, elem := range splitQuoted(line, ',') {
			var hop string
			for _, pair := range splitQuoted(elem, ';') {
				k, v, ok := strings.Cut(pair, "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
					hop = strings.Trim(strings.TrimSpace(v), `"`)
				}
			}
			out = append(out, hop)
		}
	}
	return out
}

// splitQuoted splits s at sep outside double quotes.
func splitQuoted(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quoted:
			i++
		case s[i] == '"':
			quoted = !quoted
		case s[i] == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
