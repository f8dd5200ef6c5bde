package detector

import "testing"

// TestConnSlotsSlide: a long-lived connection keeps the recent history
// of its activity slots when they pass the 64-slot window (5 min 20 s):
// the window slides instead of starting over, so a pool connection
// talking every 10 s stays periodic in the rules' 30 s window at any age.
func TestConnSlotsSlide(t *testing.T) {
	var o outConns
	o.connect(100, 5, 0)
	for s := int64(0); s <= 200; s += 2 { // a message every 10 s
		o.io(100, 5, s*connSlot+1)
		from, to := (s-6)*connSlot, s*connSlot+1
		if s >= 8 && o.periodic(from, to) != 1 {
			t.Fatalf("slot %d (%d s): connection not periodic over the last 30 s (base %d, slots %#x)", s, s*5, o.c[0].base, o.c[0].slots)
		}
	}
	c := o.c[0]
	if c.base != 200-63 || c.slots&(1<<63) == 0 {
		t.Errorf("after slot 200: base %d, slot 200 bit %v; want base 137 and slot 200 marked", c.base, c.slots&(1<<63) != 0)
	}
	// A silence longer than the window clears it.
	o.io(100, 5, 400*connSlot)
	if c := o.c[0]; c.slots != 1<<63 || c.base != 400-63 {
		t.Errorf("after a long silence: base %d slots %#x, want only slot 400", c.base, c.slots)
	}
}
