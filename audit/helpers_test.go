package audit

import (
	"path/filepath"
	"testing"
)

// testOptions are quick options in a temp dir with a temp key.
func testOptions(t testing.TB) Options {
	t.Helper()
	d := t.TempDir()
	return Options{Dir: filepath.Join(d, "log"), KeyFile: filepath.Join(d, "node.key"), Fsync: FsyncNever,
		Logf: func(format string, args ...any) { t.Logf(format, args...) }}
}

// readAll reads back every record of a log.
func readAll(t testing.TB, dir string) []*Record {
	t.Helper()
	var out []*Record
	if err := Scan(dir, nil, func(r *Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}
