package audit

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// On-disk format, version 1 (all integers little endian):
//
//	file    = magic frame*
//	magic   = "VGLAUDIT" (8 bytes)
//	frame   = type(1) bodylen(4) body prev(32) hash(32) sig(64)
//	hash    = SHA-256(prev || type || bodylen || body)
//	sig     = ed25519 signature of hash by the node key
//
// type 'H' header body: version(2) segment(8) firstIndex(8) created(8, unix ns)
// keyid(8) ncounters(4) {cgroup(8) cseq(8)}*: the per-container sequence
// numbers at the segment's start (for recovery).
// type 'B' batch body: firstIndex(8) records(4) codec(1) rawlen(4)
// mintime(8) maxtime(8) payload (the records, see codec.go; codec 0 raw,
// 1 zstd, 2 s2).
// type 'S' seal body: reason(1) nextIndex(8) records(8) time(8).
//
// prev of a segment's header frame is the hash of the previous segment's
// last frame (zero for the first segment of a stream).
const (
	fileMagic     = "VGLAUDIT"
	formatVersion = 1

	frameHeader  = 'H'
	frameBatch   = 'B'
	frameSeal    = 'S'
	frameAnchor  = 'A'
	framePrefix  = 5
	frameTrailer = 32 + 32 + ed25519.SignatureSize
	maxFrameBody = 256 << 20

	batchHeaderLen = 8 + 4 + 1 + 4 + 8 + 8

	codecRaw  = 0
	codecZstd = 1
	codecS2   = 2

	sealRotate    = 1
	sealClose     = 2
	sealRecovered = 3

	segPrefix  = "seg-"
	segSuffix  = ".vlog"
	anchorName = "anchor"
	lockName   = "lock"
)

var sealReasons = map[byte]string{sealRotate: "rotate", sealClose: "close", sealRecovered: "recovered"}

func segName(n uint64) string { return fmt.Sprintf("%s%020d%s", segPrefix, n, segSuffix) }

// segFile is a segment file found in a directory.
type segFile struct {
	num  uint64
	path string
	size int64
}

// listSegments returns the directory's segment files by number.
func listSegments(dir string) ([]segFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	var out []segFile
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) || e.IsDir() {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, segPrefix), segSuffix), 10, 64)
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("list segments: %w", err)
		}
		out = append(out, segFile{num: n, path: filepath.Join(dir, name), size: info.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].num < out[j].num })
	return out, nil
}

// sealer computes chain hashes and signatures of frames.
type sealer struct {
	h    hash.Hash
	priv ed25519.PrivateKey
	sum  [32]byte
}

func newSealer(priv ed25519.PrivateKey) *sealer { return &sealer{h: sha256.New(), priv: priv} }

// frameHash is SHA-256(prev || frame[:prefix+body]) where frame holds the
// prefix and body.
func (s *sealer) frameHash(prev *[32]byte, frame []byte) [32]byte {
	s.h.Reset()
	s.h.Write(prev[:])
	s.h.Write(frame)
	s.h.Sum(s.sum[:0])
	return s.sum
}

// startFrame appends a frame prefix with a placeholder length.
func startFrame(b []byte, typ byte) []byte { return append(b, typ, 0, 0, 0, 0) }

// finishFrame fills in the body length of the frame starting at start and
// appends the trailer; it returns the frame's hash.
func (s *sealer) finishFrame(b []byte, start int, prev *[32]byte) ([]byte, [32]byte) {
	binary.LittleEndian.PutUint32(b[start+1:], uint32(len(b)-start-framePrefix))
	h := s.frameHash(prev, b[start:])
	b = append(b, prev[:]...)
	b = append(b, h[:]...)
	b = append(b, ed25519.Sign(s.priv, h[:])...)
	return b, h
}

// frame is one frame read from a segment.
type frame struct {
	typ  byte
	off  int64 // offset of the frame in the file
	end  int64 // offset after it
	raw  []byte
	body []byte
	prev [32]byte
	hash [32]byte
	sig  []byte
}

var (
	errTorn    = errors.New("torn frame")
	errGarbage = errors.New("not a frame")
)

// frameReader reads the frames of one segment file.
type frameReader struct {
	r   *bufio.Reader
	off int64
	buf []byte
}

