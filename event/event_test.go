package event

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestABINames(t *testing.T) {
	for _, tc := range []struct {
		abi  ABI
		nr   int
		name string
	}{
		{X8664, 0, "read"}, {X8664, 59, "execve"}, {X8664, 257, "openat"}, {X8664, 110, "getppid"},
		{I386, 11, "execve"}, {I386, 5, "open"}, {I386, 102, "socketcall"},
		{ARM64, 221, "execve"}, {ARM64, 56, "openat"}, {ARM64, 25, "fcntl"},
	} {
		t.Run(string(tc.abi)+"/"+tc.name, func(t *testing.T) {
			if got := tc.abi.Name(tc.nr); got != tc.name {
				t.Errorf("Name(%d) = %q, want %q", tc.nr, got, tc.name)
			}
			if nr, ok := tc.abi.Nr(tc.name); !ok || nr != tc.nr {
				t.Errorf("Nr(%q) = %d,%v, want %d", tc.name, nr, ok, tc.nr)
			}
		})
	}
	if got := X8664.Name(9999); got != "sys_9999" {
		t.Errorf("unknown number: %q", got)
	}
	if nr, ok := X8664.Nr("sys_9999"); !ok || nr != 9999 {
		t.Errorf("sys_ form: %d %v", nr, ok)
	}
	if _, ok := X8664.Nr("nosuchcall"); ok {
		t.Error("unknown name resolved")
	}
	if _, err := ParseABI("sparc"); err == nil || !strings.Contains(err.Error(), "x86_64, i386, arm64") {
		t.Errorf("ParseABI error should list the allowed values: %v", err)
	}
}

func TestAddrRoundTrip(t *testing.T) {
	for _, a := range []Addr{
		{},
		{Family: AFInet, IP: netip.MustParseAddr("127.0.0.1"), Port: 9},
		{Family: AFInet6, IP: netip.MustParseAddr("::1"), Port: 53},
		{Family: AFUnix, Path: "/run/containerd/containerd.sock"},
		{Family: AFUnix, Path: "@abstract"},
		{Family: 17},
	} {
		got, err := ParseAddr(a.String())
		if err != nil || got != a {
			t.Errorf("%q: got %+v, %v", a.String(), got, err)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	ev := Event{
		Seq: 42, KTime: 123456789, Time: time.Unix(1700000000, 123).UTC(), CgroupID: 7,
		Container: &Container{ID: "abc", Name: "web", Pod: "p", Namespace: "ns", Image: "busybox"},
		PID:       10, TID: 11, Comm: "probe\"x", Nr: 257, Args: [6]uint64{1, 2, 3, 4, 5, 1 << 63},
		Ret: -2, Flags: NoReturn | Truncated, Path: "/tmp/\x01bad\nname", Path2: "/b",
		Argv: []string{"/bin/sh", "-c", "echo hi"},
		Addr: Addr{Family: AFUnix, Path: "/tmp/a\"b"},
	}
	b := ev.AppendJSON(nil)
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	if !strings.Contains(string(b), `"syscall":"openat"`) || !strings.Contains(string(b), `"errno":"ENOENT"`) {
		t.Errorf("missing name or errno: %s", b)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, ev) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, ev)
	}
}

// TestJSONUserStrings: the user's strings of a record whose kernel strings
// differ round-trip under path_user and addr_user with the user-differs flag;
// records without them keep their old form, and old records still read.
func TestJSONUserStrings(t *testing.T) {
	ev := Event{Seq: 3, Time: time.Unix(1, 0).UTC(), Nr: 257, Ret: 3, Flags: UserDiffers,
		Path: "/etc/shadow", PathUser: "/tmp/harm\"less",
		Addr:     Addr{Family: AFInet, IP: netip.MustParseAddr("10.0.0.1"), Port: 443},
		AddrUser: Addr{Family: AFUnix, Path: "/run/a\"b.sock"},
	}
	b := ev.AppendJSON(nil)
	for _, want := range []string{`"path_user":"/tmp/harm\"less"`, `"addr_user":"unix:/run/a\"b.sock"`, `"flags":"user-differs"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s: no %s", b, want)
		}
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, ev) {
		t.Errorf("round trip: %+v, %v\nwant %+v", back, err, ev)
	}
	plain := Event{Seq: 3, Nr: 257, Path: "/etc/passwd"}
	if b := plain.AppendJSON(nil); strings.Contains(string(b), "_user") {
		t.Errorf("user fields written without a difference: %s", b)
	}
	old := `{"seq":1,"syscall":"openat","ret":3,"path":"/etc/passwd","addr":"127.0.0.1:9","flags":"truncated"}`
	if err := json.Unmarshal([]byte(old), &back); err != nil || back.PathUser != "" || !back.AddrUser.IsZero() || back.Flags != Truncated {
		t.Errorf("old record: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"syscall":"connect","addr_user":"nonsense"}`), &back); err == nil {
		t.Error("a bad addr_user read without error")
	}
}

func TestJSONInvalidUTF8(t *testing.T) {
	ev := Event{Nr: 2, Path: "a\xffb"}
	b := ev.AppendJSON(nil)
	if !json.Valid(b) || !strings.Contains(string(b), `"path":"a\ufffdb"`) {
		t.Errorf("got %s", b)
	}
}

