// sdkuser reads everything the sdk offers, with the standard ABI.
package main

import (
	"encoding/json"
	"net/http"

	"github.com/plugind/plugind/sdk"
)

// GETEnvHandler reports what the sdk says about this plugin and request;
// it says whether the secret is set, never what it is.
func GETEnvHandler(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	settings := sdk.Settings(ctx)
	_, hasToken := sdk.Secret(ctx, "token")
	sdk.Logger(ctx).Info().Str("greeting", settings.String("greeting", "")).Msg("env served")
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"plugin":     sdk.Plugin(ctx),
		"request_id": sdk.RequestID(ctx),
		"vars":       sdk.Vars(ctx),
		"greeting":   settings.String("greeting", "none"),
		"retries":    settings.Int("retries", -1),
		"has_token":  hasToken,
	})
}

// GETLeakHandler fails with the secret in its panic: it must reach
// neither the client nor the log.
func GETLeakHandler(w http.ResponseWriter, r *http.Request) {
	token, _ := sdk.Secret(r.Context(), "token")
	_ = token
	panic("something went wrong")
}
