package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// ProblemKind names what is wrong with a log.
type ProblemKind string

// What Verify can find.
const (
	Modified  ProblemKind = "modified"  // bytes changed: a hash or signature does not verify
	Deleted   ProblemKind = "deleted"   // records or segments are missing
	Reordered ProblemKind = "reordered" // segments or batches are out of order or repeated
	Truncated ProblemKind = "truncated" // a segment ends early or the newest segment is gone
	WrongKey  ProblemKind = "wrong-key" // signed by another key than the one verifying
)

// Problem is the first thing Verify found wrong, and where.
type Problem struct {
	Kind    ProblemKind
	Segment uint64 // segment number (of the file)
	File    string
	Offset  int64  // byte offset of the frame in the file; -1: the whole segment
	First   uint64 // first record concerned; 0: none or unknown
	Last    uint64 // last record concerned
	Detail  string
}

func (p *Problem) Error() string {
	where := fmt.Sprintf("segment %d (%s)", p.Segment, p.File)
	if p.Offset >= 0 {
		where += fmt.Sprintf(" at offset %d", p.Offset)
	}
	if p.First != 0 {
		if p.Last > p.First {
			where += fmt.Sprintf(", records %d..%d", p.First, p.Last)
		} else {
			where += fmt.Sprintf(", record %d", p.First)
		}
	}
	return fmt.Sprintf("%s: %s: %s", p.Kind, where, p.Detail)
}

// Report is what Verify checked.
type Report struct {
	Dir         string
	KeyID       string   // the verifying key
	KeyIDs      []string // every key accepted (the verifying key and OldKeys)
	Fingerprint string   // the verifying key's Fingerprint
	KeySource   string   // "pinned" (VerifyOptions.PubKey) or the key file read
	// KeyBesideLog is true when the key was found next to the log (the
	// default DIR/../audit.key or .pub, or a file in DIR or its parent):
	// whoever can replace the log can replace that key, so the result only
	// proves the log consistent, not authentic. Pin the key (PubKey).
	KeyBesideLog bool
	Segments     int
	FirstSegment uint64
	LastSegment  uint64
	Batches      int
	Records      uint64 // records checked
	FirstIndex   uint64
	LastIndex    uint64
	Head         string   // hex hash of the last frame: record it elsewhere to detect a cut tail later
	Anchored     bool     // the log starts after a retention cut, at a signed anchor
	Open         bool     // the last segment is not sealed: a writer is running (or crashed and has not restarted)
	LossRecords  int      // KindLoss records: what the writer itself recorded as lost
	LostRecords  int64    // records those KindLoss records count (-1 entries, unknown, not summed)
	UnknownLoss  int      // KindLoss records whose count is unknown (-1)
	Alerts       []string // details of KindLoss records that point at tampering (Loss.Alert)
	TornTail     int64    // with Live: bytes of the frame being written at the end
	// SignedHead is the head file's signed head the chain was checked
	// against (nil with NoHeadFile).
	SignedHead *Head
	Problem    *Problem
}

// OK reports whether the log verified.
func (r *Report) OK() bool { return r.Problem == nil }

// Verify checks the log in dir with the key in keyFile (a private or public
// key file; "" means DefaultKeyFile(dir)): every frame's hash and
// signature, the chain across frames and segments, contiguous record
// numbers, seals, and the retention anchor. It returns the report and, if
// the log is not intact, the first Problem as the error. Other errors are
// I/O errors.
func Verify(dir, keyFile string) (Report, error) {
	return VerifyWith(dir, VerifyOptions{KeyFile: keyFile})
}

// VerifyOptions tune VerifyWith.
type VerifyOptions struct {
	KeyFile string // as Verify's keyFile
	// PubKey is a pinned public key (ParsePublicKey): it is used instead
	// of KeyFile. Pin the node's key where the log is verified; a key read
	// from beside the log proves nothing against whoever replaced both.
	PubKey ed25519.PublicKey
	// NoHeadFile verifies without the signed head file (a log written by a
	// vigil without one). A cut of the newest records at a frame boundary
	// then goes unnoticed unless Head is given.
	NoHeadFile bool
	// Live accepts a torn frame at the end of the last, unsealed segment as
	// the frame a running writer is writing (Report.TornTail), instead of
	// reporting the segment truncated.
	Live bool
	// OldKeys are earlier node keys (public or private key files) whose
	// segments are accepted as well, after a key change.
	OldKeys []string
	// Head is a head published earlier: its hash (Writer.Head().HashHex(),
	// Report.Head, hex) or its signed JSON (Options.Anchor, Writer.Head):
	// the chain must pass through it, which catches a cut back to an older
	// head file put back in place.
	Head string
}

