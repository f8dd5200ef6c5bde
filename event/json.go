package event

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// ErrnoName is the symbolic name of an errno ("ENOENT"), or "" if unknown.
func ErrnoName(errno int) string { return unix.ErrnoName(unix.Errno(errno)) }

// secondText is one second of UTC time formatted as RFC 3339 up to the
// seconds ("2006-01-02T15:04:05"): the events of a batch share it.
type secondText struct {
	sec  int64
	text [19]byte
}

var lastSecond atomic.Pointer[secondText]

// appendTime appends t as time.RFC3339Nano in UTC, as
// t.UTC().AppendFormat(b, time.RFC3339Nano) does, formatting the date and
// clock once a second (a third of an event's JSON cost otherwise).
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	sec := t.Unix()
	st := lastSecond.Load()
	if st == nil || st.sec != sec {
		y := t.Year()
		if y < 0 || y > 9999 {
			return t.AppendFormat(b, time.RFC3339Nano)
		}
		st = &secondText{sec: sec}
		t.Truncate(time.Second).AppendFormat(st.text[:0], "2006-01-02T15:04:05")
		lastSecond.Store(st)
	}
	b = append(b, st.text[:]...)
	if ns := t.Nanosecond(); ns != 0 {
		var d [10]byte
		d[0] = '.'
		for i, v := 9, ns; i >= 1; i-- {
			d[i] = byte('0' + v%10)
			v /= 10
		}
		n := 10
		for d[n-1] == '0' {
			n--
		}
		b = append(b, d[:n]...)
	}
	return append(b, 'Z')
}

// AppendJSON appends the event's JSON form (one object, no newline) to b.
// It allocates nothing beyond growing b, so a reader can stream millions of
// events per second. Field names are the contract of `vigil trace --json`:
//
//	{"seq":1,"time":"…","ktime":…,"cgroup":…,"container":{…},"pid":…,"tid":…,
//	 "comm":"…","syscall":"openat","nr":257,"args":[…],"ret":-2,"errno":"ENOENT",
//	 "path":"…","path2":"…","argv":["…"],"addr":"127.0.0.1:9","path_user":"…","addr_user":"…",
//	 "clone_flags":…,"env":["LD_PRELOAD=…"],"flags":"noreturn","count":…}
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"time":"`...)
	b = appendTime(b, e.Time)
	b = append(b, `","ktime":`...)
	b = strconv.AppendUint(b, e.KTime, 10)
	b = append(b, `,"cgroup":`...)
	b = strconv.AppendUint(b, e.CgroupID, 10)
	if c := e.Container; c != nil {
		b = append(b, `,"container":{"id":`...)
		b = appendString(b, c.ID)
		b = append(b, `,"name":`...)
		b = appendString(b, c.Name)
		b = append(b, `,"pod":`...)
		b = appendString(b, c.Pod)
		b = append(b, `,"namespace":`...)
		b = appendString(b, c.Namespace)
		b = append(b, `,"image":`...)
		b = appendString(b, c.Image)
		b = appendKubernetes(b, c)
		b = append(b, '}')
	}
	b = append(b, `,"pid":`...)
	b = strconv.AppendUint(b, uint64(e.PID), 10)
	b = append(b, `,"tid":`...)
	b = strconv.AppendUint(b, uint64(e.TID), 10)
	b = append(b, `,"comm":`...)
	b = appendString(b, e.Comm)
	b = append(b, `,"syscall":"`...)
	b = append(b, e.Name()...)
	b = append(b, `","nr":`...)
	b = strconv.AppendInt(b, int64(e.Nr), 10)
	b = append(b, `,"args":[`...)
	for i, a := range e.Args {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, a, 10)
	}
	b = append(b, `],"ret":`...)
	b = strconv.AppendInt(b, e.Ret, 10)
	if n := e.Errno(); n != 0 {
		if name := ErrnoName(n); name != "" {
			b = append(b, `,"errno":"`...)
			b = append(b, name...)
			b = append(b, '"')
		}
	}
	if e.Path != "" {
		b = append(b, `,"path":`...)
		b = appendString(b, e.Path)
	}
	if e.Path2 != "" {
		b = append(b, `,"path2":`...)
		b = appendString(b, e.Path2)
	}
	if len(e.Argv) > 0 {
		b = append(b, `,"argv":[`...)
		for i, a := range e.Argv {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, a)
		}
		b = append(b, ']')
	}
	if e.Addr.Family != 0 {
		b = appendAddr(b, `,"addr":"`, e.Addr)
	}
	if e.PathUser != "" {
		b = append(b, `,"path_user":`...)
		b = appendString(b, e.PathUser)
	}
	if e.AddrUser.Family != 0 {
		b = appendAddr(b, `,"addr_user":"`, e.AddrUser)
	}
	if e.CloneFlags != 0 {
		b = append(b, `,"clone_flags":`...)
		b = strconv.AppendUint(b, e.CloneFlags, 10)
	}
	if len(e.Env) > 0 {
		b = append(b, `,"env":[`...)
		for i, a := range e.Env {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, a)
		}
		b = append(b, ']')
	}
	if e.Flags != 0 {
		b = append(b, `,"flags":"`...)
		b = append(b, e.Flags.String()...)
		b = append(b, '"')
	}
	if e.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendUint(b, e.Count, 10)
	}
	return append(b, '}')
}

