package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

const crashChildEnv = "VIGIL_AUDIT_CRASH_CHILD"

// TestCrashChild is the writer process of TestCrash: it runs only when the
// test re-executes its own binary with crashChildEnv set to "dir:keyfile".
// It appends events with Seq 1, 2, ... (one cgroup) in batches of 100 with
// fsync per batch, and prints "written N" each time a batch reached the
// disk, until it is killed.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashChildEnv)
	if spec == "" {
		t.Skip("the writer process of TestCrash; runs only when re-executed by it")
	}
	dir, key, _ := strings.Cut(spec, ":")
	w, err := Open(Options{Dir: dir, KeyFile: key, BatchRecords: 100, FlushInterval: -1, Logf: func(string, ...any) {}})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	ev := &event.Event{CgroupID: 42, Comm: "crash", PID: 7, TID: 7, Nr: nrGetppid, Ret: 1}
	var batches uint64
	for seq := uint64(1); ; seq++ {
		ev.Seq, ev.KTime, ev.Time = seq, seq*1000, time.Now()
		if err := w.AppendEvent(ev); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		if s := w.Stats(); s.Batches != batches {
			batches = s.Batches
			fmt.Printf("written %d\n", s.Written)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

func TestCrash(t *testing.T) {
	cases := []struct {
		name       string
		torn       bool // also cut the last batch in half, as a power loss would
		wantReason string
	}{
		{"kill -9 mid-batch", false, "unclean-shutdown"},
		{"kill -9 and a torn last frame", true, "torn-tail"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t)
			cmd := exec.Command(os.Args[0], "-test.run", "^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashChildEnv+"="+o.Dir+":"+o.KeyFile)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			var written uint64
			for lines := 0; lines < 4 && sc.Scan(); {
				f := strings.Fields(sc.Text())
				if len(f) == 2 && f[0] == "written" {
					written, _ = strconv.ParseUint(f[1], 10, 64)
					lines++
				} else if len(f) > 0 && f[0] == "error" {
					t.Fatalf("writer: %s", sc.Text())
				}
			}
			time.Sleep(700 * time.Microsecond) // land inside the next batch
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			if written < 400 {
				t.Fatalf("the writer reported %d records written before the kill, want at least 400", written)
			}
			// Before recovery the log verifies up to the crash (an open tail).
			rep, err := Verify(o.Dir, o.KeyFile)
			if err != nil || !rep.Open {
				t.Fatalf("verify after the kill: %v (open tail %v)", err, rep.Open)
			}
			var tornBytes int64
			if tc.torn {
				segs, _ := listSegments(o.Dir)
				last := segs[len(segs)-1].path
				sp := frameSpans(t, last)
				b, _ := os.ReadFile(last)
				fr := b[sp[len(sp)-1].start:sp[len(sp)-1].end]
				half := fr[:len(fr)/2]
				tornBytes = int64(len(half))
				f, _ := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
				f.Write(half)
				f.Close()
				if _, err := Verify(o.Dir, o.KeyFile); err == nil {
					t.Fatal("a torn tail verified before recovery")
				}
				if rep, err := VerifyWith(o.Dir, VerifyOptions{KeyFile: o.KeyFile, Live: true}); err != nil || rep.TornTail != tornBytes {
					t.Fatalf("verify --live of a torn tail: %v, torn tail %d bytes, want %d", err, rep.TornTail, tornBytes)
				}
			}
			// Restart: recovery, then a clean close.
			o.Logf = func(format string, args ...any) { t.Logf(format, args...) }
			w, err := Open(o)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			rep, err = Verify(o.Dir, o.KeyFile)
			if err != nil || rep.Open || rep.LossRecords != 1 {
				t.Fatalf("verify after recovery: %v (open %v, loss records %d)", err, rep.Open, rep.LossRecords)
			}
			var seqs []uint64
			var loss *Loss
			for _, r := range readAll(t, o.Dir) {
				switch r.Kind {
				case KindEvent:
					seqs = append(seqs, r.Event.Seq)
				case KindLoss:
					loss = &Loss{}
					if err := json.Unmarshal(r.Body, loss); err != nil {
						t.Fatal(err)
					}
				}
			}
			m := uint64(len(seqs))
			for i, s := range seqs {
				if s != uint64(i+1) {
					t.Fatalf("event %d has seq %d: the surviving records are not a contiguous prefix", i, s)
				}
			}
			// Everything reported written survived; what was lost is at most
			// the batch in memory (whole batches reach the disk).
			if m < written || m%100 != 0 {
				t.Fatalf("%d events survived; %d were reported written; want at least that, in whole batches of 100", m, written)
			}
			if loss == nil || loss.Reason != tc.wantReason {
				t.Fatalf("loss record %+v, want reason %s", loss, tc.wantReason)
			}
			if tc.torn && (loss.Bytes != tornBytes || loss.Records != 100) {
				t.Fatalf("loss record %+v, want %d bytes and 100 records", loss, tornBytes)
			}
			t.Logf("%d events survived (%d reported written before the kill); loss: %+v", m, written, *loss)
		})
	}
}
