package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
)

// gateDrop is how far a ratio may fall below its baseline before the
// gate warns: 5%.
const gateDrop = 0.05

// baseline is the checked-in file of ratios the gate compares with. Only
// ratios: absolute figures depend on the machine and its load, ratios
// from alternated rounds much less.
type baseline struct {
	Note   string             `json:"note"`
	Ratios map[string]float64 `json:"ratios"`
}

// gate compares got with the baseline at path and prints a warning for
// each ratio that fell more than gateDrop below it, and the ratios the
// baseline lacks. With write, it writes got as the new baseline instead.
// It returns how many ratios dropped; warnings do not fail the run.
func gate(w io.Writer, path string, got map[string]float64, write bool) (int, error) {
	if write {
		b, err := json.MarshalIndent(baseline{
			Note:   "Ratios from `make bench` (loadrun), each the median of the rounds' own ratios in one run. Update with: go run ./internal/cmd/loadrun -write-baseline",
			Ratios: got,
		}, "", "  ")
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			return 0, fmt.Errorf("write baseline: %w", err)
		}
		fmt.Fprintf(w, "\nbaseline: wrote %d ratios to %s\n", len(got), path)
		return 0, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(w, "\nbaseline: %s does not exist; no comparison (write one with -write-baseline)\n", path)
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read baseline: %w", err)
	}
	var base baseline
	if err := json.Unmarshal(data, &base); err != nil {
		return 0, fmt.Errorf("baseline %s: %w", path, err)
	}
	fmt.Fprintf(w, "\nbaseline %s (warns below -%.0f%%):\n", path, gateDrop*100)
	dropped := 0
	for _, label := range slices.Sorted(maps.Keys(got)) {
		v := got[label]
		b, ok := base.Ratios[label]
		switch {
		case !ok:
			fmt.Fprintf(w, "  %s = %.3f: not in the baseline\n", label, v)
		case v < b*(1-gateDrop):
			dropped++
			fmt.Fprintf(w, "  WARNING: %s = %.3f, %.1f%% below the baseline's %.3f\n", label, v, 100*(1-v/b), b)
		default:
			fmt.Fprintf(w, "  ok: %s = %.3f (baseline %.3f, %+.1f%%)\n", label, v, b, 100*(v/b-1))
		}
	}
	return dropped, nil
}
