// inithang never finishes opening.
package main

import "time"

func init() {
	for {
		time.Sleep(time.Hour)
	}
}

func GETHelloHandler() string { return "unreachable" }
