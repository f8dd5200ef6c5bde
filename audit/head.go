package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The signed head.
//
// The chain proves every frame it holds, but not that nothing came after
// the last one: a segment cut at a frame boundary (its seal included) looks
// like a writer that stopped there, and deleting the newest segments looks
// like the log's end. So the writer also keeps a signed head outside the
// segments: the file "head" in the log directory, rewritten after every
// batch reaches the disk (after its fsync under FsyncBatch, after the
// periodic fsync under an interval policy), with
//
//	head frame = type 'E', body: seq(8) segment(8) nextIndex(8) offset(8) time(8) keyid(8)
//	prev       = the chain hash of the last frame on disk
//
// signed like every frame. Verify reads the head file before the segments
// and requires the chain to pass through the head's hash: a cut of any
// batch the head has covered is reported as truncated, and so is a missing
// or altered head file. Records after the head (the batch written after the
// last head, a crash before the head was rewritten) are accepted: under
// FsyncBatch that window is one batch, under an interval policy one
// interval. Open compares the head with what it recovers and records any
// difference as a KindLoss record that carries the old signed head, before
// it writes a new one.
//
// What a head file cannot prove: an attacker who saved an old head file can
// put it back after cutting the log to that point. Publishing the head
// elsewhere closes that gap: Writer.Head for metrics and status,
// Options.Anchor to hand the signed head to an outside store, and
// VerifyOptions.Head to check a published head later.
//
// The file holds two slots of headSlot bytes, written alternately with an
// increasing seq, so a torn write or a reader racing the writer always
// finds the previous head intact in the other slot. It is not fsynced on
// its own (except at Close): it is written only after the data it names is
// synced, so after a power loss it can only lag behind the log, never run
// ahead of it.
const (
	frameHead   = 'E'
	headName    = "head"
	headSlot    = 256
	headBodyLen = 48
)

// Head is a signed statement of where the log's chain ends: the last
// record, the hash of the last frame and where it is.
type Head struct {
	Segment uint64    // segment of the last frame
	Index   uint64    // stream index of the last record (0: none yet)
	Hash    [32]byte  // chain hash of the last frame
	Offset  int64     // bytes of the segment up to the end of that frame
	Seq     uint64    // counts the heads a writer wrote; higher is newer
	Time    time.Time // when the head was signed
	KeyID   [8]byte   // the key that signed it
	// Signed is the signed head frame (file magic and frame), the proof:
	// ParseHead reads it back and Verify checks its signature.
	Signed []byte
}

// HashHex is the head hash in hex (what VerifyOptions.Head takes).
func (h Head) HashHex() string { return hex.EncodeToString(h.Hash[:]) }

func (h Head) String() string {
	return fmt.Sprintf("segment %d record %d head %s", h.Segment, h.Index, h.HashHex())
}

// headJSON is the published form of a Head.
type headJSON struct {
	Segment uint64    `json:"segment"`
	Index   uint64    `json:"index"`
	Hash    string    `json:"hash"`
	Offset  int64     `json:"offset"`
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	KeyID   string    `json:"key"`
	Signed  []byte    `json:"signed"`
}

// MarshalJSON writes the head with its hash and key id in hex and the
// signed frame in base64: what an anchor stores and 'vigil audit verify
// --head FILE' reads back.
func (h Head) MarshalJSON() ([]byte, error) {
	return json.Marshal(headJSON{Segment: h.Segment, Index: h.Index, Hash: h.HashHex(), Offset: h.Offset, Seq: h.Seq,
		Time: h.Time.UTC(), KeyID: hex.EncodeToString(h.KeyID[:]), Signed: h.Signed})
}

