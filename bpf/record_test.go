package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/privtest"
)

// TestRecordLogic drives the tracer's record path (sequence numbers,
// counters, ring output, comm cache) through BPF_PROG_TEST_RUN with made-up
// syscalls, and decodes what it wrote with the reader's decoder.
func TestRecordLogic(t *testing.T) {
	privtest.Require(t)
	spec, err := loadTracertest()
	if err != nil {
		t.Fatal(err)
	}
	for _, ms := range spec.Maps {
		ms.Pinning = ebpf.PinNone
	}
	spec.Maps["vigil_events"].MaxEntries = uint32(os.Getpagesize())
	var objs tracertestObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("verifier:\n%+v", ve)
		}
		t.Fatal(err)
	}
	defer objs.Close()
	if err := objs.VigilGen.Put(uint32(0), uint64(1)); err != nil {
		t.Fatal(err)
	}
	// The program takes its cgroup from the running task: move the test
	// into a cgroup of its own for the duration.
	cgrp, err := NewCgroup(fmt.Sprintf("vigil-test-record-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	home, err := ownCgroup()
	if err != nil {
		t.Fatal(err)
	}
	if err := cgrp.Join(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		os.WriteFile(filepath.Join(home, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0)
		cgrp.Remove()
	}()
	cg := cgrp.ID
	getppid := uint64(nr(t, "getppid"))
	run := func(tracked, arg uint64) uint32 {
		ret, err := objs.VigilTestRecord.Run(&ebpf.RunOptions{Context: []uint64{tracked, getppid, 7, arg}})
		if err != nil {
			t.Fatal(err)
		}
		return ret
	}
	// One thread on one CPU, so the per-CPU comm cache sees one writer.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	defer unix.SchedSetaffinity(0, &old)

	// An untracked cgroup is ignored.
	if got := run(1, 0); got != 1 {
		t.Fatalf("untracked cgroup: program returned %d, want 1", got)
	}
	fd, err := openCgroup(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := objs.VigilCgroups.Put(uint32(fd), vigilCgState{}); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := uint64(0); i < n; i++ {
		run(1, i)
	}
	var st vigilCgState
	if err := objs.VigilCgroups.Lookup(uint32(fd), &st); err != nil {
		t.Fatal(err)
	}
	if st.Seq != n || st.Emitted+st.Dropped != n || st.Dropped == 0 || st.Emitted == 0 {
		t.Fatalf("counters %+v: want seen %d = emitted + dropped, with a one-page ring overflowing", st, n)
	}

	rd, err := ringbuf.NewReader(objs.VigilEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	d := newDecoder()
	self, _ := os.ReadFile("/proc/thread-self/comm")
	comm := strings.TrimSpace(string(self))
	var ev event.Event
	var got, withComm uint64
	for rd.AvailableBytes() > 0 {
		rec, err := rd.Read()
		if err != nil {
			t.Fatal(err)
		}
		if rec.RawSample[45]&fComm != 0 {
			withComm++
		}
		if !d.decode(rec.RawSample, &ev) {
			t.Fatalf("record %d does not decode", got)
		}
		got++
		// One CPU, one thread: the records that fit are the first ones.
		if ev.Seq != got || ev.Args[0] != got-1 || ev.Ret != 7 || ev.CgroupID != cg || int64(ev.Nr) != int64(getppid) {
			t.Fatalf("record %d: %+v", got, ev)
		}
		if ev.Comm != comm {
			t.Fatalf("record %d: comm %q, want %q", got, ev.Comm, comm)
		}
	}
	if got != st.Emitted {
		t.Fatalf("read %d records, emitted %d", got, st.Emitted)
	}
	if withComm != 1 {
		t.Fatalf("%d records carried the comm; the same thread on one CPU should send it once", withComm)
	}
}

// ownCgroup is the cgroup v2 directory of the calling process.
func ownCgroup() (string, error) {
	root, err := CgroupRoot()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(root, rest), nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 line in /proc/self/cgroup")
}

// record builds a record as syscalls.bpf.c writes it.
func record(nr int32, nargs int, comm string, items ...[2]any) []byte {
	b := make([]byte, hdrSize, 256)
	le := binary.LittleEndian
	le.PutUint64(b[0:], 123)
	le.PutUint64(b[8:], 7)
	le.PutUint64(b[16:], 1)
	le.PutUint64(b[24:], 0)
	le.PutUint32(b[32:], 10)
	le.PutUint32(b[36:], 11)
	le.PutUint32(b[40:], uint32(nr))
	b[44] = byte(nargs)
	b[45] = byte(len(items)) << 4
	le.PutUint16(b[46:], 1) // cpu
	for i := 0; i < nargs; i++ {
		b = le.AppendUint64(b, uint64(i+1))
	}
	if comm != "" {
		b[45] |= fComm
		var c [16]byte
		copy(c[:], comm)
		b = append(b, c[:]...)
	}
	for _, it := range items {
		data := it[1].([]byte)
		b = append(b, it[0].(byte), 0)
		b = le.AppendUint16(b, uint16(len(data)))
		b = append(b, 0, 0, 0, 0)
		b = append(b, data...)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

func TestDecode(t *testing.T) {
	d := newDecoder()
	var ev event.Event
	sin := []byte{2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0} // AF_INET 127.0.0.1:8080
	un := append([]byte{1, 0}, "/run/x.sock\x00"...)
	abstract := append([]byte{1, 0, 0}, "vigil"...)
	for _, tc := range []struct {
		name  string
		rec   []byte
		check func(ev *event.Event) string
	}{
		{"comm sent", record(110, 0, "probe"), func(ev *event.Event) string {
			if ev.Comm != "probe" || ev.Nr != 110 || ev.TID != 11 || ev.CgroupID != 7 {
				return fmt.Sprintf("%+v", ev)
			}
			return ""
		}},
		{"comm from the CPU mirror", record(110, 0, ""), func(ev *event.Event) string {
			if ev.Comm != "probe" {
				return "comm " + ev.Comm
			}
			return ""
		}},
		{"path and args", record(257, 4, "", [2]any{byte(sPath), []byte("/etc/passwd")}), func(ev *event.Event) string {
			if ev.Path != "/etc/passwd" || ev.Args != [6]uint64{1, 2, 3, 4} {
				return fmt.Sprintf("path %q args %v", ev.Path, ev.Args)
			}
			return ""
		}},
		{"argv", record(59, 3, "", [2]any{byte(sPath), []byte("/bin/sh")}, [2]any{byte(sArgv), []byte("sh\x00-c\x00true\x00")}), func(ev *event.Event) string {
			if len(ev.Argv) != 3 || ev.Argv[0] != "sh" || ev.Argv[2] != "true" {
				return fmt.Sprintf("argv %q", ev.Argv)
			}
			return ""
		}},
		{"inet", record(42, 3, "", [2]any{byte(sSock), sin}), func(ev *event.Event) string {
			if ev.Addr.String() != "127.0.0.1:8080" {
				return "addr " + ev.Addr.String()
			}
			return ""
		}},
		{"unix", record(42, 3, "", [2]any{byte(sSock), un}), func(ev *event.Event) string {
			if ev.Addr.String() != "unix:/run/x.sock" {
				return "addr " + ev.Addr.String()
			}
			return ""
		}},
		{"abstract unix", record(42, 3, "", [2]any{byte(sSock), abstract}), func(ev *event.Event) string {
			if ev.Addr.String() != "unix:@vigil" {
				return "addr " + ev.Addr.String()
			}
			return ""
		}},
		{"clone3 flags", record(435, 2, "", [2]any{sClone, binary.LittleEndian.AppendUint64(nil, 0x10000000)}), func(ev *event.Event) string {
			if ev.CloneFlags != 0x10000000 {
				return fmt.Sprintf("clone flags %#x", ev.CloneFlags)
			}
			return ""
		}},
		{"loader env", record(59, 3, "", [2]any{sArgv, []byte("ls\x00")}, [2]any{sEnv, []byte("LD_PRELOAD=/x.so\x00LD_AUDIT=/a.so\x00")}), func(ev *event.Event) string {
			if len(ev.Env) != 2 || ev.Env[0] != "LD_PRELOAD=/x.so" || ev.Env[1] != "LD_AUDIT=/a.so" || len(ev.Argv) != 1 {
				return fmt.Sprintf("env %q argv %q", ev.Env, ev.Argv)
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !d.decode(tc.rec, &ev) {
				t.Fatal("does not decode")
			}
			if msg := tc.check(&ev); msg != "" {
				t.Error(msg)
			}
		})
	}
	// A clone item too short for its struct is refused.
	if d.decode(record(435, 2, "", [2]any{sClone, []byte{1, 2, 3}}), &ev) {
		t.Error("a clone3 item of 3 bytes decoded")
	}
	// Truncated records are refused, not read past their end.
	full := record(257, 4, "probe", [2]any{byte(sPath), []byte("/etc/passwd")})
	for n := 0; n < len(full)-8; n += 4 {
		if d.decode(full[:n], &ev) && n < hdrSize+32 {
			t.Errorf("a record cut at %d bytes decoded", n)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	d := newDecoder()
	var ev event.Event
	plain := record(110, 0, "probe")
	path := record(257, 4, "", [2]any{byte(sPath), []byte("/usr/lib/x86_64-linux-gnu/libc.so.6")})
	b.Run("getppid", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d.decode(plain, &ev)
		}
	})
	b.Run("openat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d.decode(path, &ev)
		}
	})
	// Into the slots of many batches in turn, as the reader decodes into
	// the pipeline's batches (memory the caches may no longer hold), its
	// strings into the batch's memory (pipeline.Pipeline.String).
	for _, batches := range []int{2, 64} {
		b.Run(fmt.Sprintf("openat/batches=%d", batches), func(b *testing.B) {
			d := newDecoder()
			strs := make([]byte, 0, 16<<10)
			d.str = func(s []byte) string {
				if cap(strs)-len(strs) < len(s) {
					strs = strs[:0]
				}
				n := len(strs)
				strs = append(strs, s...)
				return unsafe.String(&strs[n], len(s))
			}
			evs := make([]event.Event, batches*256)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				d.decode(path, &evs[i])
				if i++; i == len(evs) {
					i = 0
				}
			}
		})
	}
}
