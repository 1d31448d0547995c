// report is a folder plugin of several files.
package main

var URLQuery map[string][]string

// GETSummaryHandler counts the query's n values.
func GETSummaryHandler() (string, int) {
	return summary(URLQuery["n"]), 200
}
