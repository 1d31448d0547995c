package handlers

import (
	"net/http"
	"net/netip"
)

// ClientIP is the peer's address. (Interim: forwarded headers are
// honoured once trusted proxies are in.)
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	return ap.Addr()
}