func newFrameReader(r io.Reader) (*frameReader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var m [len(fileMagic)]byte
	n, err := io.ReadFull(br, m[:])
	if err != nil {
		if n == 0 && err == io.EOF {
			return nil, fmt.Errorf("%w: empty file", errTorn)
		}
		if string(m[:n]) == fileMagic[:n] {
			return nil, fmt.Errorf("%w: file magic cut at %d bytes", errTorn, n)
		}
		return nil, fmt.Errorf("%w: no audit segment magic", errGarbage)
	}
	if string(m[:]) != fileMagic {
		return nil, fmt.Errorf("%w: no audit segment magic", errGarbage)
	}
	return &frameReader{r: br, off: int64(len(fileMagic))}, nil
}

// next reads the next frame; io.EOF at a clean end, errTorn when the file
// ends inside a frame (or in zero bytes), errGarbage for bytes that are no
// frame. The frame's slices are valid until the next call.
func (fr *frameReader) next() (frame, error) {
	f := frame{off: fr.off}
	pre, err := fr.r.Peek(framePrefix)
	if len(pre) == 0 && err == io.EOF {
		return f, io.EOF
	}
	if err != nil && err != io.EOF {
		if len(pre) < framePrefix && (err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF)) {
			return f, fmt.Errorf("%w: %d bytes of a frame prefix at offset %d", errTorn, len(pre), fr.off)
		}
		return f, err
	}
	if len(pre) < framePrefix {
		return f, fmt.Errorf("%w: %d bytes of a frame prefix at offset %d", errTorn, len(pre), fr.off)
	}
	typ := pre[0]
	blen := binary.LittleEndian.Uint32(pre[1:])
	if typ == 0 && fr.zeroTail() {
		return f, fmt.Errorf("%w: zero bytes from offset %d to the end", errTorn, fr.off)
	}
	if typ != frameHeader && typ != frameBatch && typ != frameSeal && typ != frameAnchor && typ != frameHead || blen > maxFrameBody {
		return f, fmt.Errorf("%w: type %q length %d at offset %d", errGarbage, typ, blen, fr.off)
	}
	total := framePrefix + int(blen) + frameTrailer
	if cap(fr.buf) < total {
		fr.buf = make([]byte, total)
	}
	fr.buf = fr.buf[:total]
	n, err := io.ReadFull(fr.r, fr.buf)
	if err != nil {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return f, fmt.Errorf("%w: frame at offset %d needs %d bytes, the file has %d", errTorn, fr.off, total, n)
		}
		return f, err
	}
	f.typ = typ
	f.raw = fr.buf[:framePrefix+int(blen)]
	f.body = fr.buf[framePrefix : framePrefix+int(blen)]
	t := fr.buf[framePrefix+int(blen):]
	copy(f.prev[:], t[:32])
	copy(f.hash[:], t[32:64])
	f.sig = t[64:]
	fr.off += int64(total)
	f.end = fr.off
	return f, nil
}

// zeroTail reports whether the rest of the file is zero bytes (a file
// extended by a crash before its data reached the disk). It consumes them.
func (fr *frameReader) zeroTail() bool {
	for {
		b, err := fr.r.Peek(4096)
		for _, c := range b {
			if c != 0 {
				return false
			}
		}
		if err != nil {
			return true
		}
		fr.r.Discard(len(b))
	}
}

// check reports whether the frame is self-consistent (its hash covers its
// prev and body) and signed by pub.
func (f *frame) check(h hash.Hash, pub ed25519.PublicKey) (hashOK, sigOK bool) {
	h.Reset()
	h.Write(f.prev[:])
	h.Write(f.raw)
	var sum [32]byte
	h.Sum(sum[:0])
	hashOK = sum == f.hash
	if pub != nil {
		sigOK = ed25519.Verify(pub, f.hash[:], f.sig)
	}
	return hashOK, sigOK
}

// segHeader is the decoded body of a header frame.
type segHeader struct {
	version    uint16
	segment    uint64
	firstIndex uint64
	created    int64
	keyID      [8]byte
	counters   map[uint64]uint64
}

