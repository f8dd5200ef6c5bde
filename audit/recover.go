package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// recovered is what Open learns from the existing log.
type recovered struct {
	found     bool
	prev      [32]byte
	nextIndex uint64
	lastSeg   uint64
	counters  map[uint64]uint64
	loss      *Loss
	segs      []segInfo
	keyID     [8]byte // the key the last segment was signed with
}

// recoverDir reads the last segment of the log in dir: where the chain
// ends, the next index and per-container sequence numbers. A torn last
// frame is cut off, an unsealed segment is sealed; anything else that does
// not check out is an error (the writer never destroys evidence).
func recoverDir(dir string, keys keyring, s *sealer) (recovered, error) {
	var rec recovered
	files, err := listSegments(dir)
	if err != nil {
		return rec, err
	}
	for _, f := range files {
		info, err := os.Stat(f.path)
		if err != nil {
			return rec, fmt.Errorf("recover: %w", err)
		}
		rec.segs = append(rec.segs, segInfo{num: f.num, path: f.path, size: f.size, last: info.ModTime()})
	}
	var lossBytes int64
	for len(rec.segs) > 0 {
		last := rec.segs[len(rec.segs)-1]
		st, err := recoverSegment(last.path, last.num, keys, s)
		if errors.Is(err, errNoHeader) {
			// A crash while creating the segment: nothing of it counts.
			size := last.size
			if rerr := os.Remove(last.path); rerr != nil {
				return rec, fmt.Errorf("recover: remove headless segment: %w", rerr)
			}
			lossBytes += size
			rec.segs = rec.segs[:len(rec.segs)-1]
			if rec.loss == nil {
				rec.loss = &Loss{Reason: "torn-tail", Records: 0, Segment: last.num}
			}
			rec.loss.Bytes = lossBytes
			rec.loss.Detail = fmt.Sprintf("segment %d had no complete header (a crash while it was created); removed %d bytes", last.num, size)
			continue
		}
		if err != nil {
			return rec, err
		}
		rec.found = true
		rec.prev, rec.nextIndex, rec.lastSeg, rec.counters, rec.keyID = st.prev, st.nextIndex, last.num, st.counters, st.keyID
		if st.torn {
			rec.loss = &Loss{Reason: "torn-tail", Records: st.tornRecords, Bytes: st.tornBytes + lossBytes, Segment: last.num,
				Detail: fmt.Sprintf("segment %d ended inside a frame at offset %d (%v); cut %d bytes", last.num, st.tornAt, st.tornErr, st.tornBytes)}
		} else if !st.sealed && rec.loss == nil {
			rec.loss = &Loss{Reason: "unclean-shutdown", Records: -1, Segment: last.num,
				Detail: fmt.Sprintf("segment %d was not closed: the writer stopped without Close; what it had not written (at most one batch) is lost", last.num)}
		}
		if !st.sealed {
			if err := sealTail(last.path, st, s); err != nil {
				return rec, err
			}
			rec.prev = st.prev
		}
		rec.segs[len(rec.segs)-1].size = st.size
		return rec, nil
	}
	return rec, nil
}

var errNoHeader = errors.New("segment has no complete header")

type segState struct {
	prev        [32]byte
	nextIndex   uint64
	records     uint64
	counters    map[uint64]uint64
	sealed      bool
	torn        bool
	tornAt      int64
	tornBytes   int64
	tornRecords int64
	tornErr     error
	size        int64
	keyID       [8]byte
}

