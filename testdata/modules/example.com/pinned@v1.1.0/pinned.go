// Package pinned is a fixture module for plugind's tests. Version v1.1.0
// requires github.com/rs/xid v1.7.0, a module the server itself links.
package pinned

import "github.com/rs/xid"

// Version is this module's version.
const Version = "pinned v1.1.0"

// ID returns a new xid.
func ID() string { return xid.New().String() }