func appendHeaderBody(b []byte, h *segHeader) []byte {
	b = binary.LittleEndian.AppendUint16(b, h.version)
	b = binary.LittleEndian.AppendUint64(b, h.segment)
	b = binary.LittleEndian.AppendUint64(b, h.firstIndex)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.created))
	b = append(b, h.keyID[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(h.counters)))
	keys := make([]uint64, 0, len(h.counters))
	for k := range h.counters {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, k := range keys {
		b = binary.LittleEndian.AppendUint64(b, k)
		b = binary.LittleEndian.AppendUint64(b, h.counters[k])
	}
	return b
}

func parseHeader(body []byte) (segHeader, error) {
	var h segHeader
	if len(body) < 2+8+8+8+8+4 {
		return h, fmt.Errorf("header body of %d bytes is too short", len(body))
	}
	le := binary.LittleEndian
	h.version = le.Uint16(body)
	if h.version != formatVersion {
		return h, fmt.Errorf("format version %d, this vigil reads %d", h.version, formatVersion)
	}
	h.segment = le.Uint64(body[2:])
	h.firstIndex = le.Uint64(body[10:])
	h.created = int64(le.Uint64(body[18:]))
	copy(h.keyID[:], body[26:34])
	n := le.Uint32(body[34:])
	rest := body[38:]
	if uint64(len(rest)) != uint64(n)*16 {
		return h, fmt.Errorf("header says %d counters in %d bytes", n, len(rest))
	}
	h.counters = make(map[uint64]uint64, n)
	for i := 0; i < int(n); i++ {
		h.counters[le.Uint64(rest[i*16:])] = le.Uint64(rest[i*16+8:])
	}
	return h, nil
}

// batchHeader is the fixed part of a batch body.
type batchHeader struct {
	firstIndex uint64
	records    uint32
	codec      byte
	rawLen     uint32
	minTime    int64
	maxTime    int64
}

func appendBatchHeader(b []byte, h *batchHeader) []byte {
	b = binary.LittleEndian.AppendUint64(b, h.firstIndex)
	b = binary.LittleEndian.AppendUint32(b, h.records)
	b = append(b, h.codec)
	b = binary.LittleEndian.AppendUint32(b, h.rawLen)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.minTime))
	return binary.LittleEndian.AppendUint64(b, uint64(h.maxTime))
}

func parseBatchHeader(body []byte) (batchHeader, []byte, error) {
	var h batchHeader
	if len(body) < batchHeaderLen {
		return h, nil, fmt.Errorf("batch body of %d bytes is too short", len(body))
	}
	le := binary.LittleEndian
	h.firstIndex = le.Uint64(body)
	h.records = le.Uint32(body[8:])
	h.codec = body[12]
	h.rawLen = le.Uint32(body[13:])
	h.minTime = int64(le.Uint64(body[17:]))
	h.maxTime = int64(le.Uint64(body[25:]))
	if h.codec != codecRaw && h.codec != codecZstd && h.codec != codecS2 {
		return h, nil, fmt.Errorf("batch codec %d unknown", h.codec)
	}
	if h.rawLen > maxFrameBody {
		return h, nil, fmt.Errorf("batch raw length %d too large", h.rawLen)
	}
	return h, body[batchHeaderLen:], nil
}

// sealBody is the decoded body of a seal frame.
type sealBody struct {
	reason    byte
	nextIndex uint64
	records   uint64
	time      int64
}

func appendSealBody(b []byte, s *sealBody) []byte {
	b = append(b, s.reason)
	b = binary.LittleEndian.AppendUint64(b, s.nextIndex)
	b = binary.LittleEndian.AppendUint64(b, s.records)
	return binary.LittleEndian.AppendUint64(b, uint64(s.time))
}

func parseSeal(body []byte) (sealBody, error) {
	var s sealBody
	if len(body) != 25 {
		return s, fmt.Errorf("seal body of %d bytes, want 25", len(body))
	}
	s.reason = body[0]
	s.nextIndex = binary.LittleEndian.Uint64(body[1:])
	s.records = binary.LittleEndian.Uint64(body[9:])
	s.time = int64(binary.LittleEndian.Uint64(body[17:]))
	if sealReasons[s.reason] == "" {
		return s, fmt.Errorf("seal reason %d unknown", s.reason)
	}
	return s, nil
}
