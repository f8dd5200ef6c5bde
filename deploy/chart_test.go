package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/deploy"
)

// variants are the value sets every test renders: the defaults and each
// switch of values.yaml turned.
var variants = map[string]map[string]any{
	"defaults":     nil,
	"capabilities": {"securityContext": map[string]any{"privileged": false}},
	"everything": {
		"serviceMonitor":  map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}},
		"keeper":          map[string]any{"nativeSidecar": false},
		"policies":        map[string]any{"web.yaml": "# a policy\n"},
		"rules":           map[string]any{"extra.yaml": "# rules\n"},
		"seccompProfiles": map[string]any{"tight.json": "{}\n"},
		"agent": map[string]any{"allowedResolvers": []any{"10.96.0.10"}, "extraArgs": []any{"--no-detect"},
			"events": "-", "extraEnv": []any{map[string]any{"name": "X", "value": "1"}}},
		"readinessProbe": map[string]any{"path": "/readyz"},
		"podAnnotations": map[string]any{"a": "b"},
		"hostNetwork":    true,
		"dnsPolicy":      "ClusterFirstWithHostNet",
	},
	"no-keeper": {"keeper": map[string]any{"enabled": false}},
}

func TestLint(t *testing.T) {
	for name, vals := range variants {
		t.Run(name, func(t *testing.T) {
			if err := deploy.Lint(deploy.ChartDir(), vals); err != nil {
				t.Error(err)
			}
		})
	}
}

// objects are the rendered objects, decoded strictly.
type objects struct {
	ds        *appsv1.DaemonSet
	cm        *corev1.ConfigMap
	sa        *corev1.ServiceAccount
	svc       *corev1.Service
	sm        *monitoringv1.ServiceMonitor
	ns        *corev1.Namespace
	kindsSeen []string
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decode splits a manifest into documents and decodes each into its typed
// Kubernetes object, rejecting unknown and duplicate fields: the schema
// check.
func decode(t *testing.T, manifest string) *objects {
	t.Helper()
	o := &objects{}
	for _, doc := range docSep.Split(manifest, -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("%v in:\n%s", err, doc)
		}
		var into any
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 DaemonSet":
			o.ds = &appsv1.DaemonSet{}
			into = o.ds
		case "v1 ConfigMap":
			o.cm = &corev1.ConfigMap{}
			into = o.cm
		case "v1 ServiceAccount":
			o.sa = &corev1.ServiceAccount{}
			into = o.sa
		case "v1 Service":
			o.svc = &corev1.Service{}
			into = o.svc
		case "v1 Namespace":
			o.ns = &corev1.Namespace{}
			into = o.ns
		case "monitoring.coreos.com/v1 ServiceMonitor":
			o.sm = &monitoringv1.ServiceMonitor{}
			into = o.sm
		default:
			t.Fatalf("unexpected object %s %s:\n%s", head.APIVersion, head.Kind, doc)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			t.Fatalf("%s: %v in:\n%s", head.Kind, err, doc)
		}
		o.kindsSeen = append(o.kindsSeen, head.Kind)
	}
	return o
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func render(t *testing.T, vals map[string]any) *objects {
	t.Helper()
	out, err := deploy.Render(deploy.ChartDir(), "vigil", "vigil-system", vals)
	if err != nil {
		t.Fatal(err)
	}
	o := decode(t, out)
	if o.ds == nil || o.cm == nil {
		t.Fatalf("rendered %v: want a DaemonSet and a ConfigMap", o.kindsSeen)
	}
	checkConsistent(t, o)
	return o
}

