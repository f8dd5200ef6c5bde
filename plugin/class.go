package plugin

import (
	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/bpf"
)

// ClassTracer is a Tracer that tracks cgroups in a class (*bpf.Monitor):
// vigil.dev/latency: realtime and vigil.dev/loss: block. With a Tracer
// that is not one, every container is tracked in the normal class.
type ClassTracer interface {
	TrackWith(cgroupID uint64, o bpf.TrackOptions) error
	// Class is the class the tracer holds for a tracked cgroup (a cgroup
	// tracked before an agent restart keeps the class it had).
	Class(cgroupID uint64) (o bpf.TrackOptions, paused uint64, err error)
}

// classFor is the class a container may hold: what its policy asks,
// within the node's bounds on how many containers hold each class. held
// counts the containers that hold each now (classHeld). It returns the
// warnings for what the bounds refused.
func classFor(pol annotations.Policy, node annotations.NodeConfig, held classCount) (bpf.TrackOptions, []string) {
	var o bpf.TrackOptions
	var warnings []string
	if pol.Realtime {
		if held.Realtime < node.RealtimeLimit() {
			o.Realtime = true
		} else {
			warnings = append(warnings, annotations.ClassOverBound(annotations.LatencyRealtime, held.Realtime, node.RealtimeLimit()))
		}
	}
	if pol.Block {
		if held.Block < node.BlockLimit() {
			o.Block = true
		} else {
			warnings = append(warnings, annotations.ClassOverBound(annotations.LossBlock, held.Block, node.BlockLimit()))
		}
	}
	return o, warnings
}

// classCount is how many containers hold each class.
type classCount struct{ Realtime, Block int }

// classHeld counts the containers holding each class; p.mu is held.
func (p *Plugin) classHeld(except *container) classCount {
	var n classCount
	for _, c := range p.byID {
		if c == except {
			continue
		}
		if c.class.Realtime {
			n.Realtime++
		}
		if c.class.Block {
			n.Block++
		}
	}
	return n
}

// trackClass tracks cgroup id for container c in the class its policy asks
// for, as far as the node's bounds allow (a warning otherwise), and records
// the class the tracer holds.
func (p *Plugin) trackClass(c *container, id uint64) error {
	ct, ok := p.tracer.(ClassTracer)
	if !ok || (!c.policy.Realtime && !c.policy.Block) {
		return p.tracer.Track(id)
	}
	p.mu.Lock()
	o, warnings := classFor(c.policy, p.node(), p.classHeld(c))
	c.class = o // reserved before tracking, so two starts cannot both take the last place
	p.mu.Unlock()
	log := p.log.WithFields(logrus.Fields{"container": c.meta.Name, "id": short(c.meta.ID), "cgroup": id})
	for _, w := range warnings {
		log.Warn(w)
	}
	if err := ct.TrackWith(id, o); err != nil {
		p.mu.Lock()
		c.class = bpf.TrackOptions{}
		p.mu.Unlock()
		return err
	}
	if held, _, err := ct.Class(id); err == nil && held != o {
		log.WithFields(logrus.Fields{"realtime": held.Realtime, "block": held.Block}).
			Info("tracked before this agent started: keeps the tracing class it had")
		o = held
	}
	p.mu.Lock()
	c.class = o
	c.policy.Realtime, c.policy.Block = o.Realtime, o.Block
	p.mu.Unlock()
	if o.Realtime || o.Block {
		log.WithFields(logrus.Fields{"realtime": o.Realtime, "block": o.Block}).Info("tracing class")
	}
	return nil
}

// classString names a class for vigil status: "realtime", "block",
// "realtime,block", or "" for the normal class.
func classString(o bpf.TrackOptions) string {
	switch {
	case o.Realtime && o.Block:
		return "realtime,block"
	case o.Realtime:
		return "realtime"
	case o.Block:
		return "block"
	}
	return ""
}

// stoppedBy is how many times the block class stopped one of a tracked
// container's processes (0 for other classes); p.mu is held.
func (p *Plugin) stoppedBy(c *container) uint64 {
	ct, ok := p.tracer.(ClassTracer)
	if !ok || !c.class.Block || !c.tracked || c.cgroupID == 0 {
		return 0
	}
	_, paused, err := ct.Class(c.cgroupID)
	if err != nil {
		return 0
	}
	return paused
}
