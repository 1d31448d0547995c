// Package greet is a fixture module for plugind's tests: Hello names the
// version it comes from, so a test sees which version a plugin was built with.
package greet

// Hello returns "greet v1.0.0".
func Hello() string { return "greet v1.0.0" }
