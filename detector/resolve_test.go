package detector

import (
	"fmt"
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

// TestCleanInPlace: cleanInPlace gives what path.Clean gives, for every
// path of up to 9 bytes of '/', '.' and 'a'.
func TestCleanInPlace(t *testing.T) {
	alpha := []byte{'/', '.', 'a'}
	var b []byte
	for n := 1; n <= 9; n++ {
		idx := make([]int, n)
		for {
			p := make([]byte, n)
			for i, x := range idx {
				p[i] = alpha[x]
			}
			b = append(b[:0], p...)
			if got, want := string(b[:cleanInPlace(b)]), path.Clean(string(p)); got != want {
				t.Fatalf("cleanInPlace(%q) = %q, want %q", p, got, want)
			}
			i := n - 1
			for i >= 0 && idx[i] == len(alpha)-1 {
				idx[i] = 0
				i--
			}
			if i < 0 {
				break
			}
			idx[i]++
		}
	}
}

// TestPathBufViews: the paths a pathBuf made stay as they were while it
// grows, until its reset, and one resolve allocates nothing once its
// memory has grown.
func TestPathBufViews(t *testing.T) {
	var pb pathBuf
	var got, want []string
	for i := 0; i < 200; i++ {
		base, p := "/dev/shm/h13", fmt.Sprintf("./f%d.txt", i)
		if i%3 == 1 {
			p = fmt.Sprintf("d/../f%d.txt", i)
		}
		got = append(got, pb.resolve(base, p))
		want = append(want, path.Clean(base+"/"+p))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("path %d = %q after the buffer grew, want %q", i, got[i], want[i])
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		pb.reset()
		pb.resolve("/dev/shm/h13", "./f1.txt")
		pb.resolve("/dev/shm/h13", "x/../f1.txt")
		pb.resolve("", "/a//b")
	}); n != 0 {
		t.Errorf("%v allocations per resolve", n)
	}
}
