// panics has a legacy handler that panics and one that does not.
package main

var URLQuery map[string][]string

// GETBoomHandler panics with a message that must not reach the client.
func GETBoomHandler() string {
	panic("secret-internal-detail")
}

// GETOkHandler answers normally.
func GETOkHandler() string { return `{"ok":true}` }
