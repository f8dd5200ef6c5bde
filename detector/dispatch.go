package detector

import (
	"strings"
	"sync"

	"vigil.dev/vigil/event"
)

// Dispatcher spreads one producer's events over one goroutine per shard, so
// a single tracer reader uses every core: events are copied (the tracer
// reuses its Event) into per-shard batches; a batch goes to its shard's
// goroutine when it is full or on Flush. Events of one cgroup always go to
// the same shard, in order, so verdicts are those of Engine.Observe.
type Dispatcher struct {
	e      *Engine
	size   int
	emit   func(*Verdict)
	queues []chan *batch
	cur    []*batch
	free   chan *batch
	wg     sync.WaitGroup
}

type batch struct {
	evs []event.Event
}

// NewDispatcher starts one goroutine per shard of e. emit receives every
// verdict; it is called from those goroutines (concurrently for different
// shards) and must not keep the *Verdict. batchSize is the number of events
// handed over at once (default 64).
func (e *Engine) NewDispatcher(batchSize int, emit func(*Verdict)) *Dispatcher {
	if batchSize <= 0 {
		batchSize = 64
	}
	n := len(e.shards)
	d := &Dispatcher{e: e, size: batchSize, emit: emit, queues: make([]chan *batch, n), cur: make([]*batch, n),
		free: make(chan *batch, 8*n)}
	for i := range d.queues {
		d.queues[i] = make(chan *batch, 4)
		d.wg.Add(1)
		go d.run(i)
	}
	return d
}

func (d *Dispatcher) run(i int) {
	defer d.wg.Done()
	sh := &d.e.shards[i]
	for b := range d.queues[i] {
		rs := d.e.rs.Load()
		sh.mu.Lock()
		for j := range b.evs {
			vs := sh.observe(rs, &b.evs[j])
			for k := range vs {
				d.emit(&vs[k])
			}
		}
		sh.mu.Unlock()
		for j := range b.evs {
			b.evs[j] = event.Event{}
		}
		b.evs = b.evs[:0]
		select {
		case d.free <- b:
		default:
		}
	}
}

// Submit copies ev into its shard's batch. Only one goroutine may call
// Submit, Flush and Close.
func (d *Dispatcher) Submit(ev *event.Event) {
	i := ev.CgroupID % uint64(len(d.cur))
	b := d.cur[i]
	if b == nil {
		select {
		case b = <-d.free:
		default:
			b = &batch{evs: make([]event.Event, 0, d.size)}
		}
		d.cur[i] = b
	}
	b.evs = append(b.evs, *ev)
	c := &b.evs[len(b.evs)-1]
	// Strings and slices may point into the tracer's reused buffers.
	if c.Path != "" {
		c.Path = strings.Clone(c.Path)
	}
	if c.Path2 != "" {
		c.Path2 = strings.Clone(c.Path2)
	}
	if c.Comm != "" {
		c.Comm = strings.Clone(c.Comm)
	}
	if c.Addr.Path != "" {
		c.Addr.Path = strings.Clone(c.Addr.Path)
	}
	if c.PathUser != "" {
		c.PathUser = strings.Clone(c.PathUser)
	}
	if c.AddrUser.Path != "" {
		c.AddrUser.Path = strings.Clone(c.AddrUser.Path)
	}
	if len(c.Argv) > 0 {
		argv := make([]string, len(c.Argv))
		for k, a := range c.Argv {
			argv[k] = strings.Clone(a)
		}
		c.Argv = argv
	}
	if len(c.Env) > 0 {
		env := make([]string, len(c.Env))
		for k, a := range c.Env {
			env[k] = strings.Clone(a)
		}
		c.Env = env
	}
	if len(b.evs) == d.size {
		d.queues[i] <- b
		d.cur[i] = nil
	}
}

// Flush hands every partial batch over (call it when the producer has
// drained its source, so no event waits for a batch to fill).
func (d *Dispatcher) Flush() {
	for i, b := range d.cur {
		if b != nil && len(b.evs) > 0 {
			d.queues[i] <- b
			d.cur[i] = nil
		}
	}
}

// Close flushes and waits until every event has been observed.
func (d *Dispatcher) Close() {
	d.Flush()
	for _, q := range d.queues {
		close(q)
	}
	d.wg.Wait()
}
