package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"
)

// Defaults of the plugin's connection.
const (
	DefaultNRISocket  = "/var/run/nri/nri.sock"
	DefaultPluginName = "vigil"
	DefaultPluginIdx  = "10"
)

// nriStub is the part of the NRI stub the plugin keeps for updates.
type nriStub struct{ s stub.Stub }

// Connected reports whether the runtime's NRI connection is up, and how
// many connections there were.
func (p *Plugin) Connected() (bool, int) {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	return p.conn, p.connects
}

// Run connects to the runtime over NRI and serves it, again after every
// loss of the connection (every reconnect), until ctx is done. Started by
// the runtime as a pre-registered plugin, it exits with the connection.
func (p *Plugin) Run(ctx context.Context, socket string, reconnect time.Duration) error {
	if socket == "" {
		socket = DefaultNRISocket
	}
	if reconnect <= 0 {
		reconnect = time.Second
	}
	preRegistered := os.Getenv(api.PluginSocketEnvVar) != ""
	var opts []stub.Option
	if os.Getenv(api.PluginNameEnvVar) == "" {
		opts = append(opts, stub.WithPluginName(DefaultPluginName))
	}
	if os.Getenv(api.PluginIdxEnvVar) == "" {
		opts = append(opts, stub.WithPluginIdx(DefaultPluginIdx))
	}
	if !preRegistered {
		opts = append(opts, stub.WithSocketPath(socket))
	}
	opts = append(opts, stub.WithLogger(nriLogger{p.log}))
	lastWarn := time.Time{}
	for {
		s, err := stub.New(p, opts...)
		if err != nil {
			return fmt.Errorf("nri plugin: %w", err)
		}
		p.starting.Store(&nriStub{s})
		err = p.serveOnce(ctx, s, socket, preRegistered)
		if ctx.Err() != nil {
			return nil
		}
		if preRegistered {
			// The runtime starts a new instance when it comes back.
			if err != nil {
				return fmt.Errorf("nri connection from the runtime: %w", err)
			}
			p.log.Info("the runtime closed the NRI connection; exiting (pre-registered plugin)")
			return nil
		}
		if err != nil && time.Since(lastWarn) > time.Minute {
			p.log.WithError(err).Warn("runtime not reachable over NRI; retrying")
			lastWarn = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(reconnect):
		}
	}
}

func (p *Plugin) serveOnce(ctx context.Context, s stub.Stub, socket string, preRegistered bool) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	p.connMu.Lock()
	p.conn = true
	p.connects++
	n := p.connects
	p.connMu.Unlock()
	p.stub.Store(&nriStub{s})
	where := socket
	if preRegistered {
		where = "pre-registered (connection from the runtime)"
	}
	p.log.WithFields(logrus.Fields{"socket": where, "connection": n}).Info("connected to the runtime over NRI")
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	select {
	case <-ctx.Done():
		s.Stop()
		<-done
	case <-done:
		p.log.Warn("NRI connection closed (runtime restarted?); reconnecting")
	}
	p.stub.Store(nil)
	p.connMu.Lock()
	p.conn = false
	p.connMu.Unlock()
	return nil
}

// ErrNoRuntime is returned by UpdateCPU while the runtime is not
// connected.
var ErrNoRuntime = errors.New("not connected to the runtime over NRI")

// UpdateCPU changes a running container's CPU shares and CFS quota/period
// through the runtime (NRI UpdateContainers), so that the runtime's own
// view stays right. Zero shares or period leave them; quota -1 removes the
// limit, 0 leaves it.
func (p *Plugin) UpdateCPU(containerID string, shares uint64, quota int64, period uint64) error {
	st := p.stub.Load()
	if st == nil {
		return ErrNoRuntime
	}
	cpu := &api.LinuxCPU{}
	if shares > 0 {
		cpu.Shares = api.UInt64(shares)
	}
	if quota != 0 {
		cpu.Quota = api.Int64(quota)
	}
	if period > 0 {
		cpu.Period = api.UInt64(period)
	}
	failed, err := st.s.UpdateContainers([]*api.ContainerUpdate{{ContainerId: containerID,
		Linux: &api.LinuxContainerUpdate{Resources: &api.LinuxResources{Cpu: cpu}}}})
	if err != nil {
		return fmt.Errorf("update cpu of %s through the runtime: %w", short(containerID), err)
	}
	if len(failed) > 0 {
		return fmt.Errorf("update cpu of %s: the runtime refused the update", short(containerID))
	}
	return nil
}

// nriLogger sends the stub's logs to logrus.
type nriLogger struct{ l *logrus.Logger }

func (n nriLogger) Debugf(_ context.Context, f string, a ...any) { n.l.Debugf("nri: "+f, a...) }
func (n nriLogger) Infof(_ context.Context, f string, a ...any)  { n.l.Debugf("nri: "+f, a...) }
func (n nriLogger) Warnf(_ context.Context, f string, a ...any)  { n.l.Warnf("nri: "+f, a...) }
func (n nriLogger) Errorf(_ context.Context, f string, a ...any) { n.l.Errorf("nri: "+f, a...) }
