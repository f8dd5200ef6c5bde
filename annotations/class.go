package annotations

import (
	"fmt"
	"strings"
)

// The tracing class keys: how fast a monitored container's records reach
// the detector, and what happens when it makes them faster than they are
// read.
const (
	KeyLatency = "vigil.dev/latency"
	KeyLoss    = "vigil.dev/loss"
)

// Latency classes (vigil.dev/latency).
const (
	LatencyNormal   = "normal"   // the reader takes records in batches (under a millisecond)
	LatencyRealtime = "realtime" // each record wakes the reader
)

// Loss classes (vigil.dev/loss).
const (
	LossDrop  = "drop"  // records over the budget or the ring are dropped, counted, as gaps
	LossBlock = "block" // the container's processes are stopped until the reader catches up
)

// The node bounds of the classes when the node configuration sets none:
// each realtime container costs a reader wakeup per record, each block
// container can stall on the reader.
const (
	DefaultRealtimeMax = 16
	// DefaultBlockMax is 0: the block class is off until the node's
	// operator sets blockMax (its known limits are in docs/annotations.md).
	DefaultBlockMax = 0
	maxClassBound   = 4096
)

// parseClass sets p.Realtime and p.Block from the annotations (validated
// even when the container is not monitored, where they do nothing).
func parseClass(p *Policy, pod, ctr map[string]string, ctrName string, bad func(key, value, allowed string)) {
	if k, v, ok := Lookup(pod, ctr, KeyLatency, ctrName); ok {
		switch strings.TrimSpace(v) {
		case LatencyNormal:
		case LatencyRealtime:
			p.Realtime = true
		default:
			bad(k, v, fmt.Sprintf("%q, %q", LatencyNormal, LatencyRealtime))
		}
	}
	if k, v, ok := Lookup(pod, ctr, KeyLoss, ctrName); ok {
		switch strings.TrimSpace(v) {
		case LossDrop:
		case LossBlock:
			p.Block = true
		default:
			bad(k, v, fmt.Sprintf("%q, %q", LossDrop, LossBlock))
		}
	}
}

// RealtimeLimit is how many containers of the node may be in the realtime
// latency class at once (realtimeMax; 0 allows none).
func (c NodeConfig) RealtimeLimit() int { return valueOr(c.RealtimeMax, DefaultRealtimeMax) }

// BlockLimit is how many containers of the node may be in the block loss
// class at once (blockMax; 0 allows none).
func (c NodeConfig) BlockLimit() int { return valueOr(c.BlockMax, DefaultBlockMax) }

// validateClass checks realtimeMax and blockMax.
func (c NodeConfig) validateClass() error {
	for _, f := range []struct {
		name string
		v    *int
	}{{"realtimeMax", c.RealtimeMax}, {"blockMax", c.BlockMax}} {
		if f.v != nil && (*f.v < 0 || *f.v > maxClassBound) {
			return fmt.Errorf("%s %d: allowed values are integers from 0 to %d", f.name, *f.v, maxClassBound)
		}
	}
	return nil
}

// ClassOverBound is the warning for a container whose class the node's
// bound refuses: it runs in the normal class instead. class is
// LatencyRealtime or LossBlock; running is how many containers hold it.
func ClassOverBound(class string, running, limit int) string {
	key, field, normal := KeyLatency, "realtimeMax", LatencyNormal
	if class == LossBlock {
		key, field, normal = KeyLoss, "blockMax", LossDrop
	}
	return fmt.Sprintf("vigil: annotation %q asks for %q: using %q: this node allows %d such containers at once and %d are running (node configuration %s)",
		key, class, normal, limit, running, field)
}
