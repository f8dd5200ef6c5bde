package audit

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

// TestHandOffBackPressure: while the writer's goroutine is busy (here: its
// lock held, as a slow disk would), an append that fills a batch with
// PendingBatches batches already waiting waits for room; nothing is dropped,
// and the wait is counted.
func TestHandOffBackPressure(t *testing.T) {
	o := testOptions(t)
	o.BatchRecords, o.PendingBatches, o.FlushInterval = 10, 1, -1
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	w.io.Lock() // the writer cannot write: the hand-off fills up
	var done atomic.Int64
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		m := newMix()
		ev := &event.Event{}
		for i := 0; i < 35; i++ {
			m.next(ev)
			if err := w.AppendEvent(ev); err != nil {
				t.Error(err)
				return
			}
			done.Add(1)
		}
	}()
	// Records 1-10 make a batch that is handed over; the 20th fills the
	// next one while it waits: the appender waits inside that append.
	deadline := time.Now().Add(5 * time.Second)
	for done.Load() < 19 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := done.Load(); n != 19 {
		w.io.Unlock()
		t.Fatalf("%d appends returned while the writer was held, want 19 (the 20th waits for room)", n)
	}
	w.mu.Lock()
	stalls, queued := w.stalls, len(w.queue)
	w.mu.Unlock()
	if stalls != 1 || queued != 1 {
		w.io.Unlock()
		t.Fatalf("stalls %d, batches waiting %d; want 1 and 1", stalls, queued)
	}
	w.io.Unlock()
	<-finished
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.Lost != 0 || st.Written != 35 || st.Stalls < 1 {
		t.Fatalf("stats %+v: want 35 written, none lost, the stall counted", st)
	}
	rep, err := Verify(o.Dir, o.KeyFile)
	if err != nil || rep.Records != 35 {
		t.Fatalf("verify: %v, %d records, want 35", err, rep.Records)
	}
}

// TestCloseReleasesWaitingAppenders: Close while an appender waits for room
// writes its record too.
func TestCloseReleasesWaitingAppenders(t *testing.T) {
	o := testOptions(t)
	o.BatchRecords, o.PendingBatches, o.FlushInterval = 5, 1, -1
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	w.io.Lock()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for i := 0; i < 10; i++ { // the 10th waits
			w.Append(KindPolicy, 0, "", map[string]int{"i": i})
		}
	}()
	for {
		w.mu.Lock()
		waiting := w.waiting
		w.mu.Unlock()
		if waiting > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error)
	go func() { closed <- w.Close() }()
	time.Sleep(20 * time.Millisecond) // Close is under way (waiting for the writer's lock)
	w.io.Unlock()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	<-finished
	if n := len(readAll(t, o.Dir)); n != 10 {
		t.Fatalf("%d records in the log, want 10", n)
	}
}

// TestVerifySyncWriterLog: a log written by the writer before appends
// were handed to a goroutine of its own (the same format, version 1)
// still verifies and reads back as it was recorded.
func TestVerifySyncWriterLog(t *testing.T) {
	dir := filepath.Join("testdata", "golden-sync-writer")
	rep, err := Verify(dir, filepath.Join(dir, "golden.pub"))
	if err != nil || rep.Records == 0 {
		t.Fatalf("verify the earlier writer's log: %v", err)
	}
	want, err := os.ReadFile(filepath.Join(dir, "records.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got := render(t, dir); !bytes.Equal(got, want) {
		t.Fatal("the earlier writer's log reads back differently from what it recorded")
	}
}

const durableChildEnv = "VIGIL_AUDIT_DURABLE_CHILD"

// TestCrashDurableChild is the writer process of TestCrashLosesNothingDurable:
// it appends events with Seq 1, 2, ... in batches of 100 (with the default
// hand-off and FsyncBatch), calls Flush after every 250 and prints "durable
// N" when it returned, until it is killed.
func TestCrashDurableChild(t *testing.T) {
	spec := os.Getenv(durableChildEnv)
	if spec == "" {
		t.Skip("the writer process of TestCrashLosesNothingDurable; runs only when re-executed by it")
	}
	dir, key, _ := strings.Cut(spec, ":")
	w, err := Open(Options{Dir: dir, KeyFile: key, BatchRecords: 100, Logf: func(string, ...any) {}})
	if err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(2)
	}
	ev := &event.Event{CgroupID: 42, Comm: "crash", PID: 7, TID: 7, Nr: nrGetppid, Ret: 1}
	for seq := uint64(1); ; seq++ {
		ev.Seq, ev.KTime, ev.Time = seq, seq*1000, time.Now()
		if err := w.AppendEvent(ev); err != nil {
			os.Stdout.WriteString("error " + err.Error() + "\n")
			os.Exit(2)
		}
		if seq%250 == 0 {
			if err := w.Flush(); err != nil {
				os.Stdout.WriteString("error " + err.Error() + "\n")
				os.Exit(2)
			}
			os.Stdout.WriteString("durable " + strconv.FormatUint(seq, 10) + "\n")
		}
	}
}

// TestCrashLosesNothingDurable: a writer killed while batches are being
// built and handed over loses nothing that Flush had returned for nor
// anything the signed head on disk names; what survives is a contiguous
// prefix, and recovery records the loss.
func TestCrashLosesNothingDurable(t *testing.T) {
	o := testOptions(t)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestCrashDurableChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), durableChildEnv+"="+o.Dir+":"+o.KeyFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var durable uint64
	for durable < 5000 && sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "durable":
			durable, _ = strconv.ParseUint(f[1], 10, 64)
		case len(f) > 0 && f[0] == "error":
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("writer: %s", sc.Text())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if durable < 5000 {
		t.Fatalf("the writer reported %d records durable, want 5000 before the kill", durable)
	}
	keys, err := loadKeyring(PublicKeyFile(o.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	head, ok, err := readHeadFile(o.Dir, keys)
	if err != nil || !ok {
		t.Fatalf("the head file after the kill: %v (found %v)", err, ok)
	}
	if head.Index < durable {
		t.Fatalf("the signed head names record %d, but %d were reported durable", head.Index, durable)
	}
	w, err := Open(o)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(o.Dir, o.KeyFile); err != nil {
		t.Fatalf("verify after recovery: %v", err)
	}
	var seqs []uint64
	for _, r := range readAll(t, o.Dir) {
		if r.Kind == KindEvent {
			seqs = append(seqs, r.Event.Seq)
		}
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("event %d has seq %d: the surviving records are not a contiguous prefix", i, s)
		}
	}
	if m := uint64(len(seqs)); m < durable || m < head.Index {
		t.Fatalf("%d events survived; %d were reported durable and the signed head named %d", m, durable, head.Index)
	}
	t.Logf("%d events survived; %d reported durable, the head named %d", len(seqs), durable, head.Index)
}
