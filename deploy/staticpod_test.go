package deploy_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/deploy"
)

// TestStaticPod: the static pod is the DaemonSet's pod template with no
// service account and /etc/vigil from a host directory holding the
// ConfigMap's files; its manifest decodes strictly as a Pod.
func TestStaticPod(t *testing.T) {
	vals := map[string]any{
		"hostPaths": map[string]any{"run": "/run/vigil-static/"},
		"keeper":    map[string]any{"socket": "/run/vigil-static/keeper.sock"},
		"policies":  map[string]any{"web.yaml": "# a policy\n"},
		"rules":     map[string]any{"extra.yaml": "# rules\n"},
	}
	dir := filepath.Join(t.TempDir(), "etc-vigil")
	sp, err := deploy.RenderStaticPod(vals, dir)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := sp.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(manifest, &pod); err != nil {
		t.Fatalf("%v in:\n%s", err, manifest)
	}
	if pod.Kind != "Pod" || pod.APIVersion != "v1" || pod.Name != "vigil" || pod.Namespace != deploy.Namespace {
		t.Errorf("pod %s %s %s/%s", pod.APIVersion, pod.Kind, pod.Namespace, pod.Name)
	}
	if pod.Spec.ServiceAccountName != "" || pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Errorf("service account %q (token %v): a static pod can have none", pod.Spec.ServiceAccountName, pod.Spec.AutomountServiceAccountToken)
	}

	// Everything else is the DaemonSet's.
	ds := render(t, vals).ds.Spec.Template
	if !reflect.DeepEqual(pod.Spec.Containers, ds.Spec.Containers) || !reflect.DeepEqual(pod.Spec.InitContainers, ds.Spec.InitContainers) ||
		!reflect.DeepEqual(pod.Labels, ds.Labels) || pod.Spec.HostPID != ds.Spec.HostPID {
		t.Error("the static pod's containers, labels or hostPID differ from the DaemonSet's pod template")
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == "config" && (v.HostPath == nil || v.HostPath.Path != dir) {
			t.Errorf("config volume %+v: want host path %s", v.VolumeSource, dir)
		}
		if v.ConfigMap != nil || v.Projected != nil || v.Secret != nil {
			t.Errorf("volume %s refers to an API object", v.Name)
		}
	}

	// The ConfigMap's files, written where the pod mounts them.
	if err := sp.WriteConfig(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"config.yaml", "policies/web.yaml", "rules/extra.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("/etc/vigil/%s: %v", name, err)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "rules/extra.yaml")); string(got) != "# rules\n" {
		t.Errorf("rules/extra.yaml holds %q", got)
	}
	if _, err := annotations.LoadNodeConfig(filepath.Join(dir, "config.yaml")); err != nil {
		t.Errorf("the agent refuses the static pod's config.yaml: %v", err)
	}

	if _, err := deploy.RenderStaticPod(nil, "etc/vigil"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative config directory: %v, want an error asking for an absolute path", err)
	}
}

// TestRunPathShared: the socket directory is mounted at its host path in
// both containers, so the listener path the agent gives the runtime (which
// connects from the host) is the same inside and out; a keeper socket
// outside it is refused, naming both values.
func TestRunPathShared(t *testing.T) {
	o := render(t, map[string]any{
		"hostPaths": map[string]any{"run": "/var/run/vigil-x"},
		"keeper":    map[string]any{"socket": "/var/run/vigil-x/k.sock"},
	})
	spec := o.ds.Spec.Template.Spec
	agent := container(t, spec.Containers, "agent")
	for flag, want := range map[string]string{"control-socket": "/var/run/vigil-x/vigil.sock", "listener": "/var/run/vigil-x/seccomp.sock",
		"notify-keeper": "/var/run/vigil-x/k.sock"} {
		if v, _ := arg(agent.Args, flag); v != want {
			t.Errorf("--%s=%q, want %q", flag, v, want)
		}
	}
	for _, c := range []*corev1.Container{agent, container(t, spec.InitContainers, "notify-keeper")} {
		found := false
		for _, m := range c.VolumeMounts {
			found = found || (m.Name == "run" && m.MountPath == "/var/run/vigil-x")
		}
		if !found {
			t.Errorf("%s: volume run not mounted at its host path /var/run/vigil-x: %+v", c.Name, c.VolumeMounts)
		}
	}

	_, err := deploy.Render(deploy.ChartDir(), "vigil", "vigil-system", map[string]any{"keeper": map[string]any{"socket": "/tmp/k.sock"}})
	if err == nil || !strings.Contains(err.Error(), "keeper.socket") || !strings.Contains(err.Error(), "hostPaths.run") {
		t.Errorf("keeper socket outside hostPaths.run: %v, want an error naming keeper.socket and hostPaths.run", err)
	}
}
