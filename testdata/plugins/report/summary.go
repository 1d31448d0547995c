package main

import (
	"encoding/json"
	"strings"
)

func summary(n []string) string {
	out, _ := json.Marshal(map[string]any{"count": len(n), "joined": strings.Join(n, "+")})
	return string(out)
}
