package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// guardHooks are the four sock_addr hooks the guard attaches to a cgroup.
var guardHooks = []struct {
	name   string
	attach ebpf.AttachType
	prog   func(*guardObjects) *ebpf.Program
}{
	{"connect4", ebpf.AttachCGroupInet4Connect, func(o *guardObjects) *ebpf.Program { return o.GuardConnect4 }},
	{"connect6", ebpf.AttachCGroupInet6Connect, func(o *guardObjects) *ebpf.Program { return o.GuardConnect6 }},
	{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, func(o *guardObjects) *ebpf.Program { return o.GuardSendmsg4 }},
	{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, func(o *guardObjects) *ebpf.Program { return o.GuardSendmsg6 }},
}

// Guard is the loaded connect guard (connect.bpf.c): it refuses, in the
// kernel, a guarded cgroup's connect() (TCP, UDP, also TCP fast open) and
// unconnected sendto()/sendmsg() to destinations the cgroup's policy
// forbids; the caller gets EPERM. A process that moves to a sub-cgroup of a
// guarded cgroup stays guarded: the programs apply the policy of the
// nearest ancestor that has one. It needs cgroup v2 and BPF links for
// cgroups (Linux 5.7+) to pin its attachments.
//
// What it does not stop: sockets connected before the policy was set, and
// connected UDP sockets sending without an address (their connect() was the
// moment checked).
type Guard struct {
	mu     sync.Mutex
	pinDir string
	objs   guardObjects
	links  map[uint64][]link.Link // per cgroup, without pinning (pinned links are files)
}

// LoadGuard loads the connect guard. With pinDir set, its maps are pinned
// there and a guard pinned earlier is reused: its policies, counters and
// attachments carry on. A guard pinned there with another map layout (an
// older vigil) is detached and replaced; its policies must be set again.
func LoadGuard(pinDir string) (*Guard, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	spec, err := loadGuard()
	if err != nil {
		return nil, fmt.Errorf("load guard spec: %w", err)
	}
	opts := &ebpf.CollectionOptions{}
	if pinDir != "" {
		if err := ensureBPFFS(pinDir); err != nil {
			return nil, err
		}
		opts.Maps.PinPath = pinDir
	} else {
		for _, ms := range spec.Maps {
			ms.Pinning = ebpf.PinNone
		}
	}
	g := &Guard{pinDir: pinDir, links: map[uint64][]link.Link{}}
	err = spec.LoadAndAssign(&g.objs, opts)
	if pinDir != "" && errors.Is(err, ebpf.ErrMapIncompatible) {
		if err := unpinGuard(pinDir); err != nil {
			return nil, fmt.Errorf("replace the guard pinned in %s: %w", pinDir, err)
		}
		err = spec.LoadAndAssign(&g.objs, opts)
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load guard objects: verifier rejected the program:\n%+v", ve)
		}
		return nil, fmt.Errorf("load guard objects: %w", err)
	}
	return g, nil
}

func (g *Guard) linkPin(cgroupID uint64, hook string) string {
	return filepath.Join(g.pinDir, fmt.Sprintf("link_%d_%s", cgroupID, hook))
}

// Attach attaches the guard's programs to the cgroup v2 directory
// cgroupDir, whose id is cgroupID; they apply to its sub-cgroups too.
// Attaching an attached cgroup does nothing. When Attach returns, the
// cgroup's policy is in force for every new connect and send.
func (g *Guard) Attach(cgroupDir string, cgroupID uint64) error {
	id, err := CgroupID(cgroupDir)
	if err != nil {
		return fmt.Errorf("guard cgroup %s: %w", cgroupDir, err)
	}
	if id != cgroupID {
		return fmt.Errorf("guard cgroup %s: its id is %d, not %d", cgroupDir, id, cgroupID)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.links[cgroupID]) == len(guardHooks) {
		return nil
	}
	var made []link.Link
	fail := func(err error) error {
		for _, l := range made {
			l.Unpin()
			l.Close()
		}
		return err
	}
	for _, h := range guardHooks {
		pin := ""
		if g.pinDir != "" {
			pin = g.linkPin(cgroupID, h.name)
			if _, err := os.Stat(pin); err == nil {
				continue // attached by this guard earlier, maybe by an agent since restarted
			}
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupDir, Attach: h.attach, Program: h.prog(&g.objs)})
		if err != nil {
			return fail(fmt.Errorf("attach guard %s to cgroup %s: %w", h.name, cgroupDir, err))
		}
		made = append(made, l)
		if pin != "" {
			if err := l.Pin(pin); err != nil {
				return fail(fmt.Errorf("pin guard %s link of cgroup %d: %w", h.name, cgroupID, err))
			}
		}
	}
	if g.pinDir == "" {
		g.links[cgroupID] = made
		return nil
	}
	// The pins hold the attachments; this Guard needs no fds for them.
	for _, l := range made {
		l.Close()
	}
	return nil
}

