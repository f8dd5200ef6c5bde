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
	c := &Container{ID: st.ID, Name: first(ann, nameKeys), Pod: first(ann, podKeys), Namespace: first(ann, namespaceKeys), Image: first(ann, imageKeys)}
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

// call sends one request to the agent.
func call(socket string, req Request) (*agentctl.Response, error) {
	return agentctl.Call(socket, req)
}

// CreateRuntime registers the container whose state is on stdin. An error
// makes the runtime fail the container's creation: returned when the agent
// rejects the container (bad annotation) or when it cannot be reached and
// the container asked to be monitored. Warnings go to warn.
func CreateRuntime(stdin io.Reader, socket string, warn io.Writer) error {
	st, err := ReadState(stdin)
	if err != nil {
		return err
	}
	spec, err := LoadSpec(st.Bundle)
	if err != nil {
		return err
	}
	req := BuildRequest(st, spec)
	resp, err := call(socket, req)
	if err != nil {
		if resp == nil && !wantsMonitoring(req) {
			fmt.Fprintf(warn, "vigil hook: %v (container %s not monitored)\n", err, st.ID)
			return nil
		}
		return fmt.Errorf("container %s: %w", st.ID, err)
	}
	if resp.Policy != nil {
		for _, w := range resp.Policy.Warnings {
			fmt.Fprintf(warn, "vigil hook: %s\n", w)
		}
	}
	return nil
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
