package agent

import (
	"fmt"
	"syscall"

	"vigil.dev/vigil/control"
	"vigil.dev/vigil/plugin"
	"vigil.dev/vigil/seccomp"
)

// actuator is the response ladder's edge in the agent: cgroup files for
// CPU, freeze and kill; the runtime (NRI UpdateContainers) for the CPU of
// containers it manages, read back from the cgroup files; the seccomp
// notify server for deny-syscall; the kernel connect guard for
// deny-connect.
type actuator struct {
	cg    *control.Cgroups
	reg   *plugin.Plugin
	srv   *seccomp.Server
	guard Guard
}

func (a *actuator) ReadCPU(t control.Target) (control.CPU, error) { return a.cg.ReadCPU(t) }

// SetCPU goes through the runtime when the container came through NRI and
// the runtime is connected, so that its view stays right, and checks the
// cgroup files afterwards; otherwise it writes the files itself.
func (a *actuator) SetCPU(t control.Target, c control.CPU) error {
	if !t.ViaNRI || t.ContainerID == "" {
		return a.cg.SetCPU(t, c)
	}
	if err := a.reg.UpdateCPU(t.ContainerID, c.Shares, c.QuotaUs, c.PeriodUs); err != nil {
		// The runtime is away (restarting) or refused: the kernel's files
		// still take it.
		if err2 := a.cg.SetCPU(t, c); err2 != nil {
			return fmt.Errorf("%w; and through the cgroup files: %v", err, err2)
		}
		return nil
	}
	got, err := a.cg.ReadCPU(t)
	if err != nil {
		return fmt.Errorf("read back cpu after the runtime's update: %w", err)
	}
	if (c.Shares != 0 && got.Shares != c.Shares) || (c.QuotaUs != 0 && got.QuotaUs != c.QuotaUs) || (c.PeriodUs != 0 && got.PeriodUs != c.PeriodUs) {
		// The runtime answered but the kernel holds other values: write them.
		return a.cg.SetCPU(t, c)
	}
	return nil
}

func (a *actuator) Freeze(t control.Target, frozen bool) error     { return a.cg.Freeze(t, frozen) }
func (a *actuator) KillProcess(t control.Target, pid uint32) error { return a.cg.KillProcess(t, pid) }
func (a *actuator) KillContainer(t control.Target) error           { return a.cg.KillContainer(t) }

func (a *actuator) DenySyscalls(t control.Target, nrs []int32, errno syscall.Errno) error {
	if t.ContainerID == "" {
		return fmt.Errorf("deny-syscall: cgroup %d has no container id: the notify server answers by container", t.CgroupID)
	}
	a.srv.Deny(t.ContainerID, nrs, errno)
	return nil
}

func (a *actuator) AllowSyscalls(t control.Target) error {
	if t.ContainerID != "" {
		a.srv.Allow(t.ContainerID)
	}
	return nil
}

func (a *actuator) DenyConnect(t control.Target, r control.ConnectRule) error {
	if a.guard == nil {
		return errNoGuard
	}
	if t.CgroupDir == "" {
		return fmt.Errorf("deny-connect: cgroup %d has no cgroup v2 directory", t.CgroupID)
	}
	if r.DNSOnlyTo != nil {
		if err := a.guard.DenyDNSExcept(t.CgroupID, r.DNSOnlyTo); err != nil {
			return err
		}
	}
	for _, d := range r.Dest {
		if err := a.guard.Deny(t.CgroupID, d); err != nil {
			return err
		}
	}
	// Attached last: the maps are complete when the programs start deciding.
	return a.guard.Attach(t.CgroupDir, t.CgroupID)
}

func (a *actuator) AllowConnect(t control.Target) error {
	if a.guard == nil {
		return errNoGuard
	}
	return a.guard.Release(t.CgroupID)
}
