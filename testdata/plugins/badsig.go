// badsig exports handlers with signatures plugind does not accept.
package main

// GETArgsHandler takes an argument: not a handler ABI.
func GETArgsHandler(n int) string { return "" }

// GETErrHandler returns an error: not a handler ABI.
func GETErrHandler() error { return nil }

// GETVarHandler is a variable, not a function.
var GETVarHandler = "not a function"

// GETFineHandler is fine, so the plugin itself loads.
func GETFineHandler() string { return "fine" }