// Attached lists the cgroups the guard is attached to (with pinning, also
// those an earlier agent attached).
func (g *Guard) Attached() ([]uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	set := map[uint64]bool{}
	for id := range g.links {
		set[id] = true
	}
	if g.pinDir != "" {
		entries, err := os.ReadDir(g.pinDir)
		if err != nil {
			return nil, fmt.Errorf("read guard pin dir: %w", err)
		}
		for _, e := range entries {
			if id, ok := pinnedLinkCgroup(e.Name()); ok {
				set[id] = true
			}
		}
	}
	ids := make([]uint64, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// pinnedLinkCgroup parses a link pin's name, link_<cgroup id>_<hook>.
func pinnedLinkCgroup(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, "link_")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, "_")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(num, 10, 64)
	return id, err == nil
}

// guardKeyAddr is an address as the programs compare it: IPv4 (also
// IPv4-mapped IPv6) in the first four bytes, or IPv6.
func guardKeyAddr(a netip.Addr) (family uint8, addr [16]byte) {
	a = a.Unmap()
	if a.Is4() {
		v4 := a.As4()
		copy(addr[:], v4[:])
		return unix.AF_INET, addr
	}
	return unix.AF_INET6, a.As16()
}

// setFlag adds flag to the cgroup's policy.
func (g *Guard) setFlag(cgroupID uint64, flag guardGuardFlags) error {
	var r guardGuardRule
	if err := g.objs.GuardPolicy.Lookup(cgroupID, &r); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read guard policy of cgroup %d: %w", cgroupID, err)
	}
	r.Flags |= flag
	if err := g.objs.GuardPolicy.Update(cgroupID, r, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set guard policy of cgroup %d: %w", cgroupID, err)
	}
	return nil
}

// DenyDNSExcept refuses the cgroup's DNS traffic (port 53, UDP and TCP) to
// every address but allowed, which replaces the cgroup's earlier list.
func (g *Guard) DenyDNSExcept(cgroupID uint64, allowed []netip.Addr) error {
	want := map[guardGuardDnsKey]bool{}
	for _, a := range allowed {
		if !a.IsValid() {
			return fmt.Errorf("dns servers of cgroup %d: invalid address %v (want an IPv4 or IPv6 address)", cgroupID, a)
		}
		k := guardGuardDnsKey{CgroupId: cgroupID}
		k.Family, k.Addr = guardKeyAddr(a)
		want[k] = true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// The new servers first, then the flag, then the stale servers go: the
	// cgroup never sees a list with fewer servers than both lists share.
	for k := range want {
		if err := g.objs.GuardDnsAllowed.Update(k, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("allow dns server for cgroup %d: %w", cgroupID, err)
		}
	}
	if err := g.setFlag(cgroupID, guardGuardFlagsGUARD_DNS_ONLY_ALLOWED); err != nil {
		return err
	}
	stale, err := cgroupKeys(g.objs.GuardDnsAllowed, cgroupID, func(k guardGuardDnsKey) uint64 { return k.CgroupId })
	if err != nil {
		return err
	}
	for _, k := range stale {
		if !want[k] {
			if err := g.objs.GuardDnsAllowed.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("remove dns server of cgroup %d: %w", cgroupID, err)
			}
		}
	}
	return nil
}

