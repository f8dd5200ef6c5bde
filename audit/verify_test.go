package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"vigil.dev/vigil/event"
)

// writeLog writes n mixed events (and a verdict every 100) into a log of
// small batches and segments and returns its options.
func writeLog(t *testing.T, o Options, n int) Options {
	t.Helper()
	if o.BatchRecords == 0 {
		o.BatchRecords = 50
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = 4096
	}
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	m := newMix()
	ev := &event.Event{}
	for i := 0; i < n; i++ {
		m.next(ev)
		if err := w.AppendEvent(ev); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			if err := w.Append(KindVerdict, ev.CgroupID, ev.Container.ID, map[string]any{"id": "r1", "seq": ev.Seq}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return o
}

// frameSpans lists the [start, end) byte spans and types of a segment's frames.
type span struct {
	typ        byte
	start, end int64
}

func frameSpans(t *testing.T, path string) []span {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fr, err := newFrameReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []span
	for {
		fm, err := fr.next()
		if err != nil {
			return out
		}
		out = append(out, span{fm.typ, fm.off, fm.end})
	}
}

func segPath(o Options, n uint64) string { return filepath.Join(o.Dir, segName(n)) }

func cutOut(t *testing.T, path string, start, end int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b[:start:start], b[end:]...)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x20
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// dropRecordRehash removes one record from the batch frame at span s,
// re-compresses it and recomputes its hash as an attacker who knows the
// format (but not the key) would.
func dropRecordRehash(t *testing.T, path string, s span) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fr := b[s.start:s.end]
	body := fr[framePrefix : len(fr)-frameTrailer]
	bh, payload, err := parseBatchHeader(body)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	raw, err := decodePayload(dec, &bh, payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The records are length-prefixed: skip the second one.
	var d decoder
	d.reset(raw)
	var r Record
	d.next(&r)
	cut1 := len(raw) - len(d.p)
	d.next(&r)
	cut2 := len(raw) - len(d.p)
	raw = append(raw[:cut1:cut1], raw[cut2:]...)
	bh.records--
	bh.rawLen = uint32(len(raw))
	zenc, _ := zstd.NewWriter(nil)
	nb := startFrame(nil, frameBatch)
	nb = appendBatchHeader(nb, &bh)
	nb = zenc.EncodeAll(raw, nb)
	prev := fr[len(fr)-frameTrailer : len(fr)-frameTrailer+32]
	var p [32]byte
	copy(p[:], prev)
	nb[1], nb[2], nb[3], nb[4] = byte(len(nb)-5), byte((len(nb)-5)>>8), byte((len(nb)-5)>>16), 0
	h := sha256.New()
	h.Write(p[:])
	h.Write(nb)
	nb = append(nb, p[:]...)
	nb = h.Sum(nb)
	nb = append(nb, fr[len(fr)-64:]...) // the old signature
	out := append(append(append([]byte(nil), b[:s.start]...), nb...), b[s.end:]...)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	base := writeLog(t, testOptions(t), 1500)
	if rep, err := Verify(base.Dir, base.KeyFile); err != nil || rep.Segments < 4 {
		t.Fatalf("the untouched log must verify with several segments: %v (%d segments)", err, rep.Segments)
	}
	other := testOptions(t) // a log signed by another key
	other = writeLog(t, other, 300)

	cases := []struct {
		name    string
		tamper  func(t *testing.T, o Options)
		key     func(o Options) string
		kind    ProblemKind
		segment uint64
		detail  string
	}{
		{name: "flip a byte in a batch", kind: Modified, segment: 2, detail: "content was changed",
			tamper: func(t *testing.T, o Options) {
				s := frameSpans(t, segPath(o, 2))[2]
				flipByte(t, segPath(o, 2), s.start+framePrefix+batchHeaderLen+5)
			}},
		{name: "flip a byte in a segment header", kind: Modified, segment: 3, detail: "header",
			tamper: func(t *testing.T, o Options) { flipByte(t, segPath(o, 3), 8+framePrefix+12) }},
		{name: "flip a byte in a signature", kind: Modified, segment: 2, detail: "signature",
			tamper: func(t *testing.T, o Options) {
				s := frameSpans(t, segPath(o, 2))[1]
				flipByte(t, segPath(o, 2), s.end-3)
			}},
		{name: "delete a batch", kind: Deleted, segment: 2, detail: "missing",
			tamper: func(t *testing.T, o Options) {
				s := frameSpans(t, segPath(o, 2))[2]
				cutOut(t, segPath(o, 2), s.start, s.end)
			}},
		{name: "swap two batches", kind: Reordered, segment: 2, detail: "batches were moved",
			tamper: func(t *testing.T, o Options) {
				path := segPath(o, 2)
				sp := frameSpans(t, path)
				b, _ := os.ReadFile(path)
				a, c := sp[1], sp[2]
				out := append([]byte(nil), b[:a.start]...)
				out = append(out, b[c.start:c.end]...)
				out = append(out, b[a.start:a.end]...)
				out = append(out, b[c.end:]...)
				os.WriteFile(path, out, 0o600)
			}},
		{name: "delete a record and rehash", kind: Modified, segment: 2, detail: "signature",
			tamper: func(t *testing.T, o Options) { dropRecordRehash(t, segPath(o, 2), frameSpans(t, segPath(o, 2))[1]) }},
		{name: "delete a middle segment", kind: Deleted, segment: 4, detail: "segments 3..3 are missing",
			tamper: func(t *testing.T, o Options) { os.Remove(segPath(o, 3)) }},
		{name: "delete the first segment", kind: Deleted, segment: 2, detail: "no retention anchor",
			tamper: func(t *testing.T, o Options) { os.Remove(segPath(o, 1)) }},
		{name: "swap two segments", kind: Reordered, segment: 2, detail: "holds segment 3",
			tamper: func(t *testing.T, o Options) {
				os.Rename(segPath(o, 2), segPath(o, 99))
				os.Rename(segPath(o, 3), segPath(o, 2))
				os.Rename(segPath(o, 99), segPath(o, 3))
			}},
		{name: "truncate the last segment inside a frame", kind: Truncated, segment: 0, detail: "ends inside a frame",
			tamper: func(t *testing.T, o Options) {
				segs, _ := listSegments(o.Dir)
				l := segs[len(segs)-1]
				os.Truncate(l.path, l.size-70)
			}},
		{name: "truncate a segment at a frame boundary", kind: Truncated, segment: 2, detail: "no seal",
			tamper: func(t *testing.T, o Options) {
				sp := frameSpans(t, segPath(o, 2))
				os.Truncate(segPath(o, 2), sp[len(sp)-2].end)
			}},
		{name: "delete the newest segment after a rotation", kind: Truncated, detail: "is missing",
			tamper: func(t *testing.T, o Options) {
				segs, _ := listSegments(o.Dir)
				os.Remove(segs[len(segs)-1].path)
			}},
		{name: "cut the newest segment at a frame boundary, seal included", kind: Truncated, detail: "were cut off",
			tamper: func(t *testing.T, o Options) {
				segs, _ := listSegments(o.Dir)
				l := segs[len(segs)-1].path
				sp := frameSpans(t, l)
				os.Truncate(l, sp[len(sp)-3].end) // the last batch and the seal
			}},
		{name: "cut the seal of the newest segment", kind: Truncated, detail: "before the head's frame",
			tamper: func(t *testing.T, o Options) {
				segs, _ := listSegments(o.Dir)
				l := segs[len(segs)-1].path
				sp := frameSpans(t, l)
				os.Truncate(l, sp[len(sp)-2].end)
			}},
		{name: "delete the signed head file", kind: Truncated, detail: "head file is missing",
			tamper: func(t *testing.T, o Options) { os.Remove(filepath.Join(o.Dir, headName)) }},
		{name: "replace the signed head file with another log's", kind: WrongKey, detail: "not among the verifying keys",
			tamper: func(t *testing.T, o Options) {
				b, _ := os.ReadFile(filepath.Join(other.Dir, headName))
				os.WriteFile(filepath.Join(o.Dir, headName), b, 0o600)
			}},
		{name: "forge a segment with another key", kind: WrongKey, segment: 3, detail: "signed by key",
			tamper: func(t *testing.T, o Options) {
				b, err := os.ReadFile(segPath(other, 1))
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(segPath(o, 3), b, 0o600)
			}},
		{name: "verify with another key", kind: WrongKey, segment: 1, detail: "signed by key",
			tamper: func(t *testing.T, o Options) {},
			key:    func(Options) string { return other.KeyFile }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			o.Dir = filepath.Join(t.TempDir(), "log")
			copyDir(t, base.Dir, o.Dir)
			tc.tamper(t, o)
			key := o.KeyFile
			if tc.key != nil {
				key = tc.key(o)
			}
			rep, err := Verify(o.Dir, key)
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("verify: got %v, want a %s problem", err, tc.kind)
			}
			if rep.OK() || rep.Problem != p {
				t.Fatalf("report does not carry the problem")
			}
			if p.Kind != tc.kind || tc.segment != 0 && p.Segment != tc.segment || !strings.Contains(p.Error(), tc.detail) {
				t.Fatalf("got %q, want kind %s, segment %d, detail containing %q", p.Error(), tc.kind, tc.segment, tc.detail)
			}
			if !strings.Contains(p.Error(), filepath.Base(p.File)) {
				t.Fatalf("problem %q does not name the file", p.Error())
			}
			t.Logf("verify: %v", p)
		})
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRetentionKeepsTheChainVerifiable(t *testing.T) {
	cases := []struct {
		name string
		opt  func(*Options)
	}{
		{"by size", func(o *Options) { o.MaxBytes = 12 << 10 }},
		{"by age", func(o *Options) { o.MaxAge = 1 }}, // every sealed segment is older than 1ns
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t)
			tc.opt(&o)
			o = writeLog(t, o, 3000)
			segs, _ := listSegments(o.Dir)
			if segs[0].num == 1 {
				t.Fatalf("retention deleted nothing (%d segments)", len(segs))
			}
			if o.MaxBytes > 0 {
				var total int64
				for _, s := range segs[:len(segs)-1] {
					total += s.size
				}
				if total > o.MaxBytes {
					t.Fatalf("sealed segments hold %d bytes, MaxBytes %d", total, o.MaxBytes)
				}
			}
			rep, err := Verify(o.Dir, o.KeyFile)
			if err != nil || !rep.Anchored || rep.FirstSegment != segs[0].num || rep.FirstIndex <= 1 {
				t.Fatalf("verify after retention: %v, report %+v", err, rep)
			}
			recs := readAll(t, o.Dir)
			if recs[0].Index != rep.FirstIndex || recs[len(recs)-1].Index != rep.LastIndex {
				t.Fatalf("reader gives records %d..%d, verify %d..%d", recs[0].Index, recs[len(recs)-1].Index, rep.FirstIndex, rep.LastIndex)
			}
			// Deleting a kept segment beyond the anchor is still caught.
			os.Remove(segs[0].path)
			if _, err := Verify(o.Dir, o.KeyFile); err == nil || !strings.Contains(err.Error(), "anchor") {
				t.Fatalf("deleting the anchored segment: got %v, want a deletion naming the anchor", err)
			}
			// A forged anchor is caught.
			a, _ := os.ReadFile(filepath.Join(o.Dir, anchorName))
			a[len(fileMagic)+framePrefix] ^= 1
			os.WriteFile(filepath.Join(o.Dir, anchorName), a, 0o600)
			if _, err := Verify(o.Dir, o.KeyFile); err == nil {
				t.Fatal("a modified anchor verified")
			}
		})
	}
}

