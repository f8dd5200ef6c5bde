package detector

// gramTable maps a gram's hash (hashToks) to its statistics: an
// open-addressing hash table with linear probing, no removal. Scoring a
// window looks up every syscall's gram (and, for a gram not seen in
// training, up to 2*(ngramOrder-1) more): a probe over a dense array of
// keys, then one read of the value, is cheaper than a Go map's look-up.
// The zero gramTable is empty.
type gramTable struct {
	keys  []uint64 // 0: an empty slot
	vals  []gramStat
	shift uint8 // 64 - log2(len(keys))
	n     int
	// the key 0, which marks empty slots, is held apart
	hasZero bool
	zero    gramStat
}

// gramMinSlots is a new table's size.
const gramMinSlots = 64

// slot spreads h over the table (Fibonacci hashing: the key's high bits
// after a multiplication, so every bit of it counts).
func (t *gramTable) slot(h uint64) int {
	return int((h * 0x9e3779b97f4a7c15) >> t.shift)
}

// get returns h's statistics and whether h is in the table.
func (t *gramTable) get(h uint64) (gramStat, bool) {
	if h == 0 {
		return t.zero, t.hasZero
	}
	if t.n == 0 {
		return gramStat{}, false
	}
	mask := len(t.keys) - 1
	for i := t.slot(h); ; i = (i + 1) & mask {
		switch t.keys[i] {
		case h:
			return t.vals[i], true
		case 0:
			return gramStat{}, false
		}
	}
}

// at returns h's statistics, zero when h is not in the table.
func (t *gramTable) at(h uint64) gramStat {
	st, _ := t.get(h)
	return st
}

// has reports whether h is in the table.
func (t *gramTable) has(h uint64) bool {
	_, ok := t.get(h)
	return ok
}

// set stores h's statistics.
func (t *gramTable) set(h uint64, st gramStat) {
	if h == 0 {
		if !t.hasZero {
			t.hasZero = true
			t.n++
		}
		t.zero = st
		return
	}
	if 4*(t.n+1) > 3*len(t.keys) {
		t.grow()
	}
	mask := len(t.keys) - 1
	i := t.slot(h)
	for t.keys[i] != 0 && t.keys[i] != h {
		i = (i + 1) & mask
	}
	if t.keys[i] == 0 {
		t.keys[i] = h
		t.n++
	}
	t.vals[i] = st
}

// reserve sizes an empty table for n keys.
func (t *gramTable) reserve(n int) {
	size := gramMinSlots
	for 4*n > 3*size {
		size *= 2
	}
	if size > len(t.keys) && t.n == 0 {
		t.alloc(size)
	}
}

func (t *gramTable) alloc(size int) {
	t.keys = make([]uint64, size)
	t.vals = make([]gramStat, size)
	t.shift = 64
	for s := size; s > 1; s >>= 1 {
		t.shift--
	}
}

// grow doubles the table (or makes the first one) and places every key
// again.
func (t *gramTable) grow() {
	keys, vals := t.keys, t.vals
	size := 2 * len(keys)
	if size < gramMinSlots {
		size = gramMinSlots
	}
	t.alloc(size)
	mask := size - 1
	for j, h := range keys {
		if h == 0 {
			continue
		}
		i := t.slot(h)
		for t.keys[i] != 0 {
			i = (i + 1) & mask
		}
		t.keys[i], t.vals[i] = h, vals[j]
	}
}

// len is the number of keys held.
func (t *gramTable) len() int { return t.n }

// each calls f with every key and a pointer to its statistics, which f
// may change.
func (t *gramTable) each(f func(h uint64, st *gramStat)) {
	if t.hasZero {
		f(0, &t.zero)
	}
	for i, h := range t.keys {
		if h != 0 {
			f(h, &t.vals[i])
		}
	}
}