func TestUnmarshalByName(t *testing.T) {
	var ev Event
	if err := json.Unmarshal([]byte(`{"syscall":"getppid","ret":1}`), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Nr != int32(mustNr(t, "getppid")) || ev.Ret != 1 {
		t.Errorf("got %+v", ev)
	}
	for _, bad := range []string{`{"ret":1}`, `{"syscall":"nosuch"}`, `{"syscall":"read","flags":"weird"}`, `{"syscall":"read","addr":"nonsense"}`} {
		if err := json.Unmarshal([]byte(bad), &ev); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func mustNr(t *testing.T, name string) int {
	nr, ok := SyscallNr(name)
	if !ok {
		t.Fatalf("no %s", name)
	}
	return nr
}

func BenchmarkAppendJSON(b *testing.B) {
	ev := Event{Seq: 1, Nr: 257, Path: "/etc/passwd", Comm: "cat", Ret: 3, Time: time.Now()}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = ev.AppendJSON(buf[:0])
	}
}

// TestJSONContainerKubernetes: the pod's uid and labels and the node
// round-trip when set (labels sorted by key), and are absent when not, so
// that consumers of the older form read both.
func TestJSONContainerKubernetes(t *testing.T) {
	ev := Event{Seq: 1, Time: time.Unix(1, 0).UTC(), Nr: 0,
		Container: &Container{ID: "abc", Name: "web", Pod: "p", Namespace: "ns", Image: "busybox",
			PodUID: "9c1d-77", PodLabels: map[string]string{"tier": "front", "app": `we"b`}, Node: "node-1",
			OwnerKind: "Deployment", OwnerName: "web"}}
	b := ev.AppendJSON(nil)
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	if want := `"image":"busybox","pod_uid":"9c1d-77","pod_labels":{"app":"we\"b","tier":"front"},"node":"node-1","owner_kind":"Deployment","owner_name":"web"}`; !strings.Contains(string(b), want) {
		t.Errorf("container JSON %s lacks %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, ev) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, ev)
	}
	ev.Container = &Container{ID: "abc"}
	if b := string(ev.AppendJSON(nil)); strings.Contains(b, "pod_uid") || strings.Contains(b, "pod_labels") || strings.Contains(b, `"node"`) || strings.Contains(b, "owner") {
		t.Errorf("unset fields written: %s", b)
	}
}

// TestAppendTime: the cached formatting writes what time.RFC3339Nano
// writes, for every kind of fraction, across seconds and back, and for
// zones other than UTC.
func TestAppendTime(t *testing.T) {
	base := time.Date(2026, 12, 1, 23, 59, 58, 0, time.UTC)
	est := time.FixedZone("EST", -5*3600)
	var ts []time.Time
	for _, ns := range []int{0, 1, 10, 120, 999999999, 500000000, 123456789, 100000, 7} {
		for _, s := range []int{0, 1, 2, 0} { // back to an earlier second
			ts = append(ts, base.Add(time.Duration(s)*time.Second+time.Duration(ns)))
		}
	}
	ts = append(ts, base.In(est), base.Add(1234).In(est), time.Unix(0, 0), time.Time{}, time.Date(12000, 1, 1, 0, 0, 0, 5, time.UTC))
	for _, tm := range ts {
		want := tm.UTC().AppendFormat(nil, time.RFC3339Nano)
		if got := appendTime([]byte("x"), tm); string(got) != "x"+string(want) {
			t.Errorf("appendTime(%v) = %s, want x%s", tm, got, want)
		}
	}
}

// TestJSONCloneFlagsEnv: clone3's flags and an exec's loader variables
// round-trip as clone_flags and env; CloneFlagsOf finds the flags of
// clone and unshare in arg0, of clone3 in CloneFlags.
func TestJSONCloneFlagsEnv(t *testing.T) {
	clone3, _ := SyscallNr("clone3")
	execve, _ := SyscallNr("execve")
	unshare, _ := SyscallNr("unshare")
	setns, _ := SyscallNr("setns")
	for _, ev := range []Event{
		{Seq: 1, Time: time.Unix(1, 0).UTC(), Nr: int32(clone3), Ret: 7, CloneFlags: 0x10000000},
		{Seq: 2, Time: time.Unix(1, 0).UTC(), Nr: int32(execve), Path: "/bin/ls", Argv: []string{"ls"}, Env: []string{"LD_PRELOAD=/tmp/\"x\".so"}},
	} {
		b := ev.AppendJSON(nil)
		var back Event
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, ev) {
			t.Errorf("round trip of %s: %+v, %v", b, back, err)
		}
	}
	if b := (&Event{Nr: int32(execve)}).AppendJSON(nil); strings.Contains(string(b), "clone_flags") || strings.Contains(string(b), "env") {
		t.Errorf("empty fields written: %s", b)
	}
	for _, tc := range []struct {
		ev   Event
		want uint64
		ok   bool
	}{
		{Event{Nr: int32(clone3), Args: [6]uint64{0x7ffc0000, 88}, CloneFlags: 0x10000000, Ret: 42}, 0x10000000, true},
		{Event{Nr: int32(clone3), Args: [6]uint64{0x7ffc0000, 88}, CloneFlags: 0x9ed460}, 0, false}, // the child's return
		{Event{Nr: int32(unshare), Args: [6]uint64{0x20000}}, 0x20000, true},
		{Event{Nr: int32(setns), Args: [6]uint64{3, 0x40000000}}, 0x40000000, true},
		{Event{Nr: int32(execve), Args: [6]uint64{0x20000}}, 0, false},
	} {
		if got, ok := tc.ev.CloneFlagsOf(); got != tc.want || ok != tc.ok {
			t.Errorf("%s: CloneFlagsOf %#x %v, want %#x %v", tc.ev.Name(), got, ok, tc.want, tc.ok)
		}
	}
}
