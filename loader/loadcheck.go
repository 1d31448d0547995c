package loader

import (
	"errors"
	"io"
	"os"
	"strings"

	"github.com/plugind/plugind/build"
)

// LoadCheckCommand is the hidden subcommand under which the server's own
// binary opens one artifact and exits: see LoadCheckMain and
// build.ExecLoadCheck.
const LoadCheckCommand = build.LoadCheckCommand

// LoadCheckMain opens the artifact at path, checks its globals, and
// returns the exit code: 0 if it loaded cleanly. A panicking init never
// returns here: the runtime prints it and exits.
func LoadCheckMain(path string, stderr io.Writer) int {
	if _, err := openArtifact("", path); err != nil {
		// What went wrong alone, in the words the server would use
		// (Msg has no path): the parent names the plugin.
		msg := err.Error()
		if e, ok := errors.AsType[*Error](err); ok {
			msg = strings.TrimPrefix(e.Msg, `plugin "": `)
			if errors.Is(err, ErrOpen) && e.Err != nil {
				// Go's refusal as Go says it: the server's account of
				// a package version it loaded before is not the child's.
				msg = openFailure(e.Err, path)
			}
		}
		build.WriteLoadCheckFailure(stderr, msg)
		return 1
	}
	return 0
}

// LoadCheckArgs reports whether args (os.Args[1:]) ask for a load check,
// and for which artifact. Test binaries call it from TestMain.
func LoadCheckArgs(args []string) (path string, ok bool) {
	if len(args) == 2 && args[0] == LoadCheckCommand {
		return args[1], true
	}
	return "", false
}

// RunLoadCheckIfAsked runs LoadCheckMain and exits when the process was
// started as a load check. For the TestMain of packages whose tests start
// servers.
func RunLoadCheckIfAsked() {
	if path, ok := LoadCheckArgs(os.Args[1:]); ok {
		os.Exit(LoadCheckMain(path, os.Stderr))
	}
}
