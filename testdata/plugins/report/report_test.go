package main

import "testing"

// Test files are never part of a plugin; this one would not compile in it.
func TestSummary(t *testing.T) { summary(nil); undefinedInPlugin() }
