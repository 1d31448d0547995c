// status exercises prestd's ABI: statuses, content types, globals.
package main

import "strings"

var (
	HTTPVars map[string]string
	URLQuery map[string][]string
)

// POSTCreateHandler answers 201 with the created name.
func POSTCreateHandler() (string, int) {
	return `{"created":"` + strings.Join(URLQuery["name"], ",") + `"}`, 201
}

// GETTextHandler answers a body that is not JSON.
func GETTextHandler() string { return "plain text, not JSON" }

// GETZeroHandler returns status 0, which means 200.
func GETZeroHandler() (string, int) { return `"zero"`, 0 }

// GETBadStatusHandler returns a status that is not an HTTP status.
func GETBadStatusHandler() (string, int) { return "nope", 42 }

// GETEmptyHandler returns nothing at all.
func GETEmptyHandler() string { return "" }

// DELETECreateHandler makes Create answer DELETE too.
func DELETECreateHandler() (string, int) { return "", 204 }
