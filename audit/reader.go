package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Filter selects records. The zero Filter selects everything.
type Filter struct {
	Kinds       []Kind    // any of these kinds; empty: all
	CgroupID    uint64    // this cgroup; 0: any
	ContainerID string    // container ids starting with this; "": any
	Since       time.Time // records at or after; zero: no bound
	Until       time.Time // records before; zero: no bound
	Syscalls    []int32   // events of these syscall numbers (other kinds pass); empty: all
	FromIndex   uint64    // records numbered at least this (resume an export); 0: all
}

// Match reports whether the filter selects r.
func (f *Filter) Match(r *Record) bool {
	if r.Index < f.FromIndex {
		return false
	}
	if len(f.Kinds) > 0 && !containsKind(f.Kinds, r.Kind) {
		return false
	}
	if f.CgroupID != 0 && r.CgroupID != f.CgroupID {
		return false
	}
	if f.ContainerID != "" && !strings.HasPrefix(r.ContainerID, f.ContainerID) {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.Time.Before(f.Until) {
		return false
	}
	if len(f.Syscalls) > 0 && r.Kind == KindEvent {
		ok := false
		for _, nr := range f.Syscalls {
			if r.Event.Nr == nr {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func containsKind(ks []Kind, k Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// skipBatch reports whether no record of a batch with these times can
// match.
func (f *Filter) skipBatch(bh *batchHeader) bool {
	if bh.firstIndex+uint64(bh.records) <= f.FromIndex {
		return true
	}
	if !f.Since.IsZero() && bh.maxTime < f.Since.UnixNano() {
		return true
	}
	if !f.Until.IsZero() && bh.minTime >= f.Until.UnixNano() {
		return true
	}
	return false
}

// Reader reads the records of a log in order. It checks that every frame's
// hash covers its content and that frames chain (so a read never silently
// crosses damage); a Reader of NewReaderWith also checks every frame's
// signature with the given keys, and stops at the first frame that does
// not verify, with an error naming the segment and the problem. A torn
// last frame of the last segment (a writer that is running or crashed) ends
// the stream without an error. Whether records were cut from the end only
// Verify tells (it checks the signed head).
type Reader struct {
	dir    string
	filter Filter
	keys   keyring           // nil: signatures are not checked
	pub    ed25519.PublicKey // the key of the segment being read
	segs   []segFile
	si     int
	f      *os.File
	fr     *frameReader
	h      hash.Hash
	dec    *zstd.Decoder
	d      decoder
	buf    []byte
	prev   [32]byte
	chain  bool // prev holds the previous frame's hash
	index  uint64
	inBat  bool
	segNum uint64
}

// ReadOptions say which keys a Reader checks signatures with; as in
// VerifyOptions, PubKey (pinned) is used instead of KeyFile, and KeyFile
// "" is DefaultKeyFile(dir).
type ReadOptions struct {
	KeyFile string
	PubKey  ed25519.PublicKey
	OldKeys []string
	// Unverified reads without checking signatures (hashes and the chain
	// are still checked): a log whose key is not at hand, or one that does
	// not verify and is read anyway.
	Unverified bool
}

// keys loads the keyring of o for the log in dir; nil when Unverified.
func (o *ReadOptions) keys(dir string) (keyring, error) {
	if o.Unverified {
		return nil, nil
	}
	k, err := loadKeyring(o.OldKeys...)
	if err != nil {
		return nil, fmt.Errorf("read audit log: old key: %w", err)
	}
	if o.PubKey != nil {
		k.add(o.PubKey)
		return k, nil
	}
	file := o.KeyFile
	if file == "" {
		file = DefaultKeyFile(dir)
	}
	pub, err := LoadPublicKey(file)
	if err != nil {
		return nil, fmt.Errorf("read audit log: the key to check signatures with: %w", err)
	}
	k.add(pub)
	return k, nil
}

// NewReaderWith opens the log in dir for reading, checking signatures as
// o says; f selects records (nil: all).
func NewReaderWith(dir string, f *Filter, o ReadOptions) (*Reader, error) {
	keys, err := o.keys(dir)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(dir, f)
	if err != nil {
		return nil, err
	}
	r.keys = keys
	return r, nil
}

// NewReader opens the log in dir for reading without checking signatures
// (see NewReaderWith); f selects records (nil: all).
func NewReader(dir string, f *Filter) (*Reader, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("read audit log: no segments in %s", dir)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	r := &Reader{dir: dir, segs: segs, h: sha256.New(), dec: dec}
	if f != nil {
		r.filter = *f
	}
	return r, nil
}

// Close releases the reader.
func (r *Reader) Close() error {
	r.dec.Close()
	if r.f != nil {
		return r.f.Close()
	}
	return nil
}

// Next returns the next record the filter selects, or io.EOF.
func (r *Reader) Next() (*Record, error) {
	for {
		if r.inBat {
			rec := &Record{Index: r.index, Segment: r.segNum}
			done, err := r.d.next(rec)
			if err != nil {
				return nil, fmt.Errorf("segment %d record %d: %w", r.segNum, r.index, err)
			}
			if !done {
				r.index++
				if r.filter.Match(rec) {
					return rec, nil
				}
				continue
			}
			r.inBat = false
		}
		if err := r.nextBatch(); err != nil {
			return nil, err
		}
	}
}

// nextBatch moves to the next batch frame, opening segments as needed.
func (r *Reader) nextBatch() error {
	for {
		if r.fr == nil {
			if r.si >= len(r.segs) {
				return io.EOF
			}
			sg := r.segs[r.si]
			r.si++
			if r.filter.FromIndex > 0 && r.si < len(r.segs) {
				// skip a segment whose successor starts at or before FromIndex
				if a, err := readAnchorFrom(r.segs[r.si].path); err == nil && a.firstIndex <= r.filter.FromIndex {
					r.chain = false
					continue
				}
			}
			f, err := os.Open(sg.path)
			if errors.Is(err, os.ErrNotExist) && r.si < len(r.segs) {
				r.chain = false // retention removed it while we read: go on
				continue
			}
			if err != nil {
				return fmt.Errorf("read segment: %w", err)
			}
			fr, err := newFrameReader(f)
			if err != nil {
				f.Close()
				if errors.Is(err, errTorn) && r.si == len(r.segs) {
					return io.EOF // a segment being created
				}
				return fmt.Errorf("segment %d: %w", sg.num, err)
			}
			r.f, r.fr, r.segNum = f, fr, sg.num
		}
		fm, err := r.fr.next()
		if err == io.EOF || errors.Is(err, errTorn) && r.si == len(r.segs) {
			r.f.Close()
			r.f, r.fr = nil, nil
			continue
		}
		if err != nil {
			return fmt.Errorf("segment %d: %w", r.segNum, err)
		}
		if fm.typ == frameHeader && r.keys != nil {
			hd, err := parseHeader(fm.body)
			if err != nil {
				return r.bad(fm.off, "the segment header does not parse: %v", err)
			}
			if r.pub = r.keys[hd.keyID]; r.pub == nil {
				return r.bad(fm.off, "signed by key %x, not by the verifying key %s", hd.keyID, strings.Join(r.keys.ids(), ", "))
			}
		}
		if hashOK, sigOK := fm.check(r.h, r.pub); !hashOK {
			return r.bad(fm.off, "the frame does not match its hash (its content was changed)")
		} else if r.keys != nil && !sigOK {
			return r.bad(fm.off, "the frame's signature does not verify (forged, or altered and re-hashed)")
		}
		if r.chain && fm.prev != r.prev {
			return fmt.Errorf("segment %d: frame at offset %d does not chain to the frame before it: run 'vigil audit verify'", r.segNum, fm.off)
		}
		r.prev, r.chain = fm.hash, true
		switch fm.typ {
		case frameHeader:
			hd, err := parseHeader(fm.body)
			if err != nil {
				return fmt.Errorf("segment %d: %w", r.segNum, err)
			}
			r.index = hd.firstIndex
		case frameBatch:
			bh, payload, err := parseBatchHeader(fm.body)
			if err != nil {
				return fmt.Errorf("segment %d at offset %d: %w", r.segNum, fm.off, err)
			}
			if bh.firstIndex != r.index {
				return fmt.Errorf("segment %d at offset %d: batch starts at record %d, want %d: run 'vigil audit verify'", r.segNum, fm.off, bh.firstIndex, r.index)
			}
			if r.filter.skipBatch(&bh) {
				r.index += uint64(bh.records)
				continue
			}
			raw, err := decodePayload(r.dec, &bh, payload, r.buf)
			if err != nil {
				return fmt.Errorf("segment %d at offset %d: %w", r.segNum, fm.off, err)
			}
			r.buf = raw
			r.d.reset(raw)
			r.inBat = true
			return nil
		}
	}
}

// bad is the error of a frame that does not verify.
func (r *Reader) bad(off int64, format string, args ...any) error {
	return fmt.Errorf("segment %d (%s) at offset %d: %s: the log does not verify: run 'vigil audit verify' (or read it anyway, unverified)",
		r.segNum, segName(r.segNum), off, fmt.Sprintf(format, args...))
}

// ScanWith is Scan with a Reader of NewReaderWith: signatures are checked
// as o says.
func ScanWith(dir string, f *Filter, o ReadOptions, fn func(*Record) error) error {
	r, err := NewReaderWith(dir, f, o)
	if err != nil {
		return err
	}
	return scan(r, fn)
}

// Scan calls fn with every record of the log in dir that f selects (nil:
// all), in order, until fn returns an error (returned as is).
func Scan(dir string, f *Filter, fn func(*Record) error) error {
	r, err := NewReader(dir, f)
	if err != nil {
		return err
	}
	return scan(r, fn)
}

func scan(r *Reader, fn func(*Record) error) error {
	defer r.Close()
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}
