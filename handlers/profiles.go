package handlers

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The server's runtime profiles, for `go tool pprof` and `go tool
// trace`, at profilesPath (an operator route, when Server.Profiles is
// set). They are written here with runtime/pprof rather than served by
// net/http/pprof, whose import registers the same handlers on
// http.DefaultServeMux: a plugin serving that mux would publish them.
const profilesPath = "/_ADMIN/pprof/"

// Profile requests' failures, mapped to statuses in statuses.
var (
	errNoProfile   = errors.New("no such profile")
	errProfiling   = errors.New("a CPU profile or trace is already being taken")
	errProfileTime = errors.New("bad profile duration")
)

// defaultProfileSeconds is the length of a CPU profile or trace whose
// request names none, as net/http/pprof's.
const defaultProfileSeconds = 30

// profiles serves profilesPath: an index of what there is (GET
// profilesPath), a CPU profile (profile?seconds=N), an execution trace
// (trace?seconds=N), and the runtime's named profiles (heap, allocs,
// goroutine, block, mutex, threadcreate), in pprof's format or, with
// debug=N, as text; gc=1 collects garbage before a heap profile.
func (s *Server) profiles(w http.ResponseWriter, r *http.Request) {
	var err error
	switch name := strings.TrimPrefix(r.URL.Path, profilesPath); name {
	case "":
		profileIndex(w)
	case "profile":
		err = timedProfile(w, r, "cpu", pprof.StartCPUProfile, pprof.StopCPUProfile)
	case "trace":
		err = timedProfile(w, r, "trace", trace.Start, trace.Stop)
	default:
		err = namedProfile(w, r, name)
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}

// profileIndex lists the profiles and their paths.
func profileIndex(w http.ResponseWriter) {
	type entry struct {
		Name  string `json:"name"`
		Count int    `json:"count,omitempty"` // samples or records now held
		Path  string `json:"path"`
	}
	list := []entry{
		{Name: "cpu", Path: profilesPath + "profile?seconds=" + strconv.Itoa(defaultProfileSeconds)},
		{Name: "trace", Path: profilesPath + "trace?seconds=5"},
	}
	ps := pprof.Profiles()
	slices.SortFunc(ps, func(a, b *pprof.Profile) int { return strings.Compare(a.Name(), b.Name()) })
	for _, p := range ps {
		list = append(list, entry{Name: p.Name(), Count: p.Count(), Path: profilesPath + p.Name()})
	}
	writeJSON(w, http.StatusOK, struct {
		Profiles []entry `json:"profiles"`
	}{list})
}

// timedProfile runs a profile (start, then stop) for the request's
// seconds, or until the client leaves, writing it to w as it goes. The
// runtime takes one CPU profile and one trace at a time: start fails
// while another runs.
func timedProfile(w http.ResponseWriter, r *http.Request, kind string, start func(io.Writer) error, stop func()) error {
	d, err := profileDuration(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="plugind-%s"`, kind))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if err := start(w); err != nil {
		w.Header().Del("Content-Disposition")
		return fmt.Errorf("%w: %w", errProfiling, err)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
	stop()
	return nil
}

// profileDuration is the seconds a request asks for: a whole number from
// 1 up to, not including, the server's write timeout, past which the
// connection would be cut before the profile is written.
func profileDuration(r *http.Request) (time.Duration, error) {
	secs := defaultProfileSeconds
	if v := r.URL.Query().Get("seconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("%w: seconds=%q; want a whole number of seconds, at least 1", errProfileTime, v)
		}
		secs = n
	}
	d := time.Duration(secs) * time.Second
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && srv.WriteTimeout > 0 && d >= srv.WriteTimeout {
		return 0, fmt.Errorf("%w: %d s is not shorter than the server's write timeout (http.writetimeout, %s)", errProfileTime, secs, srv.WriteTimeout)
	}
	return d, nil
}

// namedProfile writes one of the runtime's named profiles.
func namedProfile(w http.ResponseWriter, r *http.Request, name string) error {
	p := pprof.Lookup(name)
	if p == nil {
		return fmt.Errorf("%w: %q (see %s)", errNoProfile, name, profilesPath)
	}
	q := r.URL.Query()
	debug, _ := strconv.Atoi(q.Get("debug"))
	if name == "heap" && q.Get("gc") == "1" {
		runtime.GC()
	}
	if debug > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="plugind-%s"`, name))
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_ = p.WriteTo(w, debug) // the status is out: a failure here is the client's leaving
	return nil
}