// ParseHead reads a published head: its JSON form or the signed frame
// itself. Only the signed frame counts (the other JSON fields are for
// people); its signature is checked by Verify (or CheckHead).
func ParseHead(data []byte) (Head, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '{' {
		var j headJSON
		if err := json.Unmarshal(data, &j); err != nil {
			return Head{}, fmt.Errorf("head: %w", err)
		}
		if len(j.Signed) == 0 {
			return Head{}, errors.New(`head: no "signed" field: want the JSON of Writer.Head or Options.Anchor`)
		}
		data = j.Signed
	}
	return decodeHead(data)
}

// CheckHead checks the signature of a head with pub.
func CheckHead(h Head, pub ed25519.PublicKey) error {
	if keyID(pub) != h.KeyID {
		return fmt.Errorf("head: signed by key %x, not by key %s", h.KeyID, KeyID(pub))
	}
	f, err := headFrame(h.Signed)
	if err != nil {
		return err
	}
	if hashOK, sigOK := f.check(sha256.New(), pub); !hashOK || !sigOK {
		return errors.New("head: its hash or signature does not verify (forged or altered)")
	}
	return nil
}

func headFrame(b []byte) (frame, error) {
	fr, err := newFrameReader(bytes.NewReader(b))
	if err != nil {
		return frame{}, fmt.Errorf("head: %w", err)
	}
	f, err := fr.next()
	if err != nil || f.typ != frameHead || len(f.body) != headBodyLen {
		return frame{}, fmt.Errorf("head: not a head frame (%v)", err)
	}
	f.raw = append([]byte(nil), f.raw...)
	f.sig = append([]byte(nil), f.sig...)
	return f, nil
}

// decodeHead reads the fields of a signed head; it does not check the
// signature.
func decodeHead(b []byte) (Head, error) {
	f, err := headFrame(b)
	if err != nil {
		return Head{}, err
	}
	le := binary.LittleEndian
	h := Head{Seq: le.Uint64(f.body), Segment: le.Uint64(f.body[8:]), Offset: int64(le.Uint64(f.body[24:])),
		Time: time.Unix(0, int64(le.Uint64(f.body[32:]))), Hash: f.prev, Signed: append([]byte(nil), b[:f.end]...)}
	if next := le.Uint64(f.body[16:]); next > 0 {
		h.Index = next - 1
	}
	copy(h.KeyID[:], f.body[40:48])
	return h, nil
}

// headPos is a position in the chain: what a head names.
type headPos struct {
	hash    [32]byte
	next    uint64 // next record index
	segment uint64
	offset  int64
}

// encodeHead signs a head for pos.
func encodeHead(s *sealer, pos headPos, seq uint64, now time.Time, kid [8]byte) []byte {
	b := append(make([]byte, 0, headSlot), fileMagic...)
	b = startFrame(b, frameHead)
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = binary.LittleEndian.AppendUint64(b, pos.segment)
	b = binary.LittleEndian.AppendUint64(b, pos.next)
	b = binary.LittleEndian.AppendUint64(b, uint64(pos.offset))
	b = binary.LittleEndian.AppendUint64(b, uint64(now.UnixNano()))
	b = append(b, kid[:]...)
	b, _ = s.finishFrame(b, len(fileMagic), &pos.hash)
	return b
}

// openHeadFile opens (creating) the head file of dir for the writer; a
// symlink is refused.
func openHeadFile(dir string) (*os.File, error) {
	path := filepath.Join(dir, headName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit head file: %w", err)
	}
	return f, nil
}

// writeHead writes the head for pos into the slot of its seq.
func (w *Writer) writeHead(pos headPos) {
	if w.headF == nil || pos == w.headAt {
		return
	}
	w.headSeq++
	now := time.Now() // not opts.Now: the segments' bytes stay those of the clock given
	b := encodeHead(w.seal, pos, w.headSeq, now, w.keyID)
	if _, err := w.headF.WriteAt(b, int64(w.headSeq%2)*headSlot); err != nil {
		w.headSeq--
		w.opts.Logf("audit: write the signed head %s: %v", w.headF.Name(), err)
		return
	}
	w.headAt = pos
	w.head = Head{Segment: pos.segment, Hash: pos.hash, Offset: pos.offset, Seq: w.headSeq, Time: now, KeyID: w.keyID, Signed: b}
	if pos.next > 0 {
		w.head.Index = pos.next - 1
	}
}