// Deny refuses the cgroup's connections and datagrams to dst; port 0
// refuses every port of the address.
func (g *Guard) Deny(cgroupID uint64, dst netip.AddrPort) error {
	if !dst.Addr().IsValid() {
		return fmt.Errorf("deny for cgroup %d: invalid destination %v (want address:port, port 0 for any)", cgroupID, dst)
	}
	k := guardGuardDenyKey{CgroupId: cgroupID, Port: dst.Port()}
	k.Family, k.Addr = guardKeyAddr(dst.Addr())
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.objs.GuardDeny.Update(k, uint8(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("deny %v for cgroup %d: %w", dst, cgroupID, err)
	}
	return g.setFlag(cgroupID, guardGuardFlagsGUARD_DENY_LISTED)
}

// cgroupKeys lists a map's keys that belong to a cgroup.
func cgroupKeys[K comparable](m *ebpf.Map, cgroupID uint64, id func(K) uint64) ([]K, error) {
	var out []K
	var k K
	var v uint8
	it := m.Iterate()
	for it.Next(&k, &v) {
		if id(k) == cgroupID {
			out = append(out, k)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list guard entries of cgroup %d: %w", cgroupID, err)
	}
	return out, nil
}

// Refused is how many connects and sends the cgroup's policy refused.
func (g *Guard) Refused(cgroupID uint64) (uint64, error) {
	var n uint64
	if err := g.objs.GuardRefused.Lookup(cgroupID, &n); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("read refusals of cgroup %d: %w", cgroupID, err)
	}
	return n, nil
}

// Release lifts the cgroup's policy, forgets its refusal count and detaches
// the guard from it (also when an earlier agent attached it). Read Refused
// before.
func (g *Guard) Release(cgroupID uint64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	if err := g.objs.GuardPolicy.Delete(cgroupID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("remove guard policy: %w", err))
	}
	dns, err := cgroupKeys(g.objs.GuardDnsAllowed, cgroupID, func(k guardGuardDnsKey) uint64 { return k.CgroupId })
	errs = append(errs, err)
	for _, k := range dns {
		if err := g.objs.GuardDnsAllowed.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("remove dns server: %w", err))
		}
	}
	deny, err := cgroupKeys(g.objs.GuardDeny, cgroupID, func(k guardGuardDenyKey) uint64 { return k.CgroupId })
	errs = append(errs, err)
	for _, k := range deny {
		if err := g.objs.GuardDeny.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("remove denied destination: %w", err))
		}
	}
	if err := g.objs.GuardRefused.Delete(cgroupID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("remove refusal count: %w", err))
	}
	for _, l := range g.links[cgroupID] {
		errs = append(errs, detachLink(l))
	}
	delete(g.links, cgroupID)
	if g.pinDir != "" {
		for _, h := range guardHooks {
			errs = append(errs, detachPinned(g.linkPin(cgroupID, h.name)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release cgroup %d: %w", cgroupID, err)
	}
	return nil
}

// detachLink detaches l even if another process holds it, and closes it.
func detachLink(l link.Link) error {
	err := l.Detach()
	if errors.Is(err, ebpf.ErrNotSupported) {
		err = nil // a legacy attachment: closing it detaches it
	}
	l.Unpin()
	return errors.Join(err, l.Close())
}

// detachPinned detaches and unpins the link pinned at pin, if there is one.
func detachPinned(pin string) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		if rmErr := os.Remove(pin); rmErr != nil {
			return fmt.Errorf("load pinned link %s: %w", pin, err)
		}
		return nil
	}
	if err := detachLink(l); err != nil {
		return fmt.Errorf("detach pinned link %s: %w", pin, err)
	}
	if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin %s: %w", pin, err)
	}
	return nil
}

// Close frees what the Guard holds. Without pinning that detaches it from
// every cgroup; pinned, the attachments and policies stay in force for the
// next agent.
func (g *Guard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for id, ls := range g.links {
		for _, l := range ls {
			errs = append(errs, l.Close())
		}
		delete(g.links, id)
	}
	errs = append(errs, g.objs.Close())
	return errors.Join(errs...)
}

// UnpinGuard detaches a pinned guard from every cgroup and removes its pins.
func UnpinGuard(pinDir string) error {
	if err := unpinGuard(pinDir); err != nil {
		return err
	}
	if err := os.Remove(pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove guard pin dir: %w", err)
	}
	return nil
}

// unpinGuard empties a guard's pin dir: links (detached first) and maps.
func unpinGuard(pinDir string) error {
	entries, err := os.ReadDir(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read guard pin dir: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(pinDir, e.Name())
		if _, ok := pinnedLinkCgroup(e.Name()); ok {
			if err := detachPinned(p); err != nil {
				return err
			}
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("unpin %s: %w", p, err)
		}
	}
	return nil
}
