package audit

import (
	"math/rand"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
)

// BenchmarkWriter measures the sustained rate of AppendEvent on a realistic
// event mix, with the real batching, compression, hashing, signing and
// writes, and reports bytes per event on disk. Run:
//
//	go test -run '^$' -bench Writer -benchtime 2000000x ./audit/
func BenchmarkWriter(b *testing.B) {
	for _, fs := range []struct {
		name  string
		p     FsyncPolicy
		noisy bool
		comp  Compression
	}{
		{"s2/fsync=never", FsyncNever, false, CompressS2},
		{"s2/fsync=100ms", FsyncPolicy(100 * time.Millisecond), false, CompressS2},
		{"s2/fsync=batch", FsyncBatch, false, CompressS2},
		{"s2/noisy/fsync=batch", FsyncBatch, true, CompressS2},
		{"zstd/fsync=batch", FsyncBatch, false, CompressZstd},
		{"zstd/noisy/fsync=batch", FsyncBatch, true, CompressZstd},
	} {
		b.Run(fs.name, func(b *testing.B) {
			o := testOptions(b)
			o.Fsync, o.Compression = fs.p, fs.comp
			o.Logf = func(string, ...any) {}
			w, err := Open(o)
			if err != nil {
				b.Fatal(err)
			}
			evs := make([]event.Event, 1<<16)
			m := newMix()
			if fs.noisy {
				m.rnd = rand.New(rand.NewSource(1))
			}
			for i := range evs {
				m.next(&evs[i])
			}
			b.ReportAllocs()
			// The appender on a thread of its own, whose CPU clock says what
			// an append costs the pipeline's worker.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu0, th0 := cpuTime(), threadCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := w.AppendEvent(&evs[i%len(evs)]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(threadCPU()-th0)/float64(b.N), "append-cpu-ns/event")
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/event")
			size := dirBytes(o.Dir)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(size)/float64(b.N), "B/event")
		})
	}
}

// BenchmarkEncoding compares the two encodings the issue asks about on the
// same events, without I/O: vigil's binary records (raw and zstd) and JSON
// lines (event.AppendJSON, raw and zstd). Reported: bytes per event and
// events per second of encoding (+ compression).
func BenchmarkEncoding(b *testing.B) {
	for _, noisy := range []bool{false, true} {
		name := "regular"
		if noisy {
			name = "noisy"
		}
		b.Run(name, func(b *testing.B) { benchEncoding(b, noisy) })
	}
}

func benchEncoding(b *testing.B, noisy bool) {
	evs := make([]event.Event, 4096)
	m := newMix()
	if noisy {
		m.rnd = rand.New(rand.NewSource(1))
	}
	for i := range evs {
		m.next(&evs[i])
	}
	zenc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	for _, c := range []struct {
		name   string
		binary bool
		zstd   bool
		s2     bool
	}{{"binary", true, false, false}, {"binary+zstd", true, true, false}, {"binary+s2", true, false, true},
		{"jsonl", false, false, false}, {"jsonl+zstd", false, true, false}} {
		b.Run(c.name, func(b *testing.B) {
			enc := newEncoder()
			var js, out []byte
			var bytes int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ev := &evs[i%len(evs)]
				if c.binary {
					enc.appendEvent(ev)
				} else {
					js = ev.AppendJSON(js)
					js = append(js, '\n')
				}
				if (i+1)%len(evs) == 0 || i == b.N-1 {
					raw := js
					if c.binary {
						raw = enc.raw
					}
					if c.zstd {
						out = zenc.EncodeAll(raw, out[:0])
						bytes += int64(len(out))
					} else if c.s2 {
						out = s2.Encode(out[:cap(out)], raw)
						bytes += int64(len(out))
					} else {
						bytes += int64(len(raw))
					}
					enc.reset()
					js = js[:0]
				}
			}
			b.ReportMetric(float64(bytes)/float64(b.N), "B/event")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func TestBench(t *testing.T) {
	o := testOptions(t)
	r, err := Bench(o, 50000, true)
	if err != nil {
		t.Fatal(err)
	}
	if r.Events != 50000 || r.EventsPerSec <= 0 || r.BytesPerEvent < 1 || r.BytesPerEvent > 100 || r.AllocsPerEvent > 0.05 {
		t.Fatalf("implausible result %+v", r)
	}
	if _, err := Verify(o.Dir, o.KeyFile); err != nil {
		t.Fatalf("the bench log does not verify: %v", err)
	}
	if _, err := Bench(o, 10, false); err == nil {
		t.Fatal("bench into a directory that holds a log: want an error")
	}
}