// isBesideLog reports whether the key file is the default one or sits in
// the log directory or its parent.
func isBesideLog(dir, keyFile string) bool {
	d, err1 := filepath.Abs(dir)
	k, err2 := filepath.Abs(keyFile)
	if err1 != nil || err2 != nil {
		return true
	}
	kd := filepath.Dir(k)
	return kd == d || kd == filepath.Dir(d)
}

// VerifyWith is Verify with options.
func VerifyWith(dir string, o VerifyOptions) (Report, error) {
	keyFile := o.KeyFile
	rep := Report{Dir: dir}
	pub := o.PubKey
	if pub != nil {
		if len(pub) != ed25519.PublicKeySize {
			return rep, fmt.Errorf("verify: pinned public key of %d bytes, want %d", len(pub), ed25519.PublicKeySize)
		}
		rep.KeySource = "pinned"
	} else {
		if keyFile == "" {
			keyFile = DefaultKeyFile(dir)
		}
		var err error
		if pub, err = LoadPublicKey(keyFile); err != nil {
			return rep, fmt.Errorf("verify: %w", err)
		}
		rep.KeySource, rep.KeyBesideLog = keyFile, isBesideLog(dir, keyFile)
	}
	rep.Fingerprint = Fingerprint(pub)
	keys, err := loadKeyring(o.OldKeys...)
	if err != nil {
		return rep, fmt.Errorf("verify: old key: %w", err)
	}
	keys.add(pub)
	v := &verifier{rep: &rep, pub: pub, kid: keyID(pub), keys: keys, h: sha256.New(), live: o.Live, noHeadFile: o.NoHeadFile}
	rep.KeyIDs = keys.ids()
	if o.Head != "" {
		if b, err := hex.DecodeString(o.Head); err == nil && len(b) == 32 {
			v.expect = (*[32]byte)(b)
		} else {
			h, err := ParseHead([]byte(o.Head))
			if err == nil {
				if k := keys[h.KeyID]; k == nil {
					err = fmt.Errorf("signed by key %x, not among the verifying keys %v", h.KeyID, keys.ids())
				} else {
					err = CheckHead(h, k)
				}
			}
			if err != nil {
				return rep, fmt.Errorf("verify: published head: want 64 hex digits (a head hash) or a signed head (JSON): %w", err)
			}
			v.expect = &h.Hash
		}
	}
	rep.KeyID = hex.EncodeToString(v.kid[:])
	if v.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
		return rep, fmt.Errorf("zstd: %w", err)
	}
	defer v.dec.Close()
	if err := v.run(dir); err != nil {
		return rep, err
	}
	if rep.Problem != nil {
		return rep, rep.Problem
	}
	return rep, nil
}

type verifier struct {
	rep    *Report
	pub    ed25519.PublicKey // the key of the segment being checked
	keys   keyring
	kid    [8]byte
	h      hash.Hash
	dec    *zstd.Decoder
	buf    []byte
	d      decoder
	prev   [32]byte
	index  uint64
	live   bool
	expect *[32]byte // a published head the chain must pass through
	found  bool

	noHeadFile bool
	headFile   *Head // the head file's head the chain must pass through
	headErr    error // the head file is missing (os.ErrNotExist) or invalid
	headFound  bool
}

func (v *verifier) fail(p Problem) error {
	v.rep.Problem = &p
	return nil
}

