//go:build unix

package plugintest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// KeptBuild runs go build in dir with args (flags and packages or
// files; no -o) and env added to the environment, into a file named out
// in a directory of the shared test cache named for dir, args and env,
// and returns the file's path. The go command skips the link when the
// file there is up to date (its build ID says so), as it is from the
// second run on: a link under -race takes seconds. A lock on the
// directory keeps two test processes from writing it at once. Tests
// must not change the file; one a test changes or must own is a copy.
func KeptBuild(t testing.TB, dir, out string, env []string, args ...string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(strings.Join(append(append([]string{dir, out}, args...), env...), "\x00")))
	kept := filepath.Join(CacheDir(), "bin", hex.EncodeToString(sum[:12]))
	if err := os.MkdirAll(kept, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(kept, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close() // and with it the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(kept, out)
	cmd := exec.Command("go", append([]string{"build", "-o", path}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return path
}
