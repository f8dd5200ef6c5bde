package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// anchor is the signed note retention leaves: the stream now starts at
// segment, whose header chains to prev and whose first record is
// firstIndex. Verify starts from it when older segments are gone.
type anchor struct {
	segment    uint64
	firstIndex uint64
	time       int64
	keyID      [8]byte
	prev       [32]byte
}

// retention deletes the oldest sealed segments beyond MaxBytes or older
// than MaxAge, after writing the anchor for the first segment it keeps.
func (w *Writer) retention() {
	if w.opts.MaxBytes == 0 && w.opts.MaxAge == 0 || len(w.segs) < 2 {
		return
	}
	var total int64
	for _, s := range w.segs {
		total += s.size
	}
	now := w.opts.Now()
	cut := 0
	for cut < len(w.segs)-1 {
		s := w.segs[cut]
		if w.opts.MaxBytes > 0 && total > w.opts.MaxBytes || w.opts.MaxAge > 0 && now.Sub(s.last) > w.opts.MaxAge {
			total -= s.size
			cut++
			continue
		}
		break
	}
	if cut == 0 {
		return
	}
	keep := w.segs[cut]
	a, err := readAnchorFrom(keep.path)
	if err != nil {
		w.opts.Logf("audit: retention: read segment %d header: %v; nothing deleted", keep.num, err)
		return
	}
	a.time = now.UnixNano()
	a.keyID = w.keyID
	if err := writeAnchor(w.opts.Dir, a, w.seal); err != nil {
		w.opts.Logf("audit: retention: %v; nothing deleted", err)
		return
	}
	for _, s := range w.segs[:cut] {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.opts.Logf("audit: retention: %v", err)
		}
	}
	syncDir(w.opts.Dir)
	w.opts.Logf("audit: retention deleted segments %d..%d; the log starts at segment %d (record %d)", w.segs[0].num, w.segs[cut-1].num, keep.num, a.firstIndex)
	w.stats.Deleted += cut
	w.segs = append(w.segs[:0], w.segs[cut:]...)
}

// readAnchorFrom reads what an anchor for the segment in path says: its
// number, first record and the hash its header chains to.
func readAnchorFrom(path string) (anchor, error) {
	var a anchor
	f, err := os.Open(path)
	if err != nil {
		return a, err
	}
	defer f.Close()
	fr, err := newFrameReader(f)
	if err != nil {
		return a, err
	}
	fm, err := fr.next()
	if err != nil {
		return a, err
	}
	if fm.typ != frameHeader {
		return a, fmt.Errorf("first frame is %q, not a header", fm.typ)
	}
	hd, err := parseHeader(fm.body)
	if err != nil {
		return a, err
	}
	a.segment, a.firstIndex, a.prev = hd.segment, hd.firstIndex, fm.prev
	return a, nil
}

func writeAnchor(dir string, a anchor, s *sealer) error {
	b := append([]byte(nil), fileMagic...)
	b = startFrame(b, frameAnchor)
	b = binary.LittleEndian.AppendUint64(b, a.segment)
	b = binary.LittleEndian.AppendUint64(b, a.firstIndex)
	b = binary.LittleEndian.AppendUint64(b, uint64(a.time))
	b = append(b, a.keyID[:]...)
	b, _ = s.finishFrame(b, len(fileMagic), &a.prev)
	tmp := filepath.Join(dir, anchorName+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write anchor: %w", err)
	}
	if f, err := os.Open(tmp); err == nil {
		f.Sync()
		f.Close()
	}
	if err := os.Rename(tmp, filepath.Join(dir, anchorName)); err != nil {
		return fmt.Errorf("write anchor: %w", err)
	}
	syncDir(dir)
	return nil
}

// readAnchor reads and checks the anchor file of dir; ok is false when
// there is none.
func readAnchor(dir string, keys keyring) (a anchor, ok bool, err error) {
	f, err := os.Open(filepath.Join(dir, anchorName))
	if errors.Is(err, os.ErrNotExist) {
		return a, false, nil
	}
	if err != nil {
		return a, false, err
	}
	defer f.Close()
	fr, err := newFrameReader(f)
	if err != nil {
		return a, true, fmt.Errorf("anchor: %w", err)
	}
	fm, err := fr.next()
	if err != nil || fm.typ != frameAnchor || len(fm.body) != 32 {
		return a, true, fmt.Errorf("anchor: not an anchor frame (%v)", err)
	}
	if _, err := fr.next(); err != io.EOF {
		return a, true, errors.New("anchor: bytes after the anchor frame")
	}
	le := binary.LittleEndian
	a.segment = le.Uint64(fm.body)
	a.firstIndex = le.Uint64(fm.body[8:])
	a.time = int64(le.Uint64(fm.body[16:]))
	copy(a.keyID[:], fm.body[24:32])
	a.prev = fm.prev
	pub := keys[a.keyID]
	if pub == nil {
		return a, true, fmt.Errorf("anchor: signed by key %x, not among the verifying keys %v", a.keyID, keys.ids())
	}
	if hashOK, sigOK := fm.check(sha256.New(), pub); !hashOK || !sigOK {
		return a, true, errors.New("anchor: modified (its hash or signature does not verify)")
	}
	return a, true, nil
}
