// initpanic panics while it is being opened.
package main

func init() {
	panic("init exploded on purpose")
}

func GETHelloHandler() string { return "unreachable" }
