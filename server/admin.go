package server

import (
	"github.com/plugind/plugind/admin"
	"github.com/plugind/plugind/handlers"
	"github.com/plugind/plugind/internal/reqstats"
	"github.com/plugind/plugind/loader"
)

// adminState is what the operator page needs beyond the server's parts:
// the plugins' build history and their recent requests. Both are nil
// unless admin.enabled.
type adminState struct {
	history *admin.History
	stats   *reqstats.Recorder
}

// newAdminState prepares the page's records, before the loader exists so
// that they see its first events.
func (s *Server) newAdminState() {
	if s.cfg.Admin.Enabled {
		s.admin = adminState{history: admin.NewHistory(s.cfg.SrcDir()), stats: reqstats.New(nil)}
	}
}

// adminEvent records a loader event for the page.
func (s *Server) adminEvent(ev loader.Event) {
	if s.admin.history != nil {
		s.admin.history.Observe(ev)
	}
}

// mountAdmin serves the page from h, and has h record plugin requests.
func (s *Server) mountAdmin(h *handlers.Server) {
	if !s.cfg.Admin.Enabled {
		return
	}
	h.RequestStats = s.admin.stats
	h.Admin = admin.New(admin.Options{
		Plugins: s.loader,
		History: s.admin.history,
		Stats:   s.admin.stats,
		Events:  s.streams, // bus.maxstreams counts these and /_EVENTS together
		Tasks:   s.tasks,
		APIKey:  len(s.cfg.Auth.APIKeys) > 0,
		Log:     s.log.With().Str("component", "admin").Logger(),
	})
}