// checkConsistent checks what strict decoding cannot: references between
// the objects.
func checkConsistent(t *testing.T, o *objects) {
	t.Helper()
	spec := o.ds.Spec.Template.Spec
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	names := map[string]bool{}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		if names[c.Name] {
			t.Errorf("container %q twice", c.Name)
		}
		names[c.Name] = true
		for _, m := range c.VolumeMounts {
			if _, ok := vols[m.Name]; !ok {
				t.Errorf("container %s mounts volume %q, which is not in the pod", c.Name, m.Name)
			}
		}
	}
	for k := range o.cm.Data {
		if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
			t.Errorf("ConfigMap key %q: %v", k, errs)
		}
	}
	for _, src := range vols["config"].Projected.Sources {
		if src.ConfigMap.Name != o.cm.Name {
			t.Errorf("config volume names ConfigMap %q, the chart renders %q", src.ConfigMap.Name, o.cm.Name)
		}
		for _, it := range src.ConfigMap.Items {
			if _, ok := o.cm.Data[it.Key]; !ok {
				t.Errorf("config volume item %q: no such key in the ConfigMap", it.Key)
			}
		}
	}
	sel := o.ds.Spec.Selector.MatchLabels
	for k, v := range sel {
		if o.ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not select the pod template (%v)", k, v, o.ds.Spec.Template.Labels)
		}
	}
	if o.svc != nil {
		for k, v := range o.svc.Spec.Selector {
			if o.ds.Spec.Template.Labels[k] != v {
				t.Errorf("service selector %s=%s does not select the pods", k, v)
			}
		}
	}
	if o.sm != nil && (o.svc == nil || o.sm.Spec.Endpoints[0].Port != o.svc.Spec.Ports[0].Name) {
		t.Error("the ServiceMonitor's endpoint port is not the metrics Service's port")
	}
}

func TestRenderStrict(t *testing.T) {
	for name, vals := range variants {
		t.Run(name, func(t *testing.T) { render(t, vals) })
	}
}

