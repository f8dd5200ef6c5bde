package annotations

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"vigil.dev/vigil/internal/fuzzseed"
)

const seedNode = `forceMonitor:
  namespaces: [prod-*]
  images: ["registry.local/payments/*"]
defaultMode: detect
minMode: detect
seccompFloor: strict
profiles: [web, db]
policies: [default, strict-net]
onInvalid: reject
priority:
  min: 10
  max: 80
  namespaces:
    - match: batch-*
      max: 30
  unmonitored: true
`

func nodeSeeds() []fuzzseed.Seed {
	return []fuzzseed.Seed{
		fuzzseed.S("full", []byte(seedNode)),
		fuzzseed.S("empty", []byte("")),
		fuzzseed.S("warn", []byte("onInvalid: warn\nallowUnconfined: true\n")),
		fuzzseed.S("bad-floor", []byte("seccompFloor: none\n")),
		fuzzseed.S("bad-priority", []byte("priority:\n  min: 90\n  max: 10\n")),
		fuzzseed.S("unknown-field", []byte("forceMonitr: {}\n")),
		fuzzseed.S("not-a-map", []byte("- a\n- b\n")),
	}
}

func parseSeeds() []fuzzseed.Seed {
	return []fuzzseed.Seed{
		fuzzseed.S("monitored", "ebpf-monitor=true\nvigil.dev/seccomp=strict\nvigil.dev/mode=enforce\n", "", "app", "default", "busybox", []byte("")),
		fuzzseed.S("per-container", "ebpf-monitor=true\nvigil.dev/priority/pod=70\n", "vigil.dev/seccomp/container.app=web\nvigil.dev/policy=strict-net\n", "app", "prod-eu", "registry.local/payments/api:1", []byte(seedNode)),
		fuzzseed.S("forced-below-floor", "vigil.dev/seccomp=runtime-default\n", "", "app", "prod-1", "x", []byte(seedNode)),
		fuzzseed.S("bad-values-warn", "ebpf-monitor=yes\nvigil.dev/priority=101\nvigil.dev/mode=off\nvigil.dev/policy=Bad Name\n", "", "", "ns", "img", []byte("onInvalid: warn\n")),
		fuzzseed.S("unmonitored-priority", "vigil.dev/priority= 5 \n", "", "c", "batch-7", "img", []byte(seedNode)),
	}
}

// annotationMap reads "key=value" lines.
func annotationMap(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// FuzzParseNodeConfig: any file parses to a valid configuration or is
// refused with an error; a configuration read back from its own YAML is
// the same.
func FuzzParseNodeConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseNodeConfig(data)
		if err != nil {
			if !reflect.DeepEqual(c, NodeConfig{}) || err.Error() == "" {
				t.Fatalf("error %q with configuration %+v: want a message and the zero configuration", err, c)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed a configuration that does not validate: %v", err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := ParseNodeConfig(out)
		if err != nil {
			t.Fatalf("its own YAML does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalize(back), normalize(c)) {
			t.Fatalf("round trip differs:\n%+v\n%+v", back, c)
		}
	})
}

// normalize makes empty and nil lists equal.
func normalize(c NodeConfig) NodeConfig {
	for _, l := range []*[]string{&c.ForceMonitor.Namespaces, &c.ForceMonitor.Images, &c.Profiles, &c.Policies} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(c.Priority.Namespaces) == 0 {
		c.Priority.Namespaces = nil
	}
	return c
}

// FuzzParse: any annotations give a policy that keeps the contract's
// invariants, or an *Error per bad value naming the key and what is
// allowed; with onInvalid: warn, never an error.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, podAnn, ctrAnn, ctrName, namespace, image string, nodeYAML []byte) {
		node, err := ParseNodeConfig(nodeYAML)
		if err != nil {
			node = NodeConfig{}
		}
		p, err := Parse(annotationMap(podAnn), annotationMap(ctrAnn), ctrName, namespace, image, node)
		if err != nil {
			if node.OnInvalid == OnInvalidWarn {
				t.Fatalf("onInvalid warn, yet an error: %v", err)
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Key == "" || !strings.Contains(err.Error(), "allowed values are") {
				t.Fatalf("error %v: want *Error naming the key and the allowed values", err)
			}
			return
		}
		if p.Priority < 0 || p.Priority > 100 {
			t.Fatalf("priority %d", p.Priority)
		}
		if p.PrioritySet {
			lo, hi := node.PriorityBounds(namespace)
			if p.Priority < lo || p.Priority > hi {
				t.Fatalf("priority %d outside the node's bounds %d..%d", p.Priority, lo, hi)
			}
		}
		if modeRank(p.Mode) < 0 {
			t.Fatalf("mode %q", p.Mode)
		}
		if node.MinMode != "" && modeRank(p.Mode) < modeRank(node.MinMode) {
			t.Fatalf("mode %q below the node's minMode %q", p.Mode, node.MinMode)
		}
		if p.Forced && !p.Monitor {
			t.Fatal("forced but not monitored")
		}
		if p.Monitor && p.Seccomp == "" {
			t.Fatal("monitored without a seccomp profile")
		}
		if p.Seccomp != "" && p.Seccomp != DefaultSeccomp && !slices.Contains(node.SeccompProfiles(), p.Seccomp) {
			t.Fatalf("seccomp %q is not offered by the node (%v)", p.Seccomp, node.SeccompProfiles())
		}
		if p.Seccomp != "" && !meetsFloor(p.Seccomp, p.SeccompFloor) {
			t.Fatalf("seccomp %q below the floor %q", p.Seccomp, p.SeccompFloor)
		}
		if p.PolicyName == "" {
			t.Fatal("no policy name")
		}
	})
}

func TestFuzzSeeds(t *testing.T) {
	fuzzseed.Update(t, "FuzzParseNodeConfig", nodeSeeds())
	fuzzseed.Update(t, "FuzzParse", parseSeeds())
}
