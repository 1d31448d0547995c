package main

import (
	"encoding/json"
	"strconv"
)

type summary struct {
	Count int     `json:"count"`
	Sum   float64 `json:"sum"`
	Mean  float64 `json:"mean"`
}

func parseNumbers(raw []string) ([]float64, error) {
	values := make([]float64, 0, len(raw))
	for _, s := range raw {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		values = append(values, v)
	}
	return values, nil
}

func summarize(values []float64) string {
	var s summary
	for _, v := range values {
		s.Sum += v
	}
	s.Count = len(values)
	if s.Count > 0 {
		s.Mean = s.Sum / float64(s.Count)
	}
	out, _ := json.Marshal(s)
	return string(out)
}

func errorJSON(msg string) string {
	out, _ := json.Marshal(map[string]string{"error": msg})
	return string(out)
}
