package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/fuzzseed"
)

// fuzzKey signs the seed segments; the fuzz target verifies with it.
var fuzzKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// segmentSeeds writes small logs (each compression, every kind of record)
// and returns their first segment, whole and damaged.
func segmentSeeds(t *testing.T) []fuzzseed.Seed {
	var seeds []fuzzseed.Seed
	for _, c := range []Compression{CompressS2, CompressZstd, CompressNone} {
		d := t.TempDir()
		der, err := x509.MarshalPKCS8PrivateKey(fuzzKey)
		if err != nil {
			t.Fatal(err)
		}
		keyFile := filepath.Join(d, "node.key")
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(d, "log")
		w, err := Open(Options{Dir: dir, KeyFile: keyFile, Fsync: FsyncNever, Compression: c, BatchRecords: 3, Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		w.Append(KindAgent, 0, "", Agent{Event: "start", Version: "fuzz"})
		for i := 1; i <= 7; i++ {
			ev := &event.Event{Seq: uint64(i), Time: time.Unix(1700000000, int64(i)), CgroupID: 7, PID: 10, TID: 10, Comm: "sh", Nr: 257, Path: "/etc/passwd"}
			if i == 4 {
				ev.Argv = []string{"sh", "-c", "id"}
				ev.Addr = event.Addr{Family: event.AFUnix, Path: "/run/x.sock"}
			}
			if err := w.AppendEvent(ev); err != nil {
				t.Fatal(err)
			}
		}
		w.AppendGap(7, "c1", 8, 2)
		w.Append(KindVerdict, 7, "c1", map[string]any{"rule": "shell", "score": 0.9})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		seg, err := os.ReadFile(filepath.Join(dir, segName(1)))
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, fuzzseed.S("log-"+string(c), seg, false))
		seeds = append(seeds, fuzzseed.S("cut-"+string(c), seg[:len(seg)*2/3], true))
		flipped := bytes.Clone(seg)
		flipped[len(flipped)/2] ^= 0x40
		seeds = append(seeds, fuzzseed.S("flipped-"+string(c), flipped, false))
	}
	return append(seeds, fuzzseed.S("empty", []byte{}, false), fuzzseed.S("garbage", []byte("VIGILLOG\x00\x01 not a segment"), true))
}

// FuzzSegment: any bytes in a segment file verify or are reported as a
// Problem, never a panic; the reader ends with an error or io.EOF; a
// segment that verifies reads back whole, with as many records as the
// verifier counted.
func FuzzSegment(f *testing.F) {
	pub := fuzzKey.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, seg []byte, live bool) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := VerifyWith(dir, VerifyOptions{PubKey: pub, NoHeadFile: true, Live: live})
		if rep.Problem != nil && err == nil {
			t.Fatalf("problem %v reported without an error", rep.Problem)
		}
		if err != nil && err.Error() == "" {
			t.Fatal("an empty error")
		}
		read := func(o ReadOptions) (uint64, error) {
			r, err := NewReaderWith(dir, nil, o)
			if err != nil {
				return 0, err
			}
			defer r.Close()
			var n uint64
			for {
				rec, err := r.Next()
				if errors.Is(err, io.EOF) {
					return n, nil
				}
				if err != nil {
					return n, err
				}
				if rec == nil {
					t.Fatal("Next returned no record and no error")
				}
				n++
			}
		}
		n, rerr := read(ReadOptions{PubKey: pub})
		read(ReadOptions{Unverified: true})
		if err == nil && rep.OK() && rep.TornTail == 0 {
			if rerr != nil {
				t.Fatalf("the segment verifies (%d records), yet reading it fails after %d: %v", rep.Records, n, rerr)
			}
			if n != rep.Records {
				t.Fatalf("verify counted %d records, the reader read %d", rep.Records, n)
			}
		}
	})
}

func TestFuzzSeeds(t *testing.T) {
	fuzzseed.Update(t, "FuzzSegment", segmentSeeds(t))
}