func (v *verifier) run(dir string) error {
	// The head file first: a running writer rewrites it only after the
	// segment data it names, so read before the segments it is never ahead.
	if !v.noHeadFile {
		h, ok, err := readHeadFile(dir, v.keys)
		switch {
		case !ok:
			v.headErr = os.ErrNotExist
		case err != nil:
			v.headErr = err
		default:
			v.headFile = &h
			v.rep.SignedHead = &h
		}
	}
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	anc, hasAnchor, aerr := readAnchor(dir, v.keys)
	if len(segs) == 0 {
		if hasAnchor && aerr == nil {
			return v.fail(Problem{Kind: Deleted, Segment: anc.segment, File: filepath.Join(dir, segName(anc.segment)), Offset: -1,
				Detail: fmt.Sprintf("the retention anchor says the log starts at segment %d, and no segment is left", anc.segment)})
		}
		return fmt.Errorf("verify: no segments (%s*%s) in %s", segPrefix, segSuffix, dir)
	}
	expect := uint64(1)
	v.index = 1
	if segs[0].num != 1 {
		first := segs[0]
		switch {
		case !hasAnchor:
			return v.fail(Problem{Kind: Deleted, Segment: first.num, File: first.path, Offset: -1,
				Detail: fmt.Sprintf("segments 1..%d are missing and there is no retention anchor", first.num-1)})
		case aerr != nil:
			kind := Modified
			if a := anc.keyID; v.keys[a] == nil && a != [8]byte{} {
				kind = WrongKey
			}
			return v.fail(Problem{Kind: kind, Segment: first.num, File: filepath.Join(dir, anchorName), Offset: -1, Detail: aerr.Error()})
		case anc.segment != first.num:
			return v.fail(Problem{Kind: Deleted, Segment: first.num, File: first.path, Offset: -1,
				Detail: fmt.Sprintf("the retention anchor says the log starts at segment %d; segments %d..%d are missing", anc.segment, anc.segment, first.num-1)})
		}
		expect, v.index, v.prev = anc.segment, anc.firstIndex, anc.prev
		v.rep.Anchored = true
	}
	v.rep.FirstSegment, v.rep.FirstIndex = segs[0].num, v.index
	for i, sg := range segs {
		if sg.num != expect {
			return v.fail(Problem{Kind: Deleted, Segment: sg.num, File: sg.path, Offset: -1,
				Detail: fmt.Sprintf("segments %d..%d are missing", expect, sg.num-1)})
		}
		last := i == len(segs)-1
		sealed, reason, err := v.segment(sg, last)
		if err != nil || v.rep.Problem != nil {
			return err
		}
		v.rep.Segments++
		v.rep.LastSegment = sg.num
		if !sealed && !last {
			return v.fail(Problem{Kind: Truncated, Segment: sg.num, File: sg.path, Offset: sg.size,
				Detail: fmt.Sprintf("the segment has no seal but segment %d follows: its end was cut off", segs[i+1].num)})
		}
		if last && sealed && reason == sealRotate {
			return v.fail(Problem{Kind: Truncated, Segment: sg.num, File: sg.path, Offset: -1,
				Detail: fmt.Sprintf("the segment was sealed for rotation but segment %d, which must follow, is missing", sg.num+1)})
		}
		v.rep.Open = last && !sealed
		expect++
	}
	if v.index > 1 {
		v.rep.LastIndex = v.index - 1
	}
	v.rep.Head = hex.EncodeToString(v.prev[:])
	if p := v.checkHeadFile(dir, segs); p != nil {
		return v.fail(*p)
	}
	if v.expect != nil && !v.found {
		last := segs[len(segs)-1]
		return v.fail(Problem{Kind: Truncated, Segment: last.num, File: last.path, Offset: -1,
			Detail: fmt.Sprintf("the published head %x is not in the log: records after it were cut off, or the log was rewritten", v.expect)})
	}
	return nil
}

func (v *verifier) seen(h [32]byte) {
	if v.expect != nil && h == *v.expect {
		v.found = true
	}
	if v.headFile != nil && h == v.headFile.Hash {
		v.headFound = true
	}
}

// checkHeadFile compares the chain with the signed head file: the chain
// must pass through the head it names.
func (v *verifier) checkHeadFile(dir string, segs []segFile) *Problem {
	if v.noHeadFile {
		return nil
	}
	last := segs[len(segs)-1]
	p := &Problem{Kind: Truncated, Segment: last.num, File: filepath.Join(dir, headName), Offset: -1}
	switch {
	case errors.Is(v.headErr, os.ErrNotExist):
		p.Detail = "the signed head file is missing: it was deleted, perhaps with records cut from the end " +
			"(a log written by a vigil without signed heads: verify it with --no-head)"
		return p
	case v.headErr != nil:
		p.Kind, p.Detail = Modified, v.headErr.Error()
		if strings.Contains(v.headErr.Error(), "not among the verifying keys") {
			p.Kind = WrongKey
		}
		return p
	case v.headFound:
		return nil
	}
	h := v.headFile
	have := v.index - 1
	p.Segment = h.Segment
	p.Detail = fmt.Sprintf("the signed head (seq %d, signed %s) says the log reaches record %d at offset %d of segment %d; ",
		h.Seq, h.Time.UTC().Format(time.RFC3339), h.Index, h.Offset, h.Segment)
	switch {
	case h.Index > have:
		p.First, p.Last = have+1, h.Index
		p.Detail += fmt.Sprintf("the log ends at record %d in segment %d: records after it were cut off", have, last.num)
	case h.Segment == last.num && last.size < h.Offset:
		p.Offset = last.size
		p.Detail += fmt.Sprintf("the segment ends at offset %d, before the head's frame: frames after it (batches or the seal) were cut off", last.size)
	default:
		p.Detail += "the chain does not pass through it: the end of the log was cut and rewritten, or the head file belongs to another log"
	}
	if h.Segment > last.num {
		p.Detail += fmt.Sprintf(" (segments %d..%d are missing)", last.num+1, h.Segment)
	}
	return p
}

