// Package handlers is plugind's HTTP layer: the gorilla/mux router with
// /_PLUGIN/{file}/{func}, /healthz and /readyz, the access log, and the one
// place where errors become HTTP statuses and JSON bodies (writeError).
//
// Route variables are names, never paths: they are validated by the
// loader before anything touches the disk, and any other shape of path
// under /_PLUGIN/ (an encoded slash, a third segment) is refused with 400.
package handlers
