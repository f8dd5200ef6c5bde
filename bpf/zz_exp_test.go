package bpf

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
)

func TestZZWall(t *testing.T) {
	if os.Getenv("VIGIL_EXP") == "" {
		t.Skip()
	}
	probe := buildProbe(t)
	run := func(cg *Cgroup, pin string) time.Duration {
		args := []string{probe, "2000000", "0", "/proc/self/comm", "9", "0", "0"}
		if pin != "" {
			args = append([]string{"taskset", "-c", pin}, args...)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = cg.SysProcAttr()
		t0 := time.Now()
		cmd.Run()
		return time.Since(t0)
	}
	for rep := 0; rep < 3; rep++ {
		for _, mode := range []string{"base", "reader", "reader-pinned", "noreader", "reader-1m", "reader-sameCPU"} {
			cg, _ := NewCgroup(fmt.Sprintf("exp-%d", os.Getpid()))
			if mode == "base" {
				fmt.Printf("%s: %v\n", mode, run(cg, "0"))
				cg.Remove()
				continue
			}
			ring := 256 << 20
			if mode == "reader-1m" {
				ring = 1 << 20
			}
			m, err := Load(Config{RingBytes: ring})
			if err != nil {
				t.Fatal(err)
			}
			m.Track(cg.ID)
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			n := 0
			if mode != "noreader" {
				go func() {
					runtime.LockOSThread()
					if mode == "reader-pinned" || mode == "reader-1m" {
						var set unix.CPUSet
						set.Set(1)
						unix.SchedSetaffinity(0, &set)
					}
					if mode == "reader-sameCPU" {
						var set unix.CPUSet
						set.Set(0)
						unix.SchedSetaffinity(0, &set)
					}
					done <- m.Run(ctx, func(*event.Event) { n++ })
				}()
			}
			d := run(cg, "0")
			stop()
			if mode != "noreader" {
				<-done
			}
			c, _ := m.Counters(cg.ID)
			fmt.Printf("%s: %v (%d received, %+v)\n", mode, d, n, c)
			m.Close()
			cg.Remove()
		}
	}
}
