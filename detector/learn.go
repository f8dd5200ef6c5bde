package detector

import (
	"fmt"
	"sort"

	"vigil.dev/vigil/event"
)

// WorkloadKey names the model a container's events train and are scored
// by: its image and container name, so that replicas share one model. It is
// "" outside a runtime.
func WorkloadKey(c *event.Container) string {
	if c == nil || (c.Image == "" && c.Name == "") {
		return ""
	}
	return c.Image + "/" + c.Name
}

// Learner collects the normal behaviour of workloads during a learning
// window (mode learn, or the first events of a workload): each container's
// events are cut into windows exactly as the engine cuts them when it
// scores, grouped by WorkloadKey (or by cgroup outside a runtime). It is
// not safe for concurrent use.
type Learner struct {
	window   int
	maxUnits int
	cgroups  map[uint64]*learnCgroup
	units    map[string][]Unit
}

type learnCgroup struct {
	key string
	w   *windower
}

// NewLearner makes a Learner with windows of windowN events (0: the
// default) that keeps at most maxUnits windows per workload (0: 5000).
func NewLearner(windowN, maxUnits int) *Learner {
	if windowN <= 0 {
		windowN = DefaultWindowEvents
	}
	if maxUnits <= 0 {
		maxUnits = 5000
	}
	return &Learner{window: windowN, maxUnits: maxUnits, cgroups: map[uint64]*learnCgroup{}, units: map[string][]Unit{}}
}

// Observe adds one event (not kept; the tracer may reuse it).
func (l *Learner) Observe(ev *event.Event) {
	if ev.Flags&event.Lost != 0 {
		return
	}
	c := l.cgroups[ev.CgroupID]
	if c == nil {
		key := WorkloadKey(ev.Container)
		if key == "" {
			key = fmt.Sprintf("cgroup:%d", ev.CgroupID)
		}
		c = &learnCgroup{key: key, w: newWindower(l.window)}
		l.cgroups[ev.CgroupID] = c
	}
	if c.w.add(ev) {
		l.keep(c)
	}
}

func (l *Learner) keep(c *learnCgroup) {
	u := l.units[c.key]
	if len(u) >= l.maxUnits {
		c.w.unit("", 0) // full: drop the window
		return
	}
	l.units[c.key] = append(u, c.w.unit(c.key, len(u)))
}

// Workloads lists the workloads seen, sorted, with their window counts
// (partial windows included).
func (l *Learner) Workloads() map[string]int {
	out := map[string]int{}
	for k, u := range l.units {
		out[k] = len(u)
	}
	for _, c := range l.cgroups {
		if c.w.count > 0 {
			out[c.key]++
		}
	}
	return out
}

// Model ends the learning window of a workload (its partial windows are
// kept if they hold at least minScoreLen events) and trains its model.
func (l *Learner) Model(key string) (*Model, error) {
	ids := make([]uint64, 0)
	for id, c := range l.cgroups {
		if c.key == key && c.w.count > 0 {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		c := l.cgroups[id]
		if c.w.count >= minScoreLen {
			l.keep(c)
		} else {
			c.w.unit("", 0)
		}
	}
	units := l.units[key]
	if len(units) == 0 {
		return nil, fmt.Errorf("learn %q: no events of this workload", key)
	}
	return Train(units, TrainOptions{Name: key, UnitKind: "events", WindowN: l.window})
}
