package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

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
		if rec.RawSample[43]&fComm != 0 {
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