// readHeadFile reads the newest valid slot of dir's head file and checks
// its signature with keys. ok is false when there is no head file.
func readHeadFile(dir string, keys keyring) (h Head, ok bool, err error) {
	path := filepath.Join(dir, headName)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return h, false, nil
	}
	if err != nil {
		return h, true, fmt.Errorf("head file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 2*headSlot+1))
	if err != nil {
		return h, true, fmt.Errorf("head file: %w", err)
	}
	if len(b) > 2*headSlot {
		return h, true, fmt.Errorf("head file: %d bytes or more, want at most %d", len(b), 2*headSlot)
	}
	var found bool
	var errs []string
	for slot := 0; slot*headSlot < len(b); slot++ {
		s := b[slot*headSlot : min(len(b), (slot+1)*headSlot)]
		c, err := decodeHead(s)
		if err == nil {
			if pub := keys[c.KeyID]; pub == nil {
				err = fmt.Errorf("head: signed by key %x, not among the verifying keys %v", c.KeyID, keys.ids())
			} else {
				err = CheckHead(c, pub)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("slot %d: %v", slot, err))
			continue
		}
		if !found || c.Seq > h.Seq {
			h, found = c, true
		}
	}
	if !found {
		if len(errs) == 0 {
			errs = append(errs, "empty")
		}
		return h, true, fmt.Errorf("head file %s holds no valid signed head (%s)", path, strings.Join(errs, "; "))
	}
	return h, true, nil
}

// Head returns the signed head last written: the last frame that reached
// the disk (after its fsync, unless Fsync is FsyncNever). Publish it (the
// agent's status and metrics, Options.Anchor) so a later verify can prove
// that nothing after it was cut: 'vigil audit verify --head HASH'.
func (w *Writer) Head() Head {
	w.io.Lock()
	defer w.io.Unlock()
	h := w.head
	h.Signed = append([]byte(nil), h.Signed...)
	return h
}

// anchorLoop hands the signed head to Options.Anchor every AnchorInterval
// when it changed; Close hands over the last one.
func (w *Writer) anchorLoop() {
	defer close(w.anchorDone)
	t := time.NewTicker(w.opts.AnchorInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.anchor()
	}
}

// anchor calls Options.Anchor with the current head unless it was handed
// over already.
func (w *Writer) anchor() {
	h := w.Head()
	w.anchorMu.Lock()
	defer w.anchorMu.Unlock()
	if h.Seq == 0 || h.Seq == w.anchored {
		return
	}
	if err := w.opts.Anchor(h); err != nil {
		w.opts.Logf("audit: anchor the head (%s): %v", h, err)
		return
	}
	w.anchored = h.Seq
}

// AnchorCommand returns an Options.Anchor that runs the command argv with
// the head's JSON (one line) on its standard input, and fails when it
// exits non-zero or runs longer than timeout (0: 30s). A command such as
// 'logger -t vigil-audit-head', or one that posts to a remote store, keeps
// the head where an attacker on the node cannot rewrite it.
func AnchorCommand(timeout time.Duration, argv ...string) (func(Head) error, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("anchor command: empty, want a program and its arguments")
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return func(h Head) error {
		line, err := json.Marshal(h)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdin = bytes.NewReader(append(line, '\n'))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("anchor command %s: %w: %s", argv[0], err, bytes.TrimSpace(out))
		}
		return nil
	}, nil
}

// UnmarshalJSON reads the JSON of MarshalJSON (through its signed frame).
func (h *Head) UnmarshalJSON(b []byte) error {
	v, err := ParseHead(b)
	if err != nil {
		return err
	}
	*h = v
	return nil
}
