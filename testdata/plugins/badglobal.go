// badglobal declares HTTPVars with the wrong type.
package main

var HTTPVars []string

func GETHelloHandler() string { return "unreachable" }
