package detector

// Cgroups is the number of cgroups the engine holds state for (those seen
// and not forgotten since).
func (e *Engine) Cgroups() int {
	n := 0
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		n += len(sh.cgs)
		sh.mu.Unlock()
	}
	return n
}
