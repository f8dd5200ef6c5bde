// Package deploy renders vigil's Helm chart (helm/vigil) with helm's Go
// library, so that neither the tests nor the generated manifests need the
// helm binary. Only the tests and cmd/render-manifests import it: the heavy
// helm and Kubernetes modules stay out of the vigil binary.
package deploy

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

// Release and Namespace name the release of the plain manifests
// (deploy/manifests).
const (
	Release   = "vigil"
	Namespace = "vigil-system"
)

// KubeVersion is the Kubernetes version the chart is rendered and linted
// for (the chart needs 1.29 or later: native sidecars).
const KubeVersion = "v1.33.0"

// Dir is this package's directory (deploy/ of the repository).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// ChartDir is the chart's directory.
func ChartDir() string { return filepath.Join(Dir(), "helm", "vigil") }

// ManifestsDir is the directory of the plain manifests.
func ManifestsDir() string { return filepath.Join(Dir(), "manifests") }

func kubeVersion() *chartutil.KubeVersion {
	kv, err := chartutil.ParseKubeVersion(KubeVersion)
	if err != nil {
		panic(err) // a constant
	}
	return kv
}

// Render renders the chart at dir as `helm template` does, with values
// over the chart's own, into namespace; it returns the manifest: YAML
// documents, each after a "# Source: TEMPLATE" comment.
func Render(dir, release, namespace string, values map[string]any) (string, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return "", fmt.Errorf("load chart %s: %w", dir, err)
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.ReleaseName = release
	install.Namespace = namespace
	install.KubeVersion = kubeVersion()
	install.DisableHooks = true
	rel, err := install.Run(ch, values)
	if err != nil {
		return "", fmt.Errorf("render chart %s: %w", dir, err)
	}
	return rel.Manifest, nil
}

// Lint runs helm's linter (strict: warnings fail too) on the chart at dir
// with values.
func Lint(dir string, values map[string]any) error {
	l := action.NewLint()
	l.Strict = true
	l.Namespace = Namespace
	l.KubeVersion = kubeVersion()
	res := l.Run([]string{dir}, values)
	var errs []error
	errs = append(errs, res.Errors...)
	for _, m := range res.Messages {
		if m.Severity > 1 { // warnings and errors (support.WarningSev and up)
			errs = append(errs, errors.New(m.Error()))
		}
	}
	return errors.Join(errs...)
}

// Manifests renders the plain manifests of deploy/manifests: the chart
// with its default values, release Release in Namespace. The files are
// namespace.yaml, vigil.yaml (every object the chart renders) and
// kustomization.yaml, for `kubectl apply -k deploy/manifests`.
func Manifests() (map[string]string, error) {
	out, err := Render(ChartDir(), Release, Namespace, nil)
	if err != nil {
		return nil, err
	}
	const header = "# Generated from deploy/helm/vigil with its default values by deploy/manifests/update.sh: do not edit.\n"
	return map[string]string{
		"vigil.yaml": header + strings.TrimLeft(out, "-\n"),
		"namespace.yaml": header + "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + Namespace + "\n" +
			"  labels:\n    # The agent is privileged, with host paths and the host PID namespace.\n" +
			"    pod-security.kubernetes.io/enforce: privileged\n",
		"kustomization.yaml": header + "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" +
			"resources:\n  - namespace.yaml\n  - vigil.yaml\n" +
			"# The image: set your own with `kustomize edit set image localhost/vigil=NAME:TAG`.\n" +
			"images:\n  - name: localhost/vigil\n    newTag: " + appVersion() + "\n",
	}, nil
}

// appVersion is the chart's appVersion (the default image tag).
func appVersion() string {
	ch, err := loader.Load(ChartDir())
	if err != nil || ch.Metadata == nil {
		return "latest"
	}
	return ch.Metadata.AppVersion
}