// segment checks one segment file; it returns whether it ends with a seal
// and the seal's reason.
func (v *verifier) segment(sg segFile, last bool) (sealed bool, reason byte, err error) {
	f, err := os.Open(sg.path)
	if err != nil {
		return false, 0, fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	p := Problem{Segment: sg.num, File: sg.path, Offset: 0}
	fr, err := newFrameReader(f)
	if err != nil {
		p.Kind = Modified
		if errors.Is(err, errTorn) {
			p.Kind = Truncated
		}
		p.Detail = err.Error()
		return false, 0, v.fail(p)
	}
	var segRecs uint64
	first := true
	for {
		fm, err := fr.next()
		if err == io.EOF {
			break
		}
		p.Offset = fm.off
		if errors.Is(err, errTorn) && last && v.live {
			v.rep.TornTail = sg.size - fm.off
			break
		}
		if errors.Is(err, errTorn) {
			p.Kind, p.Detail = Truncated, "the segment ends inside a frame ("+err.Error()+")"
			if last {
				p.Detail += "; if the writer crashed, its next start cuts this torn tail and records the loss"
			}
			return false, 0, v.fail(p)
		}
		if err != nil {
			p.Kind, p.Detail = Modified, err.Error()
			return false, 0, v.fail(p)
		}
		if sealed {
			p.Kind, p.Detail = Modified, "a frame follows the segment's seal"
			return false, 0, v.fail(p)
		}
		if first {
			if fm.typ != frameHeader {
				p.Kind, p.Detail = Modified, fmt.Sprintf("the first frame is %q, not a segment header", fm.typ)
				return false, 0, v.fail(p)
			}
			hd, herr := parseHeader(fm.body)
			if herr == nil && v.keys[hd.keyID] != nil {
				v.pub = v.keys[hd.keyID]
			}
			hashOK, sigOK := fm.check(v.h, v.pub)
			switch {
			case herr == nil && v.keys[hd.keyID] == nil:
				p.Kind, p.Detail = WrongKey, fmt.Sprintf("the segment was signed by key %x; verifying with key %s", hd.keyID, strings.Join(v.keys.ids(), ", "))
			case !hashOK || herr != nil:
				p.Kind, p.Detail = Modified, "the segment header does not match its hash"
				if herr != nil {
					p.Detail += " (" + herr.Error() + ")"
				}
			case !sigOK:
				p.Kind, p.Detail = Modified, "the segment header's signature does not verify: forged or altered (or signed by another key claiming this key's id)"
			case hd.segment != sg.num:
				p.Kind, p.Detail = Reordered, fmt.Sprintf("the file of segment %d holds segment %d", sg.num, hd.segment)
			case fm.prev != v.prev || hd.firstIndex != v.index:
				p.Kind, p.First = v.classify(hd.firstIndex)
				p.Detail = fmt.Sprintf("the segment (first record %d) does not chain to the end of the one before it (next record %d)", hd.firstIndex, v.index)
				if p.Kind == Modified {
					p.Kind = Truncated
					p.Detail += ": the previous segment lost its end or was replaced"
				}
			}
			if p.Kind != "" {
				return false, 0, v.fail(p)
			}
			first = false
			v.prev = fm.hash
			v.seen(fm.hash)
			continue
		}
		hashOK, sigOK := fm.check(v.h, v.pub)
		if !hashOK || !sigOK {
			p.Kind, p.Detail = Modified, "the frame does not match its hash (its content was changed)"
			if hashOK {
				p.Detail = "the frame's signature does not verify (forged, or altered and re-hashed)"
			}
			if bh, _, berr := parseBatchHeader(fm.body); fm.typ == frameBatch && berr == nil && bh.records > 0 {
				p.First, p.Last = bh.firstIndex, bh.firstIndex+uint64(bh.records)-1
			}
			return false, 0, v.fail(p)
		}
		switch fm.typ {
		case frameBatch:
			bh, payload, berr := parseBatchHeader(fm.body)
			if berr != nil {
				p.Kind, p.Detail = Modified, berr.Error()+" (in a signed frame: written by a broken writer)"
				return false, 0, v.fail(p)
			}
			if fm.prev != v.prev || bh.firstIndex != v.index {
				p.Kind, p.First = v.classify(bh.firstIndex)
				p.Last = p.First
				switch p.Kind {
				case Deleted:
					p.Last = bh.firstIndex - 1
					p.Detail = fmt.Sprintf("records %d..%d are missing: the next batch starts at record %d", v.index, bh.firstIndex-1, bh.firstIndex)
					if off, ok := v.findBatch(sg.path, fm.end, v.index); ok {
						p.Kind, p.First, p.Last = Reordered, bh.firstIndex, bh.firstIndex+uint64(bh.records)-1
						p.Detail = fmt.Sprintf("the batch of records %d..%d comes before the batch of records %d.. (at offset %d): batches were moved", bh.firstIndex, bh.firstIndex+uint64(bh.records)-1, v.index, off)
					}
				case Reordered:
					p.Detail = fmt.Sprintf("a batch of records %d..%d comes where record %d belongs: batches moved or repeated", bh.firstIndex, bh.firstIndex+uint64(bh.records)-1, v.index)
				default:
					p.Detail = "the batch is authentic but does not chain to the frame before it: a frame was replaced"
				}
				return false, 0, v.fail(p)
			}
			n, losses, lost, derr := v.count(&bh, payload)
			if derr != nil || n != uint64(bh.records) {
				p.Kind, p.First = Modified, bh.firstIndex
				p.Detail = fmt.Sprintf("the batch says %d records and holds %d (%v)", bh.records, n, derr)
				return false, 0, v.fail(p)
			}
			v.rep.LossRecords += losses
			v.rep.LostRecords += lost
			v.rep.Batches++
			v.rep.Records += n
			segRecs += n
			v.index += n
		case frameSeal:
			s, serr := parseSeal(fm.body)
			if serr == nil && (s.nextIndex != v.index || s.records != segRecs) {
				serr = fmt.Errorf("the seal says %d records up to %d, the segment holds %d up to %d", s.records, s.nextIndex-1, segRecs, v.index-1)
			}
			if fm.prev != v.prev && serr == nil {
				serr = errors.New("the seal does not chain to the frame before it")
			}
			if serr != nil {
				p.Kind, p.Detail = Deleted, serr.Error()
				return false, 0, v.fail(p)
			}
			sealed, reason = true, s.reason
		default:
			p.Kind, p.Detail = Modified, fmt.Sprintf("unexpected frame %q inside a segment", fm.typ)
			return false, 0, v.fail(p)
		}
		v.prev = fm.hash
		v.seen(fm.hash)
	}
	if first {
		return false, 0, v.fail(Problem{Kind: Truncated, Segment: sg.num, File: sg.path, Offset: 0, Detail: "the segment has no header"})
	}
	return sealed, reason, nil
}

// findBatch looks in the segment file, from offset from on, for an
// authentic batch frame that starts at record index; it tells a move from
// a deletion.
func (v *verifier) findBatch(path string, from int64, index uint64) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	fr, err := newFrameReader(f)
	if err != nil {
		return 0, false
	}
	h := sha256.New()
	for {
		fm, err := fr.next()
		if err != nil {
			return 0, false
		}
		if fm.off < from || fm.typ != frameBatch {
			continue
		}
		bh, _, err := parseBatchHeader(fm.body)
		if err != nil || bh.firstIndex != index {
			continue
		}
		if hashOK, sigOK := fm.check(h, v.pub); hashOK && sigOK {
			return fm.off, true
		}
	}
}

// classify names an authentic frame that starts at record first where
// v.index belongs.
func (v *verifier) classify(first uint64) (ProblemKind, uint64) {
	switch {
	case first > v.index:
		return Deleted, v.index
	case first < v.index:
		return Reordered, first
	}
	return Modified, first
}

// count decodes a batch and counts its records and KindLoss records.
func (v *verifier) count(bh *batchHeader, payload []byte) (n uint64, losses int, lost int64, err error) {
	raw, err := decodePayload(v.dec, bh, payload, v.buf)
	if err != nil {
		return 0, 0, 0, err
	}
	v.buf = raw
	v.d.reset(raw)
	var r Record
	for {
		done, err := v.d.next(&r)
		if err != nil {
			return n, losses, lost, err
		}
		if done {
			return n, losses, lost, nil
		}
		n++
		if r.Kind == KindLoss {
			losses++
			var l Loss
			if json.Unmarshal(r.Body, &l) == nil {
				if l.Records > 0 {
					lost += l.Records
				} else {
					v.rep.UnknownLoss++
				}
				if l.Alert() {
					v.rep.Alerts = append(v.rep.Alerts, fmt.Sprintf("record %d: %s: %s", r.Index, l.Reason, l.Detail))
				}
			}
		}
	}
}
