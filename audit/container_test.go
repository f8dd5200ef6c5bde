package audit

import (
	"testing"

	"vigil.dev/vigil/event"
)

// TestContainerKubernetesFields: an event's container may carry the pod's
// uid and labels and the node; the event record keeps its five fields
// (id, name, pod, namespace, image) and the log reads back and verifies.
func TestContainerKubernetesFields(t *testing.T) {
	o := testOptions(t)
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	a := &event.Container{ID: "c1", Name: "app", Pod: "web", Namespace: "shop", Image: "nginx",
		PodUID: "0b5f", PodLabels: map[string]string{"app": "web"}, Node: "n1"}
	b := &event.Container{ID: "c1", Name: "app", Pod: "web", Namespace: "shop", Image: "nginx",
		PodUID: "0b5f", PodLabels: map[string]string{"app": "web", "tier": "front"}, Node: "n1"}
	for i, c := range []*event.Container{a, b, a, nil, b} {
		ev := &event.Event{Seq: uint64(i + 1), CgroupID: 7, PID: 1, TID: 1, Comm: "sh", Nr: 1, Container: c}
		if err := w.AppendEvent(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := event.Container{ID: "c1", Name: "app", Pod: "web", Namespace: "shop", Image: "nginx"}
	recs := readAll(t, o.Dir)
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5", len(recs))
	}
	for i, r := range recs {
		c := r.Event.Container
		if i == 3 {
			if c != nil {
				t.Errorf("event %d: container %+v, want none", i, c)
			}
			continue
		}
		if c == nil || c.ID != want.ID || c.Name != want.Name || c.Pod != want.Pod || c.Namespace != want.Namespace ||
			c.Image != want.Image || c.PodUID != "" || c.PodLabels != nil || c.Node != "" {
			t.Errorf("event %d: container %+v, want %+v", i, c, want)
		}
	}
	if _, err := Verify(o.Dir, o.KeyFile); err != nil {
		t.Fatal(err)
	}
}
