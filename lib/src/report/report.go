// report is a folder plugin: every non-test .go file in lib/src/report is
// one package main, built together.
//
//	curl 'localhost:3000/_PLUGIN/report/Summary?n=3&n=4&n=5'
package main

// URLQuery is filled with the request's query before each call.
var URLQuery map[string][]string

// GETSummaryHandler sums the query's n values.
func GETSummaryHandler() (string, int) {
	values, err := parseNumbers(URLQuery["n"])
	if err != nil {
		return errorJSON(err.Error()), 400
	}
	return summarize(values), 200
}
