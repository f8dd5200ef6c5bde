package audit

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

// crashedLog writes n events in batches of 50 over several segments and
// stops the writer as a crash would (no Close, so no seal and no final
// head).
func crashedLog(t *testing.T, n int) Options {
	t.Helper()
	o := testOptions(t)
	o.BatchRecords, o.SegmentBytes = 50, 4096
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	m := newMix()
	ev := &event.Event{}
	for i := 0; i < n; i++ {
		m.next(ev)
		w.AppendEvent(ev)
	}
	w.Flush()
	w.io.Lock()
	w.mu.Lock()
	w.closed = true
	close(w.stop)
	w.lock.Close()
	w.headF.Close()
	w.mu.Unlock()
	w.io.Unlock()
	return o
}

func losses(t *testing.T, dir string) []Loss {
	t.Helper()
	var out []Loss
	for _, r := range readAll(t, dir) {
		if r.Kind == KindLoss {
			var l Loss
			if err := json.Unmarshal(r.Body, &l); err != nil {
				t.Fatalf("loss record %s: %v", r.Body, err)
			}
			out = append(out, l)
		}
	}
	return out
}

// TestRecoveryAccountsForACutTail: an attacker stops the writer, cuts the
// log and lets it restart; recovery must not bless the cut (a new head
// over the cut end) but record it, counted when the old head counts it and
// as unknown (-1) otherwise, never as zero.
func TestRecoveryAccountsForACutTail(t *testing.T) {
	cases := []struct {
		name    string
		cut     func(t *testing.T, o Options, segs []segFile) int64 // returns records cut (-1: unknown)
		reasons []string
	}{
		{"the newest segment emptied", func(t *testing.T, o Options, segs []segFile) int64 {
			l := segs[len(segs)-1]
			a, err := readAnchorFrom(l.path) // where the segment starts
			if err != nil {
				t.Fatal(err)
			}
			os.Truncate(l.path, 0)
			return int64(1000 - a.firstIndex + 1)
		}, []string{"torn-tail", "truncated"}},
		{"batches cut at a frame boundary", func(t *testing.T, o Options, segs []segFile) int64 {
			l := segs[len(segs)-1].path
			sp := frameSpans(t, l)
			if len(sp) < 3 || sp[len(sp)-1].typ != frameBatch || sp[len(sp)-2].typ != frameBatch {
				t.Fatalf("the last segment holds frames %v, want a header and batches", sp)
			}
			os.Truncate(l, sp[len(sp)-2].end) // the last batch of 50
			return 50
		}, []string{"unclean-shutdown", "truncated"}},
		{"the head file deleted", func(t *testing.T, o Options, segs []segFile) int64 {
			os.Remove(filepath.Join(o.Dir, headName))
			return -1
		}, []string{"unclean-shutdown", "no-head"}},
		{"the head file replaced", func(t *testing.T, o Options, segs []segFile) int64 {
			other := writeLog(t, testOptions(t), 10)
			b, _ := os.ReadFile(filepath.Join(other.Dir, headName))
			os.WriteFile(filepath.Join(o.Dir, headName), b, 0o600)
			return -1
		}, []string{"unclean-shutdown", "bad-head"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := crashedLog(t, 1000)
			segs, _ := listSegments(o.Dir)
			if len(segs) < 3 {
				t.Fatalf("%d segments, want several", len(segs))
			}
			want := tc.cut(t, o, segs)
			w, err := Open(o)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(o.Dir, o.KeyFile)
			if err != nil || len(rep.Alerts) != 1 {
				t.Fatalf("verify after recovery: %v, alerts %q", err, rep.Alerts)
			}
			ls := losses(t, o.Dir)
			var reasons []string
			for _, l := range ls {
				reasons = append(reasons, l.Reason)
				if l.Records == 0 {
					t.Fatalf("a loss of zero records: %+v", l)
				}
			}
			if strings.Join(reasons, ",") != strings.Join(tc.reasons, ",") {
				t.Fatalf("loss reasons %v, want %v", reasons, tc.reasons)
			}
			last := ls[len(ls)-1]
			if last.Records != want {
				t.Fatalf("loss %+v: records %d, want %d", last, last.Records, want)
			}
			if last.Reason == "truncated" && (last.Head == nil || last.Head.Index != 1000) {
				t.Fatalf("the truncated loss does not keep the old head: %+v", last.Head)
			}
			t.Logf("losses %+v", ls)
		})
	}
}

