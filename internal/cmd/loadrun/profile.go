package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/plugind/plugind/internal/layerprof"
	"github.com/plugind/plugind/internal/stats"
)

const (
	// profileMax bounds the CPU profile's length (-duration, at most).
	profileMax = 10 * time.Second
	// profileLead is how long wrk runs before the profile starts and
	// after it ends: the profile sees steady load only.
	profileLead = time.Second
)

// profileRun takes a CPU profile of server s (/_ADMIN/pprof/profile)
// while wrk sends it path, and prints each layer's share of the
// server's CPU under load (internal/layerprof: benchtable's layers,
// net/http's reading and writing, the plugin's own code, the runtime),
// and what each share is of the server's CPU per request, cpu: phase
// 1's median, against plain+work's, ref (0: not read).
func profileRun(ctx context.Context, wrk string, o options, s *server, path string, cpu, ref time.Duration) error {
	secs := min(o.duration, profileMax)
	fmt.Printf("\nwhere %s's CPU goes under load: a %s CPU profile while wrk sends %s (%d connections)\n", s.name, secs, path, o.conns)
	load := o
	load.duration = secs + 2*profileLead
	done := make(chan error, 1)
	go func() {
		r, err := runWrk(ctx, wrk, load, o.conns, s.target(s.name, path))
		if err == nil && r.errs != "" {
			err = fmt.Errorf("%w: %s", errRunErrors, r.errs)
		}
		done <- err
	}()
	prof := filepath.Join(filepath.Dir(s.logPath), "cpu.pprof")
	err := fetchProfile(ctx, s.URL("/_ADMIN/pprof/profile?seconds="+strconv.Itoa(int(secs/time.Second))), s.header, prof)
	if werr := <-done; werr != nil {
		return fmt.Errorf("profile run, wrk: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("profile run: %w", err)
	}
	traces, err := layerprof.Traces(ctx, "", prof)
	if err != nil {
		return err
	}
	shares, err := layerprof.Attribute(traces, layerprof.Server())
	if err != nil {
		return fmt.Errorf("%s's profile: %w", s.name, err)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "layer\tCPU share\tper request\t")
	for _, layer := range layerprof.Sorted(shares) {
		per := "-"
		if cpu > 0 {
			per = cpuText(time.Duration(float64(cpu) * shares[layer] / 100))
		}
		fmt.Fprintf(tw, "%s\t%.1f%%\t%s\t\n", layer, shares[layer], per)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if cpu > 0 && ref > 0 {
		fmt.Printf("%s's CPU per request = %s, plain+work's %s: %.2fx (medians of phase 1's runs)\n", s.name, cpuText(cpu), cpuText(ref), float64(cpu)/float64(ref))
	}
	return nil
}

// fetchProfile waits profileLead, then GETs url (with header, "" for
// none) into file.
func fetchProfile(ctx context.Context, url, header, file string) error {
	select {
	case <-time.After(profileLead):
	case <-ctx.Done():
		return ctx.Err()
	}
	body, _, err := get(ctx, url, header)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return os.WriteFile(file, body, 0o644)
}

// medianCPU is the median CPU per request of target's runs in results,
// 0 if none was read.
func medianCPU(results []result, target string) time.Duration {
	var cpus []time.Duration
	for _, r := range results {
		if r.target == target && r.cpu > 0 {
			cpus = append(cpus, r.cpu)
		}
	}
	if len(cpus) == 0 {
		return 0
	}
	return stats.Median(cpus)
}
