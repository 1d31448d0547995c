//go:build ignore

// This file is excluded by its build constraint; if it were compiled,
// summary would be declared twice and the plugin would not build.
package main

func summary(n []string) string { return "wrong" }