func container(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// arg is the value of --name=VALUE in args.
func arg(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestDaemonSet(t *testing.T) {
	o := render(t, nil)
	spec := o.ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("hostPID is off")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the service account token is mounted; the agent calls no API")
	}
	agent := container(t, spec.Containers, "agent")
	if sc := agent.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged || *sc.RunAsUser != 0 {
		t.Errorf("agent security context %+v: want privileged, uid 0", sc)
	}
	if !strings.HasPrefix(agent.Image, "localhost/vigil:") {
		t.Errorf("image %q: want the local name localhost/vigil:TAG", agent.Image)
	}
	if len(agent.Command) != 1 || agent.Command[0] != "/usr/bin/vigil" || agent.Args[0] != "agent" {
		t.Errorf("agent runs %v %v", agent.Command, agent.Args)
	}

	// The mounts, at the paths the agent uses by default.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range agent.VolumeMounts {
		mounts[m.MountPath] = m
	}
	hostPath := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPath[v.Name] = v.HostPath.Path
		}
	}
	for path, want := range map[string]struct {
		host     string
		readOnly bool
	}{
		"/sys/fs/bpf":     {"/sys/fs/bpf", false},
		"/sys/kernel/btf": {"/sys/kernel/btf", true},
		"/sys/fs/cgroup":  {"/sys/fs/cgroup", false},
		"/var/run/nri":    {"/var/run/nri", false},
		"/run/vigil":      {"/run/vigil", false},
		"/var/lib/vigil":  {"/var/lib/vigil", false},
		"/etc/vigil":      {"", true},
	} {
		m, ok := mounts[path]
		if !ok {
			t.Errorf("no mount at %s", path)
			continue
		}
		if m.ReadOnly != want.readOnly {
			t.Errorf("mount %s: read-only %v, want %v", path, m.ReadOnly, want.readOnly)
		}
		if want.host != "" && hostPath[m.Name] != want.host {
			t.Errorf("mount %s: host path %q, want %q", path, hostPath[m.Name], want.host)
		}
	}
	if p := mounts["/sys/fs/bpf"].MountPropagation; p == nil || *p != corev1.MountPropagationBidirectional {
		t.Errorf("bpffs propagation %v: privileged, the agent may mount bpffs for the host", p)
	}

	// Probes on the metrics port, which the agent listens on.
	var port corev1.ContainerPort
	for _, p := range agent.Ports {
		if p.Name == "metrics" {
			port = p
		}
	}
	addr, _ := arg(agent.Args, "metrics-addr")
	if port.ContainerPort == 0 || !strings.HasSuffix(addr, fmt.Sprintf(":%d", port.ContainerPort)) {
		t.Errorf("metrics port %+v, --metrics-addr=%s", port, addr)
	}
	for name, want := range map[string]string{"liveness": "/healthz", "readiness": "/readyz"} {
		p := agent.LivenessProbe
		if name == "readiness" {
			p = agent.ReadinessProbe
		}
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe %+v: want GET %s on port metrics", name, p, want)
		}
	}

	// The keeper: its own container (a native sidecar), `vigil agent` with
	// VIGIL_NOTIFY_KEEPER at the socket the agent is told, sharing /run/vigil.
	keeper := container(t, spec.InitContainers, "notify-keeper")
	if keeper.RestartPolicy == nil || *keeper.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the keeper is not a native sidecar (restartPolicy Always)")
	}
	var env string
	for _, e := range keeper.Env {
		if e.Name == "VIGIL_NOTIFY_KEEPER" {
			env = e.Value
		}
	}
	sock, _ := arg(agent.Args, "notify-keeper")
	if env == "" || env != sock || !strings.HasPrefix(sock, "/run/vigil/") {
		t.Errorf("keeper VIGIL_NOTIFY_KEEPER=%q, agent --notify-keeper=%q: want the same socket under /run/vigil", env, sock)
	}
	if w, ok := arg(agent.Args, "notify-keeper-wait"); !ok || w != "30s" {
		t.Errorf("agent --notify-keeper-wait=%q (given: %v): want 30s, so an agent that starts before its keeper sidecar waits for it", w, ok)
	}
	if keeper.Args[0] != "agent" || len(keeper.VolumeMounts) != 1 || keeper.VolumeMounts[0].Name != mounts["/run/vigil"].Name {
		t.Errorf("keeper %v %v mounts %+v: want `vigil agent` sharing /run/vigil", keeper.Command, keeper.Args, keeper.VolumeMounts)
	}
	if c := keeper.SecurityContext.Capabilities; c == nil || len(c.Add) != 0 || !slices.Contains(c.Drop, "ALL") {
		t.Errorf("keeper capabilities %+v: it needs none", c)
	}

	// The agent's paths agree with the mounts.
	for flag, want := range map[string]string{"config": "/etc/vigil/config.yaml", "pin-dir": "/sys/fs/bpf/vigil",
		"control-socket": "/run/vigil/vigil.sock", "listener": "/run/vigil/seccomp.sock",
		"state": "/var/lib/vigil/control-state.json", "nri-socket": "/var/run/nri/nri.sock"} {
		if v, _ := arg(agent.Args, flag); v != want {
			t.Errorf("--%s=%q, want %q", flag, v, want)
		}
	}
	if o.sm != nil || o.svc != nil {
		t.Error("a Service or ServiceMonitor by default")
	}
}

func TestDaemonSetCapabilities(t *testing.T) {
	o := render(t, variants["capabilities"])
	spec := o.ds.Spec.Template.Spec
	agent := container(t, spec.Containers, "agent")
	sc := agent.SecurityContext
	if sc.Privileged == nil || *sc.Privileged {
		t.Fatal("privileged with securityContext.privileged=false")
	}
	want := []corev1.Capability{"BPF", "PERFMON", "NET_ADMIN", "DAC_READ_SEARCH", "KILL"}
	if !slices.Equal(sc.Capabilities.Add, want) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities %+v, want add %v, drop ALL", sc.Capabilities, want)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined ||
		sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
		t.Error("seccomp or AppArmor confined: their default profiles refuse bpf() and writes under /sys/fs/bpf")
	}
	for _, m := range agent.VolumeMounts {
		if m.MountPath == "/sys/fs/bpf" && (m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationHostToContainer) {
			t.Errorf("bpffs propagation %v: Bidirectional needs a privileged container", m.MountPropagation)
		}
	}
}

