package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/event"
)

// Request is one call on the control socket: a JSON object, one per
// connection, answered by one Response.
type Request struct {
	Op string `json:"op"` // "status", "register", "unregister"
	// For register/unregister (the OCI hook mode).
	Container   *event.Container  `json:"container,omitempty"`
	CgroupsPath string            `json:"cgroups_path,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Response answers a Request.
type Response struct {
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
	// Policy is what the agent decided for a registered container.
	Policy *annotations.Policy `json:"policy,omitempty"`
}

// Status is what `vigil status` shows.
type Status struct {
	Since        time.Time         `json:"since"`
	Connected    bool              `json:"connected"`
	Connections  int               `json:"connections"`
	Containers   []ContainerStatus `json:"containers"`
	Finished     []ContainerStatus `json:"finished,omitempty"`
	Rejected     []string          `json:"rejected,omitempty"`
	Events       uint64            `json:"events"`
	EventsError  string            `json:"events_error,omitempty"`
	NotifyOpen   int               `json:"notify_open"`
	NotifyFds    uint64            `json:"notify_fds"`
	NotifyAnswer uint64            `json:"notify_decisions"`
	AuditErrors  uint64            `json:"audit_errors,omitempty"`
	Verdicts     uint64            `json:"verdicts"`
}

// listenControl opens the control socket, mode 0600 (root only).
func listenControl(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

func serveControl(ctx context.Context, ln *net.UnixListener, a *Agent) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			var req Request
			if err := json.NewDecoder(c).Decode(&req); err != nil {
				_ = json.NewEncoder(c).Encode(Response{Error: "bad request: " + err.Error()})
				return
			}
			_ = json.NewEncoder(c).Encode(a.handle(ctx, req))
		}()
	}
}

func (a *Agent) handle(ctx context.Context, req Request) Response {
	switch req.Op {
	case "status":
		return Response{Status: a.status()}
	case "register":
		pol, err := a.plugin.Register(req)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{Policy: &pol}
	case "unregister":
		if req.Container == nil || req.Container.ID == "" {
			return Response{Error: "unregister: no container id"}
		}
		a.plugin.Unregister(req.Container.ID)
		return Response{}
	}
	return Response{Error: fmt.Sprintf("unknown op %q (allowed: status, register, unregister)", req.Op)}
}

func (a *Agent) status() *Status {
	st := &Status{Since: a.started}
	a.mu.Lock()
	st.Connected, st.Connections = a.connected, a.connects
	a.mu.Unlock()
	st.Containers, st.Finished = a.plugin.Containers()
	st.Rejected = a.plugin.Rejected()
	var err error
	st.Verdicts = a.verdicts.Load()
	st.Events, err = a.events.stats()
	st.Events -= min(st.Events, st.Verdicts) // the stream holds both
	if err != nil {
		st.EventsError = err.Error()
	}
	st.NotifyOpen, st.NotifyFds, st.NotifyAnswer = a.server.Stats()
	st.AuditErrors = a.audErrs.Load()
	return st
}

// Call sends one request to the agent's control socket.
func Call(socket string, req Request) (*Response, error) {
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect to the agent at %s (is 'vigil agent' running?): %w", socket, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("send to the agent: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("read the agent's answer: %w", err)
	}
	if resp.Error != "" {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}