func TestKeyFile(t *testing.T) {
	o := testOptions(t)
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	st, err := os.Stat(o.KeyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v, want 0600", err, st.Mode())
	}
	pub, err := LoadPublicKey(PublicKeyFile(o.KeyFile))
	if err != nil || !bytes.Equal(pub, w.PublicKey()) {
		t.Fatalf("public key file: %v", err)
	}
	// verify works with the public key alone
	if _, err := Verify(o.Dir, PublicKeyFile(o.KeyFile)); err != nil {
		t.Fatalf("verify with the public key: %v", err)
	}
	os.Chmod(o.KeyFile, 0o644)
	if _, err := Open(o); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("a world-readable key: got %v, want a refusal naming 0600", err)
	}
}

func TestVerifyPublishedHead(t *testing.T) {
	o := writeLog(t, testOptions(t), 1500)
	rep, err := Verify(o.Dir, o.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	mid := o
	mid.Dir = filepath.Join(t.TempDir(), "log")
	copyDir(t, o.Dir, mid.Dir)
	// the head published at the end passes; after the newest segment is cut
	// at a frame boundary (undetectable by the chain alone) it fails
	if _, err := VerifyWith(o.Dir, VerifyOptions{KeyFile: o.KeyFile, Head: rep.Head}); err != nil {
		t.Fatalf("verify with the current head: %v", err)
	}
	segs, _ := listSegments(mid.Dir)
	last := segs[len(segs)-1].path
	sp := frameSpans(t, last)
	os.Truncate(last, sp[len(sp)-2].end) // drop the seal: looks like a crashed writer
	if r, err := VerifyWith(mid.Dir, VerifyOptions{KeyFile: mid.KeyFile, NoHeadFile: true}); err != nil || !r.Open {
		t.Fatalf("without any head the cut is invisible: %v (open %v)", err, r.Open)
	}
	os.Remove(filepath.Join(mid.Dir, headName)) // the attacker removes the head file too
	_, err = VerifyWith(mid.Dir, VerifyOptions{KeyFile: mid.KeyFile, Head: rep.Head, NoHeadFile: true})
	var p *Problem
	if !errors.As(err, &p) || p.Kind != Truncated || !strings.Contains(p.Detail, "published head") {
		t.Fatalf("verify with the published head after a cut: %v", err)
	}
	if _, err := VerifyWith(o.Dir, VerifyOptions{KeyFile: o.KeyFile, Head: "xyz"}); err == nil {
		t.Fatal("a malformed head was accepted")
	}
}

func TestKeyChange(t *testing.T) {
	o := writeLog(t, testOptions(t), 300)
	oldPub := PublicKeyFile(o.KeyFile)
	// the node gets a new key
	n := o
	n.KeyFile = filepath.Join(t.TempDir(), "new.key")
	if _, err := Open(n); err == nil || !strings.Contains(err.Error(), "AcceptKeys") {
		t.Fatalf("a new key without AcceptKeys: got %v, want a refusal naming AcceptKeys", err)
	}
	n.AcceptKeys = []string{oldPub}
	w, err := Open(n)
	if err != nil {
		t.Fatal(err)
	}
	w.Append(KindAgent, 0, "", Agent{Event: "start"})
	w.Close()
	changed := false
	for _, r := range readAll(t, n.Dir) {
		changed = changed || r.Kind == KindAgent && strings.Contains(string(r.Body), "key-change")
	}
	if !changed {
		t.Fatal("no key-change record")
	}
	var p *Problem
	if _, err := Verify(n.Dir, n.KeyFile); !errors.As(err, &p) || p.Kind != WrongKey || p.Segment != 1 {
		t.Fatalf("verify with the new key only: %v, want wrong-key at segment 1", err)
	}
	rep, err := VerifyWith(n.Dir, VerifyOptions{KeyFile: n.KeyFile, OldKeys: []string{oldPub}})
	if err != nil || len(rep.KeyIDs) != 2 {
		t.Fatalf("verify with both keys: %v (keys %v)", err, rep.KeyIDs)
	}
}
