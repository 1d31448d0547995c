// counter counts the calls that reach it, and has a large answer for
// compression tests.
package main

import (
	"strconv"
	"strings"
)

var calls int // legacy calls are serialised: no lock needed

// GETCountHandler answers how many calls reached the plugin so far.
func GETCountHandler() string {
	calls++
	return strconv.Itoa(calls)
}

// GETBigHandler answers 8 KB of text.
func GETBigHandler() string { return strings.Repeat("plugind ", 1024) }
