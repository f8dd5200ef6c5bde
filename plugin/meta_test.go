package plugin

import (
	"reflect"
	"testing"

	"github.com/containerd/nri/pkg/api"

	"vigil.dev/vigil/event"
)

// TestContainerMetaKubernetes: the pod's uid and labels (without those
// the CRI adds to every sandbox), the node's name from NODE_NAME and the
// owner its name and labels tell.
func TestContainerMetaKubernetes(t *testing.T) {
	t.Setenv("NODE_NAME", "node-7")
	pod := &api.PodSandbox{Id: "pod1", Name: "web-6f7d9c-x8k2p", Namespace: "shop", Uid: "5e0c-11",
		Labels: map[string]string{"app": "web", "pod-template-hash": "6f7d9c", "io.kubernetes.pod.name": "web-6f7d9c-x8k2p",
			"io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.uid": "5e0c-11", "io.cri-containerd.kind": "sandbox"},
		Annotations: map[string]string{"kubernetes.io/config.source": "api"}}
	ctr := &api.Container{Id: "c1", Name: "app", Image: &api.Image{Name: "nginx:1"}}
	got := containerMeta(pod, ctr)
	want := event.Container{ID: "c1", Name: "app", Pod: "web-6f7d9c-x8k2p", Namespace: "shop", Image: "nginx:1",
		PodUID: "5e0c-11", PodLabels: map[string]string{"app": "web", "pod-template-hash": "6f7d9c"}, Node: "node-7",
		OwnerKind: "Deployment", OwnerName: "web"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("meta %+v, want %+v", got, want)
	}
	pod.Labels["app"] = "changed"
	if got.PodLabels["app"] != "web" {
		t.Error("labels share the request's map")
	}
	// A pod with only the CRI's labels has none; no NODE_NAME: the host name.
	t.Setenv("NODE_NAME", "")
	got = containerMeta(&api.PodSandbox{Labels: map[string]string{"io.kubernetes.pod.name": "web"}}, ctr)
	if got.PodLabels != nil || got.Node == "" {
		t.Errorf("meta %+v: want no labels and the host name", got)
	}
}