func TestDaemonSetEverything(t *testing.T) {
	o := render(t, variants["everything"])
	spec := o.ds.Spec.Template.Spec
	if len(spec.InitContainers) != 0 || spec.Containers[0].Name != "notify-keeper" {
		t.Error("nativeSidecar=false: the keeper should be the first ordinary container")
	}
	agent := container(t, spec.Containers, "agent")
	if agent.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness path %q, want the value /readyz", agent.ReadinessProbe.HTTPGet.Path)
	}
	for _, a := range []string{"--policy=/etc/vigil/rules/extra.yaml", "--allowed-resolver=10.96.0.10", "--no-detect", "--events=-"} {
		if !slices.Contains(agent.Args, a) {
			t.Errorf("agent args %v: no %s", agent.Args, a)
		}
	}
	var paths []string
	for _, v := range spec.Volumes {
		if v.Name == "config" {
			for _, it := range v.Projected.Sources[0].ConfigMap.Items {
				paths = append(paths, it.Path)
			}
		}
	}
	slices.Sort(paths)
	if want := []string{"config.yaml", "policies/web.yaml", "rules/extra.yaml", "seccomp/tight.json"}; !slices.Equal(paths, want) {
		t.Errorf("/etc/vigil holds %v, want %v", paths, want)
	}
	if o.sm == nil || o.svc == nil || o.sm.Labels["release"] != "prom" || o.sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("serviceMonitor.enabled: ServiceMonitor %+v, Service %v", o.sm, o.svc != nil)
	}
}

func TestNoKeeper(t *testing.T) {
	o := render(t, variants["no-keeper"])
	spec := o.ds.Spec.Template.Spec
	if len(spec.InitContainers)+len(spec.Containers) != 1 {
		t.Error("keeper.enabled=false: the keeper still runs")
	}
	if v, ok := arg(spec.Containers[0].Args, "notify-keeper"); !ok || v != "" {
		t.Errorf("--notify-keeper=%q: want '' (no keeper)", v)
	}
	if v, ok := arg(spec.Containers[0].Args, "notify-keeper-wait"); ok {
		t.Errorf("--notify-keeper-wait=%q without a keeper: want none", v)
	}
}

// TestNodeConfig: the config.yaml the chart writes is one the agent loads.
func TestNodeConfig(t *testing.T) {
	o := render(t, nil)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(o.cm.Data["config.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := annotations.LoadNodeConfig(path)
	if err != nil {
		t.Fatalf("the agent refuses the chart's config.yaml: %v\n%s", err, o.cm.Data["config.yaml"])
	}
	if cfg.PolicyDir != "/etc/vigil/policies" {
		t.Errorf("policyDir %q", cfg.PolicyDir)
	}
}

// TestManifestsUpToDate: the committed deploy/manifests are a fresh render
// (deploy/manifests/update.sh writes them), and they decode strictly.
func TestManifestsUpToDate(t *testing.T) {
	files, err := deploy.Manifests()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(deploy.ManifestsDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok && e.Name() != "update.sh" {
			t.Errorf("deploy/manifests/%s is not generated: remove it", e.Name())
		}
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(deploy.ManifestsDir(), name))
		if err != nil || !bytes.Equal(got, []byte(want)) {
			t.Errorf("deploy/manifests/%s differs from the chart's render (%v): run deploy/manifests/update.sh", name, err)
		}
	}
	o := decode(t, files["namespace.yaml"]+"\n---\n"+files["vigil.yaml"])
	if o.ns == nil || o.ns.Name != o.ds.Namespace {
		t.Error("namespace.yaml does not create the DaemonSet's namespace")
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal([]byte(files["kustomization.yaml"]), &k); err != nil || !slices.Equal(k.Resources, []string{"namespace.yaml", "vigil.yaml"}) {
		t.Errorf("kustomization resources %v (%v)", k.Resources, err)
	}
}