// appendAddr appends key (which opens the string) and the address.
func appendAddr(b []byte, key string, a Addr) []byte {
	b = append(b, key...)
	b = append(b, a.String()...) // no quotes or controls can occur but in a unix path
	b = append(b, '"')
	if a.Family == AFUnix {
		b = b[:len(b)-len(a.Path)-1]
		b = appendEscaped(b, a.Path)
		b = append(b, '"')
	}
	return b
}

// MarshalJSON implements json.Marshaler with AppendJSON.
func (e *Event) MarshalJSON() ([]byte, error) { return e.AppendJSON(nil), nil }

type jsonEvent struct {
	Seq        uint64     `json:"seq"`
	Time       time.Time  `json:"time"`
	KTime      uint64     `json:"ktime"`
	Cgroup     uint64     `json:"cgroup"`
	Container  *Container `json:"container"`
	PID        uint32     `json:"pid"`
	TID        uint32     `json:"tid"`
	Comm       string     `json:"comm"`
	Syscall    string     `json:"syscall"`
	Nr         *int32     `json:"nr"`
	Args       [6]uint64  `json:"args"`
	Ret        int64      `json:"ret"`
	Path       string     `json:"path"`
	Path2      string     `json:"path2"`
	Argv       []string   `json:"argv"`
	Addr       string     `json:"addr"`
	PathUser   string     `json:"path_user"`
	AddrUser   string     `json:"addr_user"`
	CloneFlags uint64     `json:"clone_flags"`
	Env        []string   `json:"env"`
	Flags      string     `json:"flags"`
	Count      uint64     `json:"count"`
}

// UnmarshalJSON reads the AppendJSON form. When "nr" is missing the number
// comes from "syscall" in the native ABI, so hand-written event files work.
func (e *Event) UnmarshalJSON(data []byte) error {
	var j jsonEvent
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	addr, err := ParseAddr(j.Addr)
	if err != nil {
		return err
	}
	addrUser, err := ParseAddr(j.AddrUser)
	if err != nil {
		return fmt.Errorf("addr_user: %w", err)
	}
	var flags Flags
	if j.Flags != "" {
		for _, f := range splitComma(j.Flags) {
			found := false
			for i, n := range flagNames {
				if n == f {
					flags |= 1 << i
					found = true
				}
			}
			if !found {
				return fmt.Errorf("flags %q: unknown flag %q, allowed: %s", j.Flags, f, strings.Join(flagNames, ", "))
			}
		}
	}
	var nr int32
	switch {
	case j.Nr != nil:
		nr = *j.Nr
	case j.Syscall != "":
		n, ok := SyscallNr(j.Syscall)
		if !ok {
			return fmt.Errorf("syscall %q: unknown in the %s ABI", j.Syscall, NativeABI())
		}
		nr = int32(n)
	default:
		return fmt.Errorf("event: needs \"nr\" or \"syscall\"")
	}
	*e = Event{Seq: j.Seq, KTime: j.KTime, Time: j.Time, CgroupID: j.Cgroup, Container: j.Container,
		PID: j.PID, TID: j.TID, Comm: j.Comm, Nr: nr, Args: j.Args, Ret: j.Ret, Flags: flags,
		Count: j.Count, Path: j.Path, Path2: j.Path2, Argv: j.Argv, Addr: addr,
		PathUser: j.PathUser, AddrUser: addrUser, CloneFlags: j.CloneFlags, Env: j.Env}
	return nil
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

// appendKubernetes appends the container's pod uid, pod labels (sorted
// by key), node and owner, each only when set.
func appendKubernetes(b []byte, c *Container) []byte {
	if c.PodUID != "" {
		b = append(b, `,"pod_uid":`...)
		b = appendString(b, c.PodUID)
	}
	if len(c.PodLabels) > 0 {
		b = append(b, `,"pod_labels":{`...)
		for i, k := range slices.Sorted(maps.Keys(c.PodLabels)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, c.PodLabels[k])
		}
		b = append(b, '}')
	}
	if c.Node != "" {
		b = append(b, `,"node":`...)
		b = appendString(b, c.Node)
	}
	if c.OwnerKind != "" {
		b = append(b, `,"owner_kind":`...)
		b = appendString(b, c.OwnerKind)
		b = append(b, `,"owner_name":`...)
		b = appendString(b, c.OwnerName)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

const hex = "0123456789abcdef"

// appendEscaped writes s as the inside of a JSON string. Bytes that are not
// valid UTF-8 (paths may hold any byte) become U+FFFD, as encoding/json does.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\t':
				b = append(b, '\\', 't')
			case '\r':
				b = append(b, '\\', 'r')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}
