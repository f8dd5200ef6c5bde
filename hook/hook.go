// Package hook is vigil's OCI hook mode, for runtimes without NRI (podman,
// plain runc): `vigil hook create-runtime` registers the container with the
// running agent (which tracks its cgroup before the workload's first
// instruction) and `vigil hook poststop` unregisters it. The runtime passes
// the container's state on stdin; the hook reads the bundle's config.json
// for the cgroups path, annotations and names.
//
// A hook cannot change the container's seccomp policy (the spec is fixed
// by then): only monitoring applies in this mode.
package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/event"
)

// Request is the control-socket request the hook sends.
type Request = agentctl.Request

// Container is the container metadata in a Request.
type Container = event.Container

// Names of the annotations runtimes set that the hook reads for metadata.
var (
	nameKeys      = []string{"io.kubernetes.cri.container-name", "io.kubernetes.container.name", "io.podman.annotations.name"}
	podKeys       = []string{"io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"}
	namespaceKeys = []string{"io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"}
	imageKeys     = []string{"io.kubernetes.cri.image-name", "org.opencontainers.image.ref.name"}
	podUIDKeys    = []string{"io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"}
)

// ReadState decodes the OCI state the runtime writes on the hook's stdin.
func ReadState(r io.Reader) (*specs.State, error) {
	var st specs.State
	if err := json.NewDecoder(io.LimitReader(r, 4<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("read OCI state on stdin: %w", err)
	}
	if st.ID == "" {
		return nil, errors.New("OCI state on stdin has no container id")
	}
	return &st, nil
}

// LoadSpec reads the bundle's config.json.
func LoadSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read bundle config: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("decode bundle config: %w", err)
	}
	return &spec, nil
}

// BuildRequest makes the register request from the state and the spec
// (state annotations win over the spec's).
func BuildRequest(st *specs.State, spec *specs.Spec) Request {
	ann := map[string]string{}
	if spec != nil {
		for k, v := range spec.Annotations {
			ann[k] = v
		}
	}
	for k, v := range st.Annotations {
		ann[k] = v
	}
	c := &Container{ID: st.ID, Name: first(ann, nameKeys), Pod: first(ann, podKeys), Namespace: first(ann, namespaceKeys), Image: first(ann, imageKeys),
		PodUID: first(ann, podUIDKeys)}
	if c.Name == "" {
		c.Name = st.ID
	}
	req := Request{Op: agentctl.OpRegister, Container: c, Annotations: ann, Bundle: st.Bundle, PID: st.Pid}
	if spec != nil && spec.Linux != nil {
		req.CgroupsPath = spec.Linux.CgroupsPath
	}
	return req
}

func first(m map[string]string, keys []string) string {
	for _, k := range keys {
		if v := m[k]; v != "" {
			return v
		}
	}
	return ""
}

// wantsMonitoring reports whether the container's own annotations ask for
// monitoring: then an unreachable agent fails the hook (fail closed).
func wantsMonitoring(req Request) bool {
	name := ""
	if req.Container != nil {
		name = req.Container.Name
	}
	_, v, ok := annotations.Lookup(nil, req.Annotations, annotations.KeyMonitor, name)
	return ok && v == "true"
}

// call sends one request to the agent; the response is nil when the agent
// did not answer.
func call(socket string, req Request) (*agentctl.Response, error) {
	return agentctl.Call(socket, req)
}

// Options are the hook's settings (its command-line flags).
type Options struct {
	// Socket is the agent's control socket.
	Socket string
	// FailOpen starts a container that asked for monitoring, with a
	// warning, when the agent cannot be reached (default: fail closed).
	// A container the agent rejects fails either way.
	FailOpen bool
}

// CreateRuntime registers the container whose state is on stdin. An error
// makes the runtime fail the container's creation: returned when the agent
// rejects the container (bad annotation) or when it cannot be reached and
// the container asked to be monitored (unless opts.FailOpen). Warnings go
// to warn.
func CreateRuntime(stdin io.Reader, opts Options, warn io.Writer) error {
	st, err := ReadState(stdin)
	if err != nil {
		return err
	}
	spec, err := LoadSpec(st.Bundle)
	if err != nil {
		return err
	}
	req := BuildRequest(st, spec)
	if req.Container.Name == st.ID {
		podmanNames(st.Bundle, req.Container)
	}
	resp, err := call(opts.Socket, req)
	switch {
	case err == nil:
	case resp != nil: // the agent answered: it rejects the container
		return fmt.Errorf("container %s: %w", st.ID, err)
	case !wantsMonitoring(req):
		fmt.Fprintf(warn, "vigil hook: %v (container %s not monitored)\n", err, st.ID)
		return nil
	case opts.FailOpen:
		fmt.Fprintf(warn, "vigil hook: WARNING: container %s asked to be monitored but runs unmonitored (--fail-open): %v\n", st.ID, err)
		return nil
	default:
		return fmt.Errorf("container %s asked to be monitored (start it anyway with the hook's --fail-open): %w", st.ID, err)
	}
	if resp.Policy != nil {
		for _, w := range resp.Policy.Warnings {
			fmt.Fprintf(warn, "vigil hook: %s\n", w)
		}
	}
	return nil
}

// podmanNames fills the name and image of a podman container, which podman
// (4.x) leaves out of the spec: its containers-storage keeps both in
// containers.json two levels above the bundle (ROOT/overlay-containers/ID/
// userdata). Nothing is filled when the bundle is not laid out so.
func podmanNames(bundle string, c *Container) {
	if filepath.Base(bundle) != "userdata" || filepath.Base(filepath.Dir(bundle)) != c.ID {
		return
	}
	data, err := os.ReadFile(filepath.Join(bundle, "..", "..", "containers.json"))
	if err != nil {
		return
	}
	var stored []struct {
		ID       string   `json:"id"`
		Names    []string `json:"names"`
		Metadata string   `json:"metadata"`
	}
	if json.Unmarshal(data, &stored) != nil {
		return
	}
	for _, s := range stored {
		if s.ID != c.ID {
			continue
		}
		if len(s.Names) > 0 && s.Names[0] != "" {
			c.Name = s.Names[0]
		}
		var md struct {
			ImageName string `json:"image-name"`
		}
		if c.Image == "" && json.Unmarshal([]byte(s.Metadata), &md) == nil {
			c.Image = md.ImageName
		}
		return
	}
}

// Poststop unregisters the container whose state is on stdin. An agent that
// is gone is not an error (nothing to undo).
func Poststop(stdin io.Reader, socket string, warn io.Writer) error {
	st, err := ReadState(stdin)
	if err != nil {
		return err
	}
	if _, err := call(socket, Request{Op: agentctl.OpUnregister, Container: &Container{ID: st.ID}}); err != nil {
		fmt.Fprintf(warn, "vigil hook: %v\n", err)
	}
	return nil
}