func TestHeadPublishedAndAnchored(t *testing.T) {
	o := testOptions(t)
	o.BatchRecords, o.SegmentBytes, o.AnchorInterval = 50, 4096, 5*time.Millisecond
	var mu sync.Mutex
	var anchored []Head
	o.Anchor = func(h Head) error {
		mu.Lock()
		defer mu.Unlock()
		anchored = append(anchored, h)
		return nil
	}
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	m := newMix()
	ev := &event.Event{}
	for i := 0; i < 600; i++ {
		m.next(ev)
		w.AppendEvent(ev)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	h := w.Head()
	if h.Index != 600 || h.Segment != w.Stats().Segment || CheckHead(h, w.PublicKey()) != nil {
		t.Fatalf("head %v (check %v), want record 600 in segment %d", h, CheckHead(h, w.PublicKey()), w.Stats().Segment)
	}
	rep, err := VerifyWith(o.Dir, VerifyOptions{KeyFile: o.KeyFile, Live: true})
	if err != nil || rep.Head != h.HashHex() || rep.LastIndex != h.Index || rep.SignedHead == nil || rep.SignedHead.Seq != h.Seq {
		t.Fatalf("verify: %v, head %s record %d, want %s record %d", err, rep.Head, rep.LastIndex, h.HashHex(), h.Index)
	}
	mid := h // an old head file, saved by an attacker
	saved, _ := os.ReadFile(filepath.Join(o.Dir, headName))
	time.Sleep(30 * time.Millisecond) // an anchor interval or more
	for i := 0; i < 300; i++ {
		m.next(ev)
		w.AppendEvent(ev)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	final := w.Head()
	mu.Lock()
	got := append([]Head(nil), anchored...)
	mu.Unlock()
	if len(got) < 2 || got[len(got)-1].Seq != final.Seq || got[len(got)-1].Index != 900 {
		t.Fatalf("anchored %d heads, last %v; want the final head %v", len(got), got[len(got)-1], final)
	}
	published, err := json.Marshal(final)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := ParseHead(published); err != nil || back.Hash != final.Hash || back.Index != 900 {
		t.Fatalf("parse the published head: %v, %v", err, back)
	}
	if _, err := VerifyWith(o.Dir, VerifyOptions{KeyFile: o.KeyFile, Head: string(published)}); err != nil {
		t.Fatalf("verify with the published head: %v", err)
	}

	// The attack a head file cannot stop alone: cut back to the saved head
	// and put the saved head file back. The published head catches it.
	for _, s := range func() []segFile { s, _ := listSegments(o.Dir); return s }() {
		if s.num > mid.Segment {
			os.Remove(s.path)
		}
	}
	os.Truncate(filepath.Join(o.Dir, segName(mid.Segment)), mid.Offset)
	os.WriteFile(filepath.Join(o.Dir, headName), saved, 0o600)
	if rep, err := Verify(o.Dir, o.KeyFile); err != nil || !rep.Open {
		t.Fatalf("cut back to a saved head: %v (open %v): the head file alone cannot tell", err, rep.Open)
	}
	_, err = VerifyWith(o.Dir, VerifyOptions{KeyFile: o.KeyFile, Head: string(published)})
	var p *Problem
	if !errors.As(err, &p) || p.Kind != Truncated || !strings.Contains(p.Detail, "published head") {
		t.Fatalf("cut back to a saved head, verified with the published one: %v", err)
	}
	// A forged published head is refused.
	other := writeLog(t, testOptions(t), 10)
	ob, _ := os.ReadFile(filepath.Join(other.Dir, headName))
	if _, err := VerifyWith(o.Dir, VerifyOptions{KeyFile: o.KeyFile, Head: string(ob)}); err == nil || !strings.Contains(err.Error(), "published head") {
		t.Fatalf("a head of another key: %v", err)
	}
}

func TestAnchorCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "anchored")
	anchor, err := AnchorCommand(5*time.Second, "/bin/sh", "-c", "cat >>"+out)
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions(t)
	o.Anchor = anchor
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	w.Append(KindAgent, 0, "", Agent{Event: "start"})
	w.Close()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	h, err := ParseHead([]byte(lines[len(lines)-1]))
	if err != nil || h.Hash != w.Head().Hash || CheckHead(h, w.PublicKey()) != nil {
		t.Fatalf("the command got %q: %v", lines[len(lines)-1], err)
	}
	if _, err := AnchorCommand(0); err == nil {
		t.Fatal("an empty anchor command was accepted")
	}
	fail, _ := AnchorCommand(time.Second, "/bin/sh", "-c", "echo no >&2; exit 3")
	if err := fail(h); err == nil || !strings.Contains(err.Error(), "no") {
		t.Fatalf("a failing anchor command: %v", err)
	}
}

