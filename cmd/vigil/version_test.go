package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"

	"vigil.dev/vigil/agent"
)

func TestBuildOf(t *testing.T) {
	vcs := &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "c0ffee"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tc := range []struct {
		name            string
		bi              *debug.BuildInfo
		version, commit string
		want            agent.BuildInfo
	}{
		{"module and vcs", vcs, "", "", agent.BuildInfo{Version: "v0.3.0", Commit: "c0ffee", Modified: true}},
		{"link time wins", vcs, "v0.4.0-2-gabc", "abc123", agent.BuildInfo{Version: "v0.4.0-2-gabc", Commit: "abc123", Modified: true}},
		{"dirty describe", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "v0.4.0-dirty", "abc", agent.BuildInfo{Version: "v0.4.0-dirty", Commit: "abc", Modified: true}},
		{"nothing known", &debug.BuildInfo{}, "", "", agent.BuildInfo{Version: "(devel)"}},
		{"no build info", nil, "", "", agent.BuildInfo{Version: "(devel)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := buildOf(tc.bi, tc.version, tc.commit); got != tc.want {
				t.Errorf("buildOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPrintVersion(t *testing.T) {
	var b bytes.Buffer
	printVersion(&b, agent.BuildInfo{Version: "v1.0.0", Commit: "abc", Modified: true})
	out := b.String()
	for _, want := range []string{"vigil v1.0.0\n", "commit abc (modified)\n", "go go1."} {
		if !strings.Contains(out, want) {
			t.Errorf("version output %q lacks %q", out, want)
		}
	}
	if status := runVersion(nil); status != 0 {
		t.Errorf("vigil version: status %d", status)
	}
	if status := runVersion([]string{"extra"}); status == 0 {
		t.Error("vigil version extra: status 0")
	}
}
