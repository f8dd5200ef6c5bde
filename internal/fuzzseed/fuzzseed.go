// Package fuzzseed writes the seed corpora of vigil's fuzz targets from
// values the tests build (real records, rule files, models, audit
// segments), so that the seeds follow the formats they exercise. A seed is
// a file testdata/fuzz/FuzzXxx/NAME in Go's corpus format; plain 'go test'
// runs every seed, 'go test -fuzz' starts from them.
package fuzzseed

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Env set to "write" makes Update (re)write the seed files.
const Env = "VIGIL_FUZZ_SEEDS"

// Seed is one seed input of a fuzz target: its file name and the values
// of the target's arguments, in order.
type Seed struct {
	Name   string
	Values []any
}

// S is a Seed named name with values.
func S(name string, values ...any) Seed { return Seed{Name: name, Values: values} }

// Update writes target's seeds under testdata/fuzz/target when Env is
// "write"; otherwise it fails t for a seed file that is missing.
func Update(t testing.TB, target string, seeds []Seed) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	write := os.Getenv(Env) == "write"
	for _, s := range seeds {
		path := filepath.Join(dir, s.Name)
		if !write {
			if _, err := os.Stat(path); err != nil {
				t.Errorf("seed %s missing: write the seeds with %s=write go test -run %s", path, Env, t.Name())
			}
			continue
		}
		data, err := Encode(s.Values...)
		if err != nil {
			t.Fatalf("seed %s: %v", path, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Encode renders values in Go's corpus file format ("go test fuzz v1").
func Encode(values ...any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range values {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%t)\n", v)
		case int:
			fmt.Fprintf(&b, "int(%d)\n", v)
		case int64:
			fmt.Fprintf(&b, "int64(%d)\n", v)
		case uint8:
			fmt.Fprintf(&b, "uint8(%d)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		case uint32:
			fmt.Fprintf(&b, "uint32(%d)\n", v)
		case uint64:
			fmt.Fprintf(&b, "uint64(%d)\n", v)
		default:
			return nil, fmt.Errorf("value %v: type %T is not a fuzz argument type this package writes", v, v)
		}
	}
	return b.Bytes(), nil
}