func recoverSegment(path string, num uint64, keys keyring, s *sealer) (*segState, error) {
	var pub ed25519.PublicKey
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	fr, err := newFrameReader(f)
	if err != nil {
		if errors.Is(err, errTorn) {
			return nil, errNoHeader
		}
		return nil, fmt.Errorf("recover segment %d: %w", num, err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	defer dec.Close()
	h := sha256.New()
	st := &segState{size: info.Size()}
	var d decoder
	var buf []byte
	first := true
	for {
		fm, err := fr.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errTorn) {
			if first {
				return nil, errNoHeader
			}
			st.torn, st.tornAt, st.tornErr = true, fm.off, err
			st.tornBytes = info.Size() - fm.off
			st.tornRecords = tornRecords(f, fm.off)
			break
		}
		if err != nil {
			return nil, fmt.Errorf("recover segment %d at offset %d: %w; run 'vigil audit verify' and move the log aside to start a new one", num, fm.off, err)
		}
		if first && fm.typ == frameHeader {
			if hd, err := parseHeader(fm.body); err == nil {
				if pub = keys[hd.keyID]; pub == nil {
					return nil, fmt.Errorf("recover segment %d: signed by key %x, not this node's key (nor one in AcceptKeys: %v); "+
						"give the earlier key's public key in AcceptKeys after a key change, or move the log aside to start a new one", num, hd.keyID, keys.ids())
				}
				st.keyID = hd.keyID
			}
		}
		hashOK, sigOK := fm.check(h, pub)
		bad := ""
		switch {
		case !hashOK:
			bad = "its hash does not match its content"
		case !sigOK:
			bad = "its signature does not verify"
		case !first && fm.prev != st.prev:
			bad = "it does not chain to the frame before it"
		case st.sealed:
			bad = "it follows the seal"
		}
		if bad != "" {
			return nil, fmt.Errorf("recover segment %d: frame at offset %d: %s; run 'vigil audit verify' and move the log aside to start a new one", num, fm.off, bad)
		}
		switch {
		case first:
			if fm.typ != frameHeader {
				return nil, fmt.Errorf("recover segment %d: first frame is %q, not a header", num, fm.typ)
			}
			hd, err := parseHeader(fm.body)
			if err != nil {
				return nil, fmt.Errorf("recover segment %d: %w", num, err)
			}
			if hd.segment != num {
				return nil, fmt.Errorf("recover: file %s holds segment %d", path, hd.segment)
			}
			st.counters, st.nextIndex = hd.counters, hd.firstIndex
			first = false
		case fm.typ == frameBatch:
			bh, payload, err := parseBatchHeader(fm.body)
			if err != nil {
				return nil, fmt.Errorf("recover segment %d at offset %d: %w", num, fm.off, err)
			}
			if bh.firstIndex != st.nextIndex {
				return nil, fmt.Errorf("recover segment %d at offset %d: batch starts at record %d, want %d", num, fm.off, bh.firstIndex, st.nextIndex)
			}
			if buf, err = decodePayload(dec, &bh, payload, buf); err != nil {
				return nil, fmt.Errorf("recover segment %d at offset %d: %w", num, fm.off, err)
			}
			d.reset(buf)
			var r Record
			for {
				done, err := d.next(&r)
				if err != nil {
					return nil, fmt.Errorf("recover segment %d at offset %d: %w", num, fm.off, err)
				}
				if done {
					break
				}
				st.counters[r.CgroupID] = r.CSeq
			}
			st.nextIndex += uint64(bh.records)
			st.records += uint64(bh.records)
		case fm.typ == frameSeal:
			st.sealed = true
		default:
			return nil, fmt.Errorf("recover segment %d at offset %d: a second header", num, fm.off)
		}
		st.prev = fm.hash
		st.size = fm.end
	}
	if first {
		return nil, errNoHeader
	}
	return st, nil
}

// tornRecords reads how many records the torn batch frame at off said it
// held, or -1.
func tornRecords(f *os.File, off int64) int64 {
	var b [framePrefix + 12]byte
	if n, _ := f.ReadAt(b[:], off); n < len(b) || b[0] != frameBatch {
		return -1
	}
	return int64(binary.LittleEndian.Uint32(b[framePrefix+8:]))
}

// sealTail cuts a torn tail and seals the segment.
func sealTail(path string, st *segState, s *sealer) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(st.size); err != nil {
		return fmt.Errorf("recover: cut torn tail: %w", err)
	}
	b := startFrame(nil, frameSeal)
	b = appendSealBody(b, &sealBody{reason: sealRecovered, nextIndex: st.nextIndex, records: st.records})
	b, h := s.finishFrame(b, 0, &st.prev)
	if _, err := f.WriteAt(b, st.size); err != nil {
		return fmt.Errorf("recover: seal segment: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("recover: sync: %w", err)
	}
	st.prev = h
	st.size += int64(len(b))
	return nil
}

// decodePayload returns the raw records of a batch.
func decodePayload(dec *zstd.Decoder, bh *batchHeader, payload, buf []byte) ([]byte, error) {
	switch bh.codec {
	case codecRaw:
		return payload, nil
	case codecZstd:
		if cap(buf) < int(bh.rawLen) {
			buf = make([]byte, 0, bh.rawLen)
		}
		out, err := dec.DecodeAll(payload, buf[:0])
		if err != nil {
			return nil, fmt.Errorf("decompress batch: %w", err)
		}
		if len(out) != int(bh.rawLen) {
			return nil, fmt.Errorf("batch decompresses to %d bytes, header says %d", len(out), bh.rawLen)
		}
		return out, nil
	case codecS2:
		n, err := s2.DecodedLen(payload)
		if err != nil || n != int(bh.rawLen) {
			return nil, fmt.Errorf("batch decompresses to %d bytes, header says %d (%v)", n, bh.rawLen, err)
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		out, err := s2.Decode(buf[:cap(buf)], payload)
		if err != nil {
			return nil, fmt.Errorf("decompress batch: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("batch codec %d unknown", bh.codec)
}
