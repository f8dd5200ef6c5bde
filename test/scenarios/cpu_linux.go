package scenarios

import (
	"runtime"
	"syscall"
)

// threadCPU is the CPU time (user + system, seconds) of the calling OS
// thread; callers lock their goroutine to its thread.
func threadCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func lockThread() { runtime.LockOSThread() }
