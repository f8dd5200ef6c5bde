package event

import (
	"fmt"
	"runtime"
	"sort"
	"strconv"
)

// ABI names a syscall numbering: the same number means different syscalls
// on different architectures (59 is execve on x86_64, oldolduname on i386).
type ABI string

// The syscall ABIs vigil knows.
const (
	X8664 ABI = "x86_64"
	I386  ABI = "i386"
	ARM64 ABI = "arm64"
)

// ABIs lists the known ABIs, for help texts and errors.
var ABIs = []ABI{X8664, I386, ARM64}

// NativeABI is the ABI of the machine vigil runs on.
func NativeABI() ABI {
	if runtime.GOARCH == "arm64" {
		return ARM64
	}
	return X8664
}

// ParseABI checks an ABI name given by a user.
func ParseABI(s string) (ABI, error) {
	for _, a := range ABIs {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("abi %q: unknown, use one of x86_64, i386, arm64", s)
}

type abiTable struct {
	names  []string // by number; "" where unused
	byName map[string]int
}

var tables = map[ABI]*abiTable{
	X8664: build(syscallsX8664),
	I386:  build(syscallsI386),
	ARM64: build(syscallsARM64),
}

func build(m map[int]string) *abiTable {
	max := 0
	for nr := range m {
		if nr > max {
			max = nr
		}
	}
	t := &abiTable{names: make([]string, max+1), byName: make(map[string]int, len(m))}
	for nr, name := range m {
		t.names[nr] = name
		t.byName[name] = nr
	}
	return t
}

// Name returns the name of syscall nr in this ABI, or "sys_<nr>" when the
// number is unknown (so a name is never empty and never wrong).
func (a ABI) Name(nr int) string {
	t := tables[a]
	if t != nil && nr >= 0 && nr < len(t.names) && t.names[nr] != "" {
		return t.names[nr]
	}
	return "sys_" + strconv.Itoa(nr)
}

// Nr returns the number of the named syscall in this ABI. It also accepts
// the "sys_<nr>" form that Name produces for unknown numbers.
func (a ABI) Nr(name string) (int, bool) {
	if t := tables[a]; t != nil {
		if nr, ok := t.byName[name]; ok {
			return nr, true
		}
	}
	if len(name) > 4 && name[:4] == "sys_" {
		if nr, err := strconv.Atoi(name[4:]); err == nil && nr >= 0 {
			return nr, true
		}
	}
	return 0, false
}

// Names returns every syscall name of the ABI, sorted.
func (a ABI) Names() []string {
	t := tables[a]
	if t == nil {
		return nil
	}
	out := make([]string, 0, len(t.byName))
	for n := range t.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// MaxNr is the highest syscall number the ABI's table knows.
func (a ABI) MaxNr() int {
	if t := tables[a]; t != nil {
		return len(t.names) - 1
	}
	return -1
}

// SyscallName is Name in the native ABI.
func SyscallName(nr int) string { return NativeABI().Name(nr) }

// SyscallNr is Nr in the native ABI.
func SyscallNr(name string) (int, bool) { return NativeABI().Nr(name) }
