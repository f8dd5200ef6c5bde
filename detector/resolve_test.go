package detector

import (
	"math/rand/v2"
	"path"
	"testing"
)

// TestResolveIsClean: resolve's shortcut for a clean relative path under a
// clean directory gives what path.Clean gives, for every combination of
// elements that need cleaning.
func TestResolveIsClean(t *testing.T) {
	elems := []string{"a", "bc", ".", "..", "", ".hidden", "..x", "x..", "f1.txt"}
	bases := []string{"/", "/tmp", "/dev/shm/x", "/a/../b", "/a/", "//a", "/a/."}
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 200_000; i++ {
		n := 1 + r.IntN(4)
		p := ""
		for j := 0; j < n; j++ {
			if j > 0 {
				p += "/"
			}
			p += elems[r.IntN(len(elems))]
		}
		if r.IntN(8) == 0 {
			p += "/"
		}
		if p == "" || p[0] == '/' {
			continue
		}
		base := bases[r.IntN(len(bases))]
		if got, want := resolve(base, p), path.Clean(base+"/"+p); got != want {
			t.Fatalf("resolve(%q, %q) = %q, want %q", base, p, got, want)
		}
	}
}
