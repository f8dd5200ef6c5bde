package detector

// lru is a bounded map that evicts its least recently used entry: a map
// plus an intrusive doubly linked list, O(1) for every operation. Values
// live in their nodes, so a *V stays valid until its key is removed or
// evicted. Nodes of removed keys are kept (up to lruSpare) and handed out
// again with their old value, so a value that owns buffers can reuse them.
// The zero lru is empty and unbounded; set max before use.
type lru[K comparable, V any] struct {
	m       map[K]*lruNode[K, V]
	head    lruNode[K, V] // sentinel: head.next is the most, head.prev the least recently used
	max     int
	spare   *lruNode[K, V] // removed nodes, linked through next
	nspare  int
	onEvict func(k K, v *V) // called before a value leaves (evicted or removed)
}

type lruNode[K comparable, V any] struct {
	key        K
	val        V
	prev, next *lruNode[K, V]
}

const lruSpare = 16

func (l *lru[K, V]) len() int { return len(l.m) }

func (l *lru[K, V]) unlink(n *lruNode[K, V]) {
	n.prev.next = n.next
	n.next.prev = n.prev
}

func (l *lru[K, V]) pushFront(n *lruNode[K, V]) {
	if l.head.next == nil {
		l.head.next, l.head.prev = &l.head, &l.head
	}
	n.prev = &l.head
	n.next = l.head.next
	n.next.prev = n
	l.head.next = n
}

// get returns k's value and marks it used, or nil.
func (l *lru[K, V]) get(k K) *V {
	n := l.m[k]
	if n == nil {
		return nil
	}
	if l.head.next != n {
		l.unlink(n)
		l.pushFront(n)
	}
	return &n.val
}

// peek returns k's value without marking it used, or nil.
func (l *lru[K, V]) peek(k K) *V {
	if n := l.m[k]; n != nil {
		return &n.val
	}
	return nil
}

// put returns k's value, marking it used; fresh reports that it was
// created, in which case *V holds whatever a spare node last held (the
// caller resets it). At max entries the least recently used one goes.
func (l *lru[K, V]) put(k K) (v *V, fresh bool) {
	if n := l.m[k]; n != nil {
		if l.head.next != n {
			l.unlink(n)
			l.pushFront(n)
		}
		return &n.val, false
	}
	if l.m == nil {
		l.m = make(map[K]*lruNode[K, V])
	}
	if l.max > 0 && len(l.m) >= l.max {
		l.removeNode(l.head.prev)
	}
	n := l.spare
	if n != nil {
		l.spare, n.next = n.next, nil
		l.nspare--
	} else {
		n = &lruNode[K, V]{}
	}
	n.key = k
	l.m[k] = n
	l.pushFront(n)
	return &n.val, true
}

// remove drops k.
func (l *lru[K, V]) remove(k K) {
	if n := l.m[k]; n != nil {
		l.removeNode(n)
	}
}

// oldest returns the least recently used key.
func (l *lru[K, V]) oldest() (K, bool) {
	if len(l.m) == 0 {
		var zero K
		return zero, false
	}
	return l.head.prev.key, true
}

func (l *lru[K, V]) removeNode(n *lruNode[K, V]) {
	if l.onEvict != nil {
		l.onEvict(n.key, &n.val)
	}
	l.unlink(n)
	delete(l.m, n.key)
	n.prev = nil
	if l.nspare < lruSpare {
		n.next = l.spare
		l.spare = n
		l.nspare++
	} else {
		n.next = nil
	}
}

// each calls f for every entry from the least to the most recently used.
func (l *lru[K, V]) each(f func(k K, v *V)) {
	if len(l.m) == 0 {
		return
	}
	for n := l.head.prev; n != &l.head; n = n.prev {
		f(n.key, &n.val)
	}
}

// clearAll removes every entry.
func (l *lru[K, V]) clearAll() {
	for len(l.m) > 0 {
		l.removeNode(l.head.prev)
	}
}