func TestKeyFileChecks(t *testing.T) {
	t.Run("symlink", func(t *testing.T) {
		o := testOptions(t)
		real := filepath.Join(t.TempDir(), "real.key")
		if _, err := LoadOrCreateKey(real); err != nil {
			t.Fatal(err)
		}
		os.Symlink(real, o.KeyFile)
		if _, err := Open(o); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Fatalf("a symlinked key: %v, want a refusal naming the symlink", err)
		}
		// a dangling symlink is not followed to create the key either
		o2 := testOptions(t)
		target := filepath.Join(t.TempDir(), "planted")
		os.Symlink(target, o2.KeyFile)
		if _, err := Open(o2); err == nil {
			t.Fatal("a dangling symlink at the key path was followed")
		}
		if _, err := os.Stat(target); err == nil {
			t.Fatal("the key was written through a symlink")
		}
	})
	t.Run("public key symlink is replaced, not followed", func(t *testing.T) {
		o := testOptions(t)
		victim := filepath.Join(t.TempDir(), "victim")
		os.WriteFile(victim, []byte("keep"), 0o644)
		os.Symlink(victim, PublicKeyFile(o.KeyFile))
		w, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		if b, _ := os.ReadFile(victim); string(b) != "keep" {
			t.Fatalf("the public key was written through a symlink: victim holds %q", b)
		}
		if fi, err := os.Lstat(PublicKeyFile(o.KeyFile)); err != nil || fi.Mode()&os.ModeSymlink != 0 {
			t.Fatalf("the .pub is still a symlink: %v", err)
		}
	})
	t.Run("owner", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give the key to another user")
		}
		o := testOptions(t)
		if _, err := LoadOrCreateKey(o.KeyFile); err != nil {
			t.Fatal(err)
		}
		os.Chown(o.KeyFile, 1234, 1234)
		if _, err := Open(o); err == nil || !strings.Contains(err.Error(), "owned by uid 1234") {
			t.Fatalf("a key owned by another user: %v", err)
		}
	})
	t.Run("group writable", func(t *testing.T) {
		o := testOptions(t)
		if _, err := LoadOrCreateKey(o.KeyFile); err != nil {
			t.Fatal(err)
		}
		os.Chmod(o.KeyFile, 0o620)
		if _, err := Open(o); err == nil || !strings.Contains(err.Error(), "0600") {
			t.Fatalf("a group-writable key: %v", err)
		}
	})
}

func TestVerifyPinnedKey(t *testing.T) {
	o := writeLog(t, testOptions(t), 300)
	pub, err := LoadPublicKey(o.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyWith(o.Dir, VerifyOptions{PubKey: pub})
	if err != nil || rep.KeySource != "pinned" || rep.KeyBesideLog || rep.Fingerprint != Fingerprint(pub) {
		t.Fatalf("pinned: %v, %+v", err, rep)
	}
	// The attacker replaces the log and the key beside it.
	d := t.TempDir()
	n := Options{Dir: filepath.Join(d, "log"), Fsync: FsyncNever, Logf: t.Logf}
	writeLog(t, n, 300)
	if rep, err := Verify(n.Dir, ""); err != nil || !rep.KeyBesideLog {
		t.Fatalf("the replaced log with its own key: %v (beside %v): it verifies, with a warning", err, rep.KeyBesideLog)
	}
	_, err = VerifyWith(n.Dir, VerifyOptions{PubKey: pub})
	var p *Problem
	if !errors.As(err, &p) || p.Kind != WrongKey {
		t.Fatalf("the replaced log against the pinned key: %v, want wrong-key", err)
	}
	if k, err := ParsePublicKey(strings.ToUpper(hex.EncodeToString(pub))); err != nil || !k.Equal(pub) {
		t.Fatalf("parse a hex key: %v", err)
	}
	if _, err := ParsePublicKey("abc"); err == nil {
		t.Fatal("a malformed key was accepted")
	}
}
