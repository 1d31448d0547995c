package pgtest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestServerStopsAndRestarts(t *testing.T) {
	s := Start(t)
	dsn := s.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT 1 + 1").Scan(&n); err != nil || n != 2 {
		t.Fatalf("SELECT 1 + 1: %d %v", n, err)
	}

	s.Stop(t)
	if err := conn.Ping(ctx); err == nil {
		t.Error("a stopped server answers")
	}
	s.Restart(t)
	again, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	defer again.Close(ctx)
	if err := again.QueryRow(ctx, "SELECT 1 + 1").Scan(&n); err != nil || n != 2 {
		t.Fatalf("SELECT 1 + 1 after a restart: %d %v", n, err)
	}
}

// Without PostgreSQL, the error says what to install.
func TestMissingBinariesSayWhatToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := binDir(filepath.Join(t.TempDir(), "*", "bin"))
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y postgresql") {
		t.Errorf("binDir without PostgreSQL: %v", err)
	}
	if dir, err := binDir(debianBins); err != nil || !strings.HasPrefix(dir, "/usr/lib/postgresql/") {
		t.Errorf("binDir here: %q %v", dir, err)
	}
}
