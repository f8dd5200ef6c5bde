package plugin

import (
	"fmt"
	"os"
	"strings"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/seccomp"
)

// imageAnnotation is where containerd's CRI records a container's image
// name when the NRI Image field is empty.
const imageAnnotation = "io.kubernetes.cri.image-name"

// containerMeta is the metadata events carry for one container: its
// pod's name, namespace, uid and labels, the node's name, and the
// workload that owns the pod as its name and labels tell (inferOwner: NRI
// passes no owner references).
func containerMeta(pod *api.PodSandbox, ctr *api.Container) event.Container {
	c := event.Container{ID: ctr.GetId(), Name: containerName(ctr), Image: imageOf(ctr), Node: NodeName()}
	if pod != nil {
		c.Pod, c.Namespace, c.PodUID = pod.GetName(), pod.GetNamespace(), pod.GetUid()
		c.PodLabels = podLabels(pod.GetLabels())
		c.OwnerKind, c.OwnerName = inferOwner(c.Pod, c.Node, pod.GetLabels(), pod.GetAnnotations())
	}
	return c
}

// podLabels copies a pod's labels without those the CRI adds to every
// sandbox (its name, namespace and uid, which the metadata holds already,
// and containerd's kind); nil when none are left.
func podLabels(in map[string]string) map[string]string {
	var out map[string]string
	for k, v := range in {
		if strings.HasPrefix(k, "io.kubernetes.pod.") || strings.HasPrefix(k, "io.kubernetes.container.") ||
			strings.HasPrefix(k, "io.cri-containerd.") {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(in))
		}
		out[k] = v
	}
	return out
}

// NodeName is the node's name: NODE_NAME (which the Helm chart sets from
// the pod's spec.nodeName), else the host name.
func NodeName() string {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	n, _ := os.Hostname()
	return n
}

func imageOf(ctr *api.Container) string {
	if n := ctr.GetImage().GetName(); n != "" {
		return n
	}
	for _, k := range []string{imageAnnotation, crioImage, crioImageAlt} {
		if n := ctr.GetAnnotations()[k]; n != "" {
			return n
		}
	}
	return ""
}

// parsePolicy applies the annotation contract to one container.
func parsePolicy(pod *api.PodSandbox, ctr *api.Container, node annotations.NodeConfig) (annotations.Policy, error) {
	return annotations.Parse(pod.GetAnnotations(), ctr.GetAnnotations(), containerName(ctr), pod.GetNamespace(), imageOf(ctr), node)
}

// buildAdjustment turns a container's Policy into the NRI adjustment: the
// seccomp policy and CPU shares from the priority. The seccomp policy is
// built on the runtime's own default when the container is RuntimeDefault,
// and composed with the policy the container arrived with (its runtime
// default or its own Localhost profile): it never allows what that policy
// denies. A forced pod's named profile is composed with the node's floor.
// It returns the built profile (nil when seccomp is left alone) so the
// notify Server can be told the container's answers. A nil adjustment
// means nothing to change.
func buildAdjustment(pol annotations.Policy, ctr *api.Container, o seccomp.Options) (*api.ContainerAdjustment, *seccomp.Profile, error) {
	var adj *api.ContainerAdjustment
	var prof *seccomp.Profile
	if pol.Seccomp != "" {
		o.Base = runtimeDefaultBase(ctr)
		o.Pod = arrivedWith(ctr)
		o.Floor = pol.SeccompFloor
		o.AllowUnconfined = pol.AllowUnconfined
		p, err := seccomp.Build(pol.Seccomp, o)
		if err != nil {
			return nil, nil, fmt.Errorf("vigil: seccomp profile %q: %w", pol.Seccomp, err)
		}
		adj = &api.ContainerAdjustment{}
		adj.SetLinuxSeccompPolicy(api.FromOCILinuxSeccomp(seccomp.ExpandDefaultErrno(p.Spec)))
		prof = p
	}
	if pol.PrioritySet {
		if adj == nil {
			adj = &api.ContainerAdjustment{}
		}
		adj.SetLinuxCPUShares(annotations.CPUShares(pol.Priority))
	}
	return adj, prof, nil
}

// runtimeDefaultBase returns the runtime's default policy of a
// RuntimeDefault container (containerd computes it for the container's
// capabilities), or nil.
func runtimeDefaultBase(ctr *api.Container) *specs.LinuxSeccomp {
	l := ctr.GetLinux()
	if l.GetSeccompProfile().GetProfileType() != api.SecurityProfile_RUNTIME_DEFAULT || l.GetSeccompPolicy() == nil {
		return nil
	}
	return toOCISeccomp(l.GetSeccompPolicy())
}

// arrivedWith returns the seccomp policy the container came with (the
// runtime's default, or the pod's Localhost profile), or nil when it came
// unconfined.
func arrivedWith(ctr *api.Container) *specs.LinuxSeccomp {
	s := ctr.GetLinux().GetSeccompPolicy()
	if s == nil {
		return nil
	}
	return toOCISeccomp(s)
}

func toOCISeccomp(s *api.LinuxSeccomp) *specs.LinuxSeccomp {
	out := &specs.LinuxSeccomp{
		DefaultAction:    specs.LinuxSeccompAction(s.DefaultAction),
		ListenerPath:     s.ListenerPath,
		ListenerMetadata: s.ListenerMetadata,
		Syscalls:         api.ToOCILinuxSyscalls(s.Syscalls),
	}
	if s.DefaultErrno != nil {
		v := uint(s.DefaultErrno.Value)
		out.DefaultErrnoRet = &v
	}
	for _, a := range s.Architectures {
		out.Architectures = append(out.Architectures, specs.Arch(a))
	}
	for _, f := range s.Flags {
		out.Flags = append(out.Flags, specs.LinuxSeccompFlag(f))
	}
	return out
}
