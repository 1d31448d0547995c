// heads declares HEAD handlers beside others. HEAD is served by a
// function's GET handler, so a HEAD handler is never called, and a 405's
// Allow header lists HEAD with GET only, once.
package main

// GETPageHandler answers GET, and HEAD.
func GETPageHandler() string { return "page" }

// HEADPageHandler is never called: GETPageHandler serves HEAD.
func HEADPageHandler() string { return "never" }

// HEADProbeHandler is never called: Probe has no GET handler.
func HEADProbeHandler() string { return "never" }

// POSTProbeHandler answers POST, Probe's only method.
func POSTProbeHandler() string { return "probed" }
