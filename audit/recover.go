package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

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
	losses    []Loss // what recovery found lost, in the order found
	segs      []segInfo
	keyID     [8]byte // the key the last segment was signed with
}

// recoverDir reads the last segment of the log in dir: where the chain
// ends, the next index and per-container sequence numbers. A torn last
// frame is cut off, an unsealed segment is sealed; anything else that does
// not check out is an error (the writer never destroys evidence). The
// signed head file is compared with what is found: records it names that
// are gone, a head the chain does not pass through, a missing or invalid
// head file are recorded as losses (carrying the old head), never
// silently overwritten. What recovery cannot count is recorded as an
// unknown loss (Records -1), never as zero.
func recoverDir(dir string, keys keyring, s *sealer) (recovered, error) {
	var rec recovered
	files, err := listSegments(dir)
	if err != nil {
		return rec, err
	}
	head, hasHead, headErr := readHeadFile(dir, keys)
	var want *[32]byte
	if hasHead && headErr == nil {
		want = &head.Hash
	}
	for _, f := range files {
		info, err := os.Stat(f.path)
		if err != nil {
			return rec, fmt.Errorf("recover: %w", err)
		}
		rec.segs = append(rec.segs, segInfo{num: f.num, path: f.path, size: f.size, last: info.ModTime()})
	}
	var removed []Loss
	for len(rec.segs) > 0 {
		last := rec.segs[len(rec.segs)-1]
		st, err := recoverSegment(last.path, last.num, keys, s, want)
		if errors.Is(err, errNoHeader) {
			// A crash while creating the segment leaves no complete header
			// and no records; so does an attacker who emptied it. Which
			// one, and how many records, recovery cannot tell here: the
			// loss is unknown unless the head counts it (below).
			size := last.size
			if rerr := os.Remove(last.path); rerr != nil {
				return rec, fmt.Errorf("recover: remove headless segment: %w", rerr)
			}
			rec.segs = rec.segs[:len(rec.segs)-1]
			removed = append(removed, Loss{Reason: "torn-tail", Records: -1, Bytes: size, Segment: last.num,
				Detail: fmt.Sprintf("segment %d had no complete header (%d bytes: a crash while it was created, or it was emptied); removed it; "+
					"the records it held, if any, are unknown", last.num, size)})
			continue
		}
		if err != nil {
			return rec, err
		}
		rec.found = true
		rec.prev, rec.nextIndex, rec.lastSeg, rec.counters, rec.keyID = st.prev, st.nextIndex, last.num, st.counters, st.keyID
		rec.losses = append(rec.losses, removed...)
		if st.torn {
			rec.losses = append(rec.losses, Loss{Reason: "torn-tail", Records: st.tornRecords, Bytes: st.tornBytes, Segment: last.num,
				Detail: fmt.Sprintf("segment %d ended inside a frame at offset %d (%v); cut %d bytes", last.num, st.tornAt, st.tornErr, st.tornBytes)})
		} else if !st.sealed && len(removed) == 0 {
			rec.losses = append(rec.losses, Loss{Reason: "unclean-shutdown", Records: -1, Segment: last.num,
				Detail: fmt.Sprintf("segment %d was not closed: the writer stopped without Close; what it had not written (the batch being built and those waiting for the writer) is lost", last.num)})
		}
		if l := checkHead(head, hasHead, headErr, st, last.num); l != nil {
			rec.losses = append(rec.losses, *l)
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
	if hasHead && len(removed) > 0 {
		// Every segment is gone (or was headless): what the head names is lost.
		l := Loss{Reason: "truncated", Records: -1, Segment: head.Segment, Head: headOrNil(head, headErr),
			Detail: "no segment with a header is left, and the signed head file says the log existed"}
		if headErr == nil && head.Index > 0 {
			l.Records = int64(head.Index)
			l.Detail = fmt.Sprintf("no segment with a header is left; the signed head says the log reached record %d in segment %d", head.Index, head.Segment)
		}
		rec.losses = append(rec.losses, removed...)
		rec.losses = append(rec.losses, l)
	}
	return rec, nil
}

func headOrNil(h Head, err error) *Head {
	if err != nil || h.Seq == 0 {
		return nil
	}
	return &h
}

// checkHead compares the signed head with the recovered last segment
// (number num, state st); it returns the loss to record, or nil when the
// chain passes through the head (or the head is older than the segment).
func checkHead(h Head, ok bool, herr error, st *segState, num uint64) *Loss {
	switch {
	case !ok:
		return &Loss{Reason: "no-head", Records: -1, Segment: num,
			Detail: "the signed head file is missing: it was deleted (records at the end may have been cut with it), or a vigil without signed heads wrote the log"}
	case herr != nil:
		return &Loss{Reason: "bad-head", Records: -1, Segment: num,
			Detail: fmt.Sprintf("the signed head file does not verify (%v): it was altered or replaced; records at the end may have been cut", herr)}
	case h.Segment < num || st.sawHead:
		return nil // the head is behind: the chain check of verify covers it
	}
	l := &Loss{Reason: "truncated", Records: -1, Segment: h.Segment, Head: &h}
	have := st.nextIndex - 1
	if h.Index > have {
		l.Records = int64(h.Index - have)
		l.Detail = fmt.Sprintf("the signed head (seq %d, %s) says the log reached record %d in segment %d; it ends at record %d in segment %d: records %d..%d were cut off",
			h.Seq, h.Time.UTC().Format(time.RFC3339), h.Index, h.Segment, have, num, have+1, h.Index)
	} else {
		l.Reason = "head-mismatch"
		l.Detail = fmt.Sprintf("the signed head (seq %d, %s) names frame %x of segment %d, record %d, which the log does not hold: it was cut and rewritten, or the head belongs to another log",
			h.Seq, h.Time.UTC().Format(time.RFC3339), h.Hash, h.Segment, h.Index)
	}
	return l
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
	sawHead     bool // a frame of the segment has the head's hash
}

func recoverSegment(path string, num uint64, keys keyring, s *sealer, head *[32]byte) (*segState, error) {
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
		if head != nil && fm.hash == *head {
			st.sawHead = true
		}
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
