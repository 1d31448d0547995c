// meet is a prestd-ABI plugin for [plugin.NAME] copies: each copy of it
// is a package of its own, with globals of its own, and says which copy
// answered (the address of its package variable inits) and what it was
// given.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/plugind/plugind/sdk"
)

var (
	HTTPVars map[string]string
	URLQuery map[string][]string
	Settings map[string]any
)

const version = "one"

// inits counts this copy's Init calls; its address names the copy.
var inits int

// closelog is Settings["closelog"], read by Init: Close may run while a
// last call writes to Settings.
var closelog string

func self() string { return fmt.Sprintf("%p", &inits) }

// Init counts, and with a bus registers a listener of meet.ping and the
// query meet.who.
func Init(ctx context.Context) error {
	inits++
	closelog, _ = Settings["closelog"].(string)
	err := sdk.Subscribe(ctx, "meet.ping", func(context.Context, string) error { return nil })
	if err == nil {
		err = sdk.HandleQuery(ctx, "meet.who", func(context.Context, string) (string, error) { return self(), nil })
	}
	if errors.Is(err, sdk.ErrNoBus) {
		return nil
	}
	return err
}

// Close appends the copy's name to the file Settings["closelog"] names.
func Close(context.Context) error {
	if closelog == "" {
		return nil
	}
	f, err := os.OpenFile(closelog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, self())
	return err
}

// GETMeetHandler answers which copy ran it and what it was given, and
// notes that in its Settings map. With ?at=URL it first GETs URL, the
// test's barrier, which answers once enough calls have arrived: calls
// held there overlap, and each reads its globals (and its note) after
// the others set theirs.
func GETMeetHandler() string {
	given := HTTPVars["n"]
	if Settings != nil {
		Settings["last"] = given
	}
	if at := URLQuery["at"]; len(at) > 0 {
		resp, err := http.Get(at[0])
		if err != nil {
			return fmt.Sprintf("barrier: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("barrier: %s", resp.Status)
		}
	}
	out, _ := json.Marshal(map[string]any{
		"copy": self(), "inits": inits, "version": version, "greeting": Settings["greeting"],
		"given": given, "var": HTTPVars["n"], "query": URLQuery["n"], "last": Settings["last"],
	})
	return string(out)
}
