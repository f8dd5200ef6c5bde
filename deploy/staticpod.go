package deploy

import (
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// StaticPod is the chart's DaemonSet pod template as a static pod: a
// manifest for a kubelet's staticPodPath, for a kubelet without an API
// server (or a node that must run the agent before one is reachable).
type StaticPod struct {
	// Pod is the agent's pod.
	Pod *corev1.Pod
	// Files are the ConfigMap's files (config.yaml, policies/NAME,
	// rules/NAME, seccomp/NAME) by their path under ConfigDir, which the
	// pod mounts at /etc/vigil from the host.
	Files map[string]string
	// ConfigDir is the host directory the pod mounts at /etc/vigil.
	ConfigDir string
}

// RenderStaticPod renders the chart with values (release Release in
// Namespace) and turns its DaemonSet's pod template into a static pod.
// What differs from the DaemonSet's pods, since a static pod may refer to
// no API object:
//   - no service account (the agent calls no API and mounts no token);
//   - /etc/vigil is the host directory configDir, holding the files of the
//     ConfigMap (Files), instead of the ConfigMap itself;
//   - the pod's labels and annotations are the template's, its name and
//     namespace the DaemonSet's (kubelet appends the node's name).
//
// Any other volume that refers to an API object is an error.
func RenderStaticPod(values map[string]any, configDir string) (*StaticPod, error) {
	if !path.IsAbs(configDir) {
		return nil, fmt.Errorf("static pod config directory %q: want an absolute host path", configDir)
	}
	out, err := Render(ChartDir(), Release, Namespace, values)
	if err != nil {
		return nil, err
	}
	var ds *appsv1.DaemonSet
	var cm *corev1.ConfigMap
	for _, doc := range docSeparator.Split(out, -1) {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("rendered chart: %w", err)
		}
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 DaemonSet":
			ds = &appsv1.DaemonSet{}
			err = yaml.UnmarshalStrict([]byte(doc), ds)
		case "v1 ConfigMap":
			cm = &corev1.ConfigMap{}
			err = yaml.UnmarshalStrict([]byte(doc), cm)
		}
		if err != nil {
			return nil, fmt.Errorf("rendered %s: %w", head.Kind, err)
		}
	}
	if ds == nil || cm == nil {
		return nil, fmt.Errorf("rendered chart: want a DaemonSet and a ConfigMap")
	}
	tmpl := ds.Spec.Template
	sp := &StaticPod{
		Pod: &corev1.Pod{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: ds.Name, Namespace: ds.Namespace,
				Labels: tmpl.Labels, Annotations: tmpl.Annotations},
			Spec: *tmpl.Spec.DeepCopy(),
		},
		Files:     map[string]string{},
		ConfigDir: configDir,
	}
	spec := &sp.Pod.Spec
	spec.ServiceAccountName = ""
	spec.DeprecatedServiceAccount = ""
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		switch {
		case v.Name == "config" && v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.ConfigMap == nil || src.ConfigMap.Name != cm.Name {
					return nil, fmt.Errorf("volume config: a source other than the ConfigMap %s", cm.Name)
				}
				for _, it := range src.ConfigMap.Items {
					data, ok := cm.Data[it.Key]
					if !ok {
						return nil, fmt.Errorf("volume config: key %q not in the ConfigMap %s", it.Key, cm.Name)
					}
					sp.Files[it.Path] = data
				}
			}
			dir := corev1.HostPathDirectory
			v.VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: configDir, Type: &dir}}
		case v.ConfigMap != nil || v.Secret != nil || v.Projected != nil || v.PersistentVolumeClaim != nil:
			return nil, fmt.Errorf("volume %s refers to an API object: a static pod cannot", v.Name)
		}
	}
	return sp, nil
}

// Manifest is the pod as YAML, for the kubelet's staticPodPath.
func (sp *StaticPod) Manifest() ([]byte, error) {
	b, err := yaml.Marshal(sp.Pod)
	if err != nil {
		return nil, fmt.Errorf("static pod: %w", err)
	}
	return append([]byte("# vigil's agent as a static pod, from deploy/helm/vigil (deploy.RenderStaticPod).\n"), b...), nil
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// WriteConfig writes Files under ConfigDir (directories 0755, files 0644,
// as the ConfigMap volume would show them).
func (sp *StaticPod) WriteConfig() error {
	for _, name := range slices.Sorted(maps.Keys(sp.Files)) {
		p := filepath.Join(sp.ConfigDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("static pod config: %w", err)
		}
		if err := os.WriteFile(p, []byte(sp.Files[name]), 0o644); err != nil {
			return fmt.Errorf("static pod config: %w", err)
		}
	}
	return nil
}
