package event

import (
	"strings"
	"testing"
)

func TestPrintable(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"clean", "nginx: worker", "nginx: worker"},
		{"empty", "", ""},
		{"utf8 kept", "café ☕ /tmp/ü", "café ☕ /tmp/ü"},
		{"backslash kept", `a\nb`, `a\nb`},
		{"forged line", "x\n12:00:00.000000 init[1/1] fake", `x\n12:00:00.000000 init[1/1] fake`},
		{"carriage return and tab", "a\rb\tc", `a\rb\tc`},
		{"terminal escape", "unix:/run/\x1b[2Jx.sock", `unix:/run/\x1b[2Jx.sock`},
		{"nul and del", "a\x00b\x7f", `a\x00b\x7f`},
		{"c1 csi", "a\u009b2Jb", `a\u009b2Jb`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"bidi override", "evil\u202eexe.txt", `evil\u202eexe.txt`},
		{"invalid utf8", "a\xffb\xc3", `a\xffb\xc3`},
		{"replacement char kept", "a\uFFFDb", "a\uFFFDb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Printable(tc.in)
			if got != tc.want {
				t.Fatalf("Printable(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if app := string(AppendPrintable([]byte("p:"), tc.in)); app != "p:"+tc.want {
				t.Fatalf("AppendPrintable(%q) = %q, want %q", tc.in, app, "p:"+tc.want)
			}
			if strings.ContainsAny(got, "\n\r\x1b") {
				t.Fatalf("Printable(%q) = %q still holds a line break or escape", tc.in, got)
			}
		})
	}
}

func TestPrintableAllocations(t *testing.T) {
	s := "nginx: worker process /var/lib/café"
	buf := make([]byte, 0, 128)
	if n := testing.AllocsPerRun(100, func() { _ = Printable(s) }); n != 0 {
		t.Fatalf("Printable of a clean string allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { buf = AppendPrintable(buf[:0], "a\nb\x1b[2J") }); n != 0 {
		t.Fatalf("AppendPrintable into a large enough buffer allocates %v times", n)
	}
}
