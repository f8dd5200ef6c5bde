package main

import (
	"encoding/json"
	"reflect"
	"testing"

	"vigil.dev/vigil/event"
	"vigil.dev/vigil/hook"
	"vigil.dev/vigil/plugin"
)

// TestHookRequestWire checks that the hook's request decodes as the
// agent's: the two packages may not import each other.
func TestHookRequestWire(t *testing.T) {
	in := hook.Request{Op: "register", Container: &hook.Container{ID: "c1", Name: "app", Pod: "web", Namespace: "shop", Image: "nginx"},
		CgroupsPath: "/k8s.io/c1", Annotations: map[string]string{"ebpf-monitor": "true"}}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out plugin.Request
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	want := plugin.Request{Op: "register", Container: &event.Container{ID: "c1", Name: "app", Pod: "web", Namespace: "shop", Image: "nginx"},
		CgroupsPath: "/k8s.io/c1", Annotations: map[string]string{"ebpf-monitor": "true"}}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("agent decodes\n %+v\nwant\n %+v", out, want)
	}
}
