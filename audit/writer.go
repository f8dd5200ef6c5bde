package audit

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
)

// Stats are a writer's counters since Open.
type Stats struct {
	Written  uint64 // records written to disk
	Lost     uint64 // records counted as lost (disk full beyond the policy, write errors)
	Held     uint64 // records held in memory while the disk is full (FullFreeze)
	Pending  uint64 // records appended and not written yet: the batch being built and the batches handed to the writer
	Batches  uint64 // batch frames written
	Bytes    int64  // bytes written (frames, all segments)
	Segments int    // segment files in the directory now
	Segment  uint64 // number of the segment being written
	Full     bool   // the disk is full now
	Syncs    uint64 // fsync calls
	Deleted  int    // segments removed by retention
	// Stalls counts the appends that waited because Options.PendingBatches
	// batches were already waiting for the writer goroutine (back-pressure:
	// nothing is dropped for it).
	Stalls uint64
	// Head is the hex hash of the last frame written: publish it (metrics,
	// a remote log) so a later verify can prove nothing after it was cut.
	Head string
	// LastIndex is the stream index of the last record written.
	LastIndex uint64
	// Cgroups is the number of cgroups whose sequence counter the writer
	// holds: those that wrote since they were last forgotten (Forget).
	Cgroups int
}

// Writer appends records to the log. Its methods are safe for concurrent
// use. Appending only encodes the record into the batch being built
// (AppendEvent is the hot path and allocates nothing); a full batch is
// handed to the writer's own goroutine, which compresses, chains, signs,
// writes and syncs it, so an appender never waits for the disk unless
// Options.PendingBatches batches are already waiting (back-pressure).
//
// Two locks: mu guards the append side (the batch being built, the
// hand-off, the per-cgroup counters); io guards the files and the chain.
// io is taken before mu, never the other way round, and mu is held only
// briefly by the writer.
type Writer struct {
	// Append side, under mu.
	mu          sync.Mutex
	room        *sync.Cond // the writer took a batch: room in the hand-off
	enc         *encoder
	batchOpen   time.Time  // when the current batch got its first record
	forget      []uint64   // cgroups to forget once the open batch is cut
	lossInBatch uint64     // lost records reported by a KindLoss record in the open batch
	lossRecs    int        // KindLoss records in the open batch
	queue       []*pending // batches cut and not taken by the writer, oldest first
	spare       []*pending // written batches, for their buffers
	inflight    int        // batches cut and not written yet (queued or being written)
	waiting     int        // appenders waiting for room
	stalls      uint64
	lostPending uint64 // lost records no KindLoss record has reported yet
	lost        uint64 // Stats.Lost
	closed      bool
	kick        chan struct{} // a batch was cut
	fullNow     atomic.Bool   // the disk is full (the writer's full, for the append side)
	fatal       atomic.Pointer[error]

	// timer wakes the background for its timed work (flush interval,
	// segment age, fsync interval, a full disk's retry); wakeAt is when
	// it is armed for (zero: stopped, nothing timed waits). Both under
	// mu: an append that opens a batch arms it (openedLocked).
	timer  *time.Timer
	wakeAt time.Time

	// Writer side, under io.
	io    sync.Mutex
	opts  Options
	lock  *os.File // the directory's writer lock
	priv  ed25519.PrivateKey
	keyID [8]byte
	seal  *sealer
	zenc  *zstd.Encoder

	f          *os.File
	segNum     uint64
	segOff     int64 // bytes in the current segment
	segFirst   uint64
	segCreated time.Time
	segRecs    uint64
	segs       []segInfo // segments in the directory, oldest first (current last)

	counters  map[uint64]uint64 // per-cgroup counters after the last batch written (held or dropped)
	prev      [32]byte          // hash of the last frame (written or held)
	nextIndex uint64            // stream index of the next record to get a frame
	frame     []byte

	dirty    bool // written but not synced
	lastSync time.Time
	// syncing: the background goroutine syncs without io held (timed);
	// syncDone (on io) is broadcast when it is done, so that a Flush
	// waits for that sync and the head it writes instead of returning
	// before them.
	syncing  bool
	syncDone *sync.Cond

	full     bool
	retryAt  time.Time
	held     [][]byte // frames built while the disk was full (FullFreeze)
	heldRecs uint64

	wpos    headPos  // the last frame written
	headF   *os.File // the signed head file (head.go)
	headSeq uint64
	headAt  headPos // what the head file names
	head    Head

	anchorMu   sync.Mutex // serializes Options.Anchor calls
	anchored   uint64     // seq of the last head anchored
	anchorDone chan struct{}

	stats Stats
	stop  chan struct{}
	done  chan struct{}
	err   error // a fatal error (not disk full): returned by every call
}

// pending is a batch cut from the encoder and handed to the writer.
type pending struct {
	raw              []byte
	n                int
	minTime, maxTime int64
	lossInBatch      uint64
	lossRecs         int
	// counts are the batch's cgroup counters (and forgets), in order: the
	// writer applies them once the batch is written, so a segment header
	// carries the counters of the records before it.
	counts []cgCount
	// at is when it was cut (Options.Now, read by the appender): the time
	// of what writing it does (the segment's last write, a rotation), so
	// that a given clock makes the same bytes whatever the goroutines'
	// timing.
	at time.Time
}

type cgCount struct {
	id, cseq uint64
	forget   bool
}

// segInfo is what retention needs to know about a segment.
type segInfo struct {
	num     uint64
	path    string
	size    int64
	last    time.Time // time of its last record (or creation)
	prevEnd [32]byte  // hash its header chains to
	first   uint64    // its first record index
}

// Open opens (creating if needed) the log in opts.Dir for appending. It
// recovers from a crash: a torn last frame is truncated and a KindLoss
// record says how much was lost; an unsealed last segment is sealed. Every
// Open starts a new segment.
func Open(opts Options) (*Writer, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit dir: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	w, err := open(opts, lock)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return w, nil
}

// lockDir takes the directory's writer lock: one writer per log.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("audit log %s is in use by another writer (it holds %s)", dir, path)
		}
		return nil, fmt.Errorf("audit lock %s: %w", path, err)
	}
	return f, nil
}

func open(opts Options, lock *os.File) (*Writer, error) {
	priv, err := LoadOrCreateKey(opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(1<<20))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	w := &Writer{opts: opts, lock: lock, priv: priv, keyID: keyID(priv.Public().(ed25519.PublicKey)), seal: newSealer(priv),
		zenc: zenc, enc: newEncoder(), nextIndex: 1, stop: make(chan struct{}), done: make(chan struct{}),
		kick: make(chan struct{}, 1), counters: map[uint64]uint64{}}
	w.room = sync.NewCond(&w.mu)
	w.syncDone = sync.NewCond(&w.io)
	w.timer = time.NewTimer(time.Hour)
	w.timer.Stop()
	keys, err := loadKeyring(opts.AcceptKeys...)
	if err != nil {
		return nil, fmt.Errorf("audit accept keys: %w", err)
	}
	keys.add(priv.Public().(ed25519.PublicKey))
	rec, err := recoverDir(opts.Dir, keys, w.seal)
	if err != nil {
		return nil, err
	}
	w.segs = rec.segs
	if w.headF, err = openHeadFile(opts.Dir); err != nil {
		return nil, err
	}
	var counters map[uint64]uint64
	if rec.found {
		w.prev = rec.prev
		w.nextIndex = rec.nextIndex
		w.segNum = rec.lastSeg
		counters = rec.counters
		for cg, c := range counters {
			w.enc.state(cg).cseq = c
			w.counters[cg] = c
		}
	}
	for _, l := range rec.losses {
		opts.Logf("audit: ALERT recovered %s: %s (%s)", opts.Dir, l.Detail, lossCount(l.Records))
	}
	if err := w.newSegment(opts.Now()); err != nil {
		w.headF.Close()
		return nil, err
	}
	for i := range rec.losses {
		body, _ := json.Marshal(&rec.losses[i])
		w.enc.appendOther(KindLoss, 0, "", opts.Now().UnixNano(), body)
		w.batchOpen = opts.Now()
	}
	if err := w.writeNow(); err != nil {
		w.f.Close()
		w.headF.Close()
		return nil, err
	}
	if rec.found && rec.keyID != w.keyID {
		detail := fmt.Sprintf("the audit key changed: segments up to %d are signed by key %x, from segment %d on by key %x", rec.lastSeg, rec.keyID, w.segNum, w.keyID)
		opts.Logf("audit: %s", detail)
		body, _ := json.Marshal(Agent{Event: "key-change", Detail: detail})
		w.enc.appendOther(KindAgent, 0, "", opts.Now().UnixNano(), body)
		w.batchOpen = opts.Now()
		if err := w.writeNow(); err != nil {
			w.f.Close()
			w.headF.Close()
			return nil, err
		}
	}
	pub := w.PublicKey()
	opts.Logf("audit: %s signed by key %s (fingerprint %s); pin it where the log is verified: vigil audit verify --pubkey %x",
		opts.Dir, KeyID(pub), Fingerprint(pub), []byte(pub))
	w.retention()
	go w.background()
	if opts.Anchor != nil {
		w.anchorDone = make(chan struct{})
		go w.anchorLoop()
	}
	return w, nil
}

// writeNow writes the batch being built at once, on the caller's
// goroutine (Open, before the writer's goroutine runs).
func (w *Writer) writeNow() error {
	w.mu.Lock()
	w.cutLocked()
	w.mu.Unlock()
	w.io.Lock()
	defer w.io.Unlock()
	w.writeQueued()
	return w.err
}

func lossCount(n int64) string {
	if n < 0 {
		return "an unknown number of records lost"
	}
	return fmt.Sprintf("%d records lost", n)
}

// AppendEvent appends a syscall event. It copies what it needs: the caller
// may reuse ev as soon as it returns. It returns a wrapped ErrFull while the
// disk is full under FullFreeze (the event is held in memory or counted as
// lost), and nil under FullCount (the event is counted as lost).
func (w *Writer) AppendEvent(ev *event.Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if w.opts.OnFull == FullCount && w.fullNow.Load() {
		w.dropOne(ev.CgroupID)
		return nil
	}
	if w.enc.n == 0 {
		w.openedLocked()
	}
	w.enc.appendEvent(ev)
	return w.afterAppend()
}

// Append appends a record of another kind. body is marshalled to JSON
// ([]byte and json.RawMessage are taken as JSON already); containerID may be
// empty (agent, policy records use cgroup 0).
func (w *Writer) Append(kind Kind, cgroupID uint64, containerID string, body any) error {
	if kind == KindEvent {
		ev, ok := body.(*event.Event)
		if !ok {
			return fmt.Errorf("audit append: kind event needs a *event.Event body, got %T", body)
		}
		return w.AppendEvent(ev)
	}
	if !kind.Valid() {
		return fmt.Errorf("audit append: kind %d unknown, want one of %v", kind, KindNames())
	}
	var data []byte
	switch b := body.(type) {
	case json.RawMessage:
		data = b
	case []byte:
		data = b
	case nil:
		data = []byte("null")
	default:
		var err error
		if data, err = json.Marshal(body); err != nil {
			return fmt.Errorf("audit append %s: %w", kind, err)
		}
	}
	if !json.Valid(data) {
		return fmt.Errorf("audit append %s: body is not valid JSON", kind)
	}
	return w.appendJSON(kind, cgroupID, containerID, data)
}

// appendJSON appends a record of another kind whose body is valid JSON.
func (w *Writer) appendJSON(kind Kind, cgroupID uint64, containerID string, data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if w.opts.OnFull == FullCount && w.fullNow.Load() {
		w.dropOne(cgroupID)
		return nil
	}
	if w.enc.n == 0 {
		w.openedLocked()
	}
	w.enc.appendOther(kind, cgroupID, containerID, w.opts.Now().UnixNano(), data)
	return w.afterAppend()
}

// AppendGap records that the tracer dropped count records of a cgroup from
// sequence number fromSeq on.
// The body is what json.Marshal makes of Gap{FromSeq: fromSeq, Count:
// count}, made without reflection or validation: a throttled container
// makes a gap every few records.
func (w *Writer) AppendGap(cgroupID uint64, containerID string, fromSeq, count uint64) error {
	var buf [64]byte
	return w.appendJSON(KindGap, cgroupID, containerID, gapBody(buf[:0], fromSeq, count))
}

// gapBody appends the JSON body of a gap record to b.
func gapBody(b []byte, fromSeq, count uint64) []byte {
	b = append(b, `{"from_seq":`...)
	b = strconv.AppendUint(b, fromSeq, 10)
	b = append(b, `,"count":`...)
	b = strconv.AppendUint(b, count, 10)
	return append(b, '}')
}

// Forget drops the per-container sequence counter of a cgroup that is gone
// (call it after the cgroup's last record), so the counters a segment
// header carries stay bounded. A later record of the same cgroup id starts
// again from 1.
func (w *Writer) Forget(cgroupID uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.enc.cgs[cgroupID]; s != nil {
		if s.gen == w.enc.gen && w.enc.n > 0 { // in the open batch: after it
			w.forget = append(w.forget, cgroupID)
			return
		}
		w.enc.forget(cgroupID)
	}
}

// Held lists the cgroups whose sequence counter the writer holds (0, the
// agent's own records, included).
func (w *Writer) Held() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]uint64, 0, len(w.enc.cgs))
	for id := range w.enc.cgs {
		ids = append(ids, id)
	}
	return ids
}

// Flush writes the batch being built and the batches waiting for the
// writer (and, under FullFreeze, what is held), and syncs them unless
// Fsync is FsyncNever: when it returns nil, every record appended before
// it is on the disk and the signed head names it.
func (w *Writer) Flush() error {
	w.mu.Lock()
	if err := w.usable(); err != nil {
		w.mu.Unlock()
		return err
	}
	w.cutLocked()
	w.mu.Unlock()
	w.io.Lock()
	defer w.io.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.full {
		w.tryResume()
	}
	w.writeQueued()
	if w.err != nil {
		return w.err
	}
	if w.full && w.opts.OnFull == FullFreeze {
		return fmt.Errorf("flush: %w", ErrFull)
	}
	if err := w.syncLocked(); err != nil {
		return err
	}
	if w.full {
		// the sync found the disk full (or it was): not everything is on it
		return fmt.Errorf("flush: %w", ErrFull)
	}
	return nil
}

// Close writes what is pending, seals the segment and closes it, writes
// the signed head of the seal and hands it to Options.Anchor. Records
// still held because the disk is full are counted as lost.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.stop)
	w.room.Broadcast() // appenders waiting for room cut their batch and return
	w.mu.Unlock()
	<-w.done
	if w.anchorDone != nil {
		<-w.anchorDone
	}
	err := w.close()
	if w.opts.Anchor != nil {
		w.anchor()
	}
	return err
}

func (w *Writer) close() error {
	w.io.Lock()
	defer w.io.Unlock()
	defer w.lock.Close()
	defer w.headF.Close()
	// Appenders that were waiting for room when Close came cut their
	// batch now: wait for them.
	w.mu.Lock()
	for w.waiting > 0 {
		w.mu.Unlock()
		w.writeQueued()
		runtime.Gosched()
		w.mu.Lock()
	}
	w.mu.Unlock()
	if w.err != nil {
		if w.f != nil {
			w.f.Close()
		}
		return w.err
	}
	var errs []error
	if w.full {
		w.retryAt = time.Time{} // one last try
		w.tryResume()
	}
	w.mu.Lock()
	w.cutLocked()
	w.mu.Unlock()
	w.writeQueued()
	if w.err != nil {
		errs = append(errs, w.err)
	}
	if len(w.held) > 0 {
		w.mu.Lock()
		w.lost += w.heldRecs
		w.mu.Unlock()
		w.opts.Logf("audit: closing with the disk full: %d held records lost", w.heldRecs)
		w.held, w.heldRecs = nil, 0
	} else if !w.full && w.f != nil && w.err == nil {
		if err := w.sealSegment(sealClose, w.opts.Now()); err != nil {
			errs = append(errs, err)
		}
	}
	if w.f != nil {
		if w.opts.Fsync != FsyncNever {
			if err := w.f.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("sync: %w", err))
			}
		}
		if err := w.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close segment: %w", err))
		}
		w.f = nil
	}
	if len(errs) == 0 {
		w.writeHead(w.wpos)
		if w.opts.Fsync != FsyncNever {
			if err := w.headF.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("sync the head file: %w", err))
			}
		}
	}
	w.zenc.Close()
	return errors.Join(errs...)
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	w.io.Lock()
	defer w.io.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Pending = uint64(w.enc.n)
	for _, pb := range w.queue {
		s.Pending += uint64(pb.n)
	}
	s.Lost = w.lost
	s.Stalls = w.stalls
	s.Held = w.heldRecs
	s.Segments = len(w.segs)
	s.Segment = w.segNum
	s.Full = w.full
	s.Head = hex.EncodeToString(w.prev[:])
	s.LastIndex = w.nextIndex - 1 - w.heldRecs
	s.Cgroups = len(w.enc.cgs)
	return s
}

// Full reports whether the disk was full at the last write.
func (w *Writer) Full() bool { return w.fullNow.Load() }

// PublicKey is the key that verifies this log.
func (w *Writer) PublicKey() ed25519.PublicKey { return w.priv.Public().(ed25519.PublicKey) }

// usable (mu held) returns the error every call returns after Close or a
// fatal error.
func (w *Writer) usable() error {
	if w.closed {
		return ErrClosed
	}
	if p := w.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// setErr (io held) records a fatal error.
func (w *Writer) setErr(err error) {
	w.err = err
	w.fatal.Store(&err)
	w.room.Broadcast() // appenders waiting for room go on: their batches are counted as lost
}

// dropOne (mu held) counts a record that the full disk costs (FullCount):
// it keeps its per-container sequence number so the gap shows.
func (w *Writer) dropOne(cg uint64) {
	w.enc.skip(cg)
	w.lostPending++
	w.lost++
}

// afterAppend (mu held) hands the batch to the writer when it is full,
// waiting while PendingBatches batches wait already.
func (w *Writer) afterAppend() error {
	for w.enc.n >= w.opts.BatchRecords || len(w.enc.raw) >= maxFrameBody/2 {
		if w.inflight < w.opts.PendingBatches || w.closed || w.fatal.Load() != nil {
			w.cutLocked()
			break
		}
		w.stalls++
		for w.inflight >= w.opts.PendingBatches && !w.closed && w.fatal.Load() == nil {
			w.waiting++
			w.room.Wait()
			w.waiting--
		}
	}
	if w.opts.OnFull == FullFreeze && w.fullNow.Load() {
		return fmt.Errorf("append: %w", ErrFull)
	}
	return nil
}

// cutLocked (mu held) hands the batch being built to the writer and starts
// a new one in a spare buffer.
func (w *Writer) cutLocked() {
	e := w.enc
	if e.n == 0 {
		return
	}
	var pb *pending
	if n := len(w.spare); n > 0 {
		pb, w.spare[n-1] = w.spare[n-1], nil
		w.spare = w.spare[:n-1]
	} else {
		pb = &pending{}
	}
	for _, cg := range w.forget {
		e.forget(cg)
	}
	w.forget = w.forget[:0]
	pb.counts = pb.counts[:0]
	for _, op := range e.touched {
		if op.s == nil {
			pb.counts = append(pb.counts, cgCount{id: op.id, forget: true})
		} else {
			pb.counts = append(pb.counts, cgCount{id: op.id, cseq: op.s.cseq})
		}
	}
	pb.raw, e.raw = e.raw, pb.raw[:0]
	pb.n, pb.minTime, pb.maxTime = e.n, e.minTime, e.maxTime
	pb.lossInBatch, pb.lossRecs = w.lossInBatch, w.lossRecs
	pb.at = w.opts.Now()
	e.reset()
	w.lossInBatch, w.lossRecs = 0, 0
	w.queue = append(w.queue, pb)
	w.inflight++
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// writeQueued (io held) writes the batches handed over, in order, and
// then syncs them once under FsyncBatch (a group commit: batches that
// waited together share one fdatasync), and writes the signed head.
func (w *Writer) writeQueued() {
	for {
		w.mu.Lock()
		var pb *pending
		if len(w.queue) > 0 {
			pb = w.queue[0]
			n := copy(w.queue, w.queue[1:])
			w.queue[n] = nil
			w.queue = w.queue[:n]
		}
		w.mu.Unlock()
		if pb == nil {
			break
		}
		w.writeBatch(pb)
		for _, c := range pb.counts {
			if c.forget {
				delete(w.counters, c.id)
			} else {
				w.counters[c.id] = c.cseq
			}
		}
		w.mu.Lock()
		w.inflight--
		w.spare = append(w.spare, pb)
		w.room.Broadcast()
		w.mu.Unlock()
	}
	w.commit()
}

// commit (io held) syncs what was written under FsyncBatch and writes the
// signed head of it.
func (w *Writer) commit() {
	if w.opts.Fsync != FsyncBatch || w.f == nil || w.err != nil {
		return
	}
	if err := w.syncLocked(); err != nil {
		w.setErr(err)
		w.opts.Logf("audit: %v", err)
	}
}

// tryResume (io held) is called while the disk is full: after
// RetryInterval it tries to write the held frames and, if that works,
// leaves the full state and puts a KindLoss record for what was lost into
// the batch being built.
func (w *Writer) tryResume() bool {
	now := w.opts.Now()
	if now.Before(w.retryAt) {
		return false
	}
	if err := w.ensureSegment(now); err != nil || w.f == nil {
		w.retryAt = now.Add(w.opts.RetryInterval)
		return false
	}
	if err := w.writeHeld(now); err != nil {
		w.retryAt = now.Add(w.opts.RetryInterval)
		return false
	}
	w.full = false
	w.mu.Lock()
	w.fullNow.Store(false) // no drop after this: the loss record counts them all
	w.opts.Logf("audit: %s writable again after disk full; %d records lost", w.opts.Dir, w.lostPending)
	w.addLossRecord()
	w.mu.Unlock()
	w.commit()
	return true
}

// addLossRecord (io and mu held) puts a KindLoss record for the records
// lost so far into the batch being built.
func (w *Writer) addLossRecord() {
	if w.lostPending == 0 {
		return
	}
	body, _ := json.Marshal(Loss{Reason: "disk-full", Records: int64(w.lostPending), Segment: w.segNum,
		Detail: fmt.Sprintf("policy %s: records that could not be written while the disk was full", w.opts.OnFull)})
	if w.enc.n == 0 {
		w.openedLocked()
	}
	w.enc.appendOther(KindLoss, 0, "", w.opts.Now().UnixNano(), body)
	w.lossInBatch += w.lostPending
	w.lossRecs++
	w.lostPending = 0
}

// writeBatch (io held) turns a batch into a frame and writes it (or holds
// or drops it while the disk is full).
func (w *Writer) writeBatch(pb *pending) {
	n := uint64(pb.n)
	if w.err != nil {
		w.mu.Lock()
		w.lost += n
		w.mu.Unlock()
		return
	}
	if !w.full && w.f == nil {
		if err := w.ensureSegment(pb.at); err != nil {
			w.mu.Lock()
			w.lost += n
			w.mu.Unlock()
			return
		}
	}
	if w.full {
		if w.opts.OnFull == FullFreeze && w.f != nil && w.heldRecs+n <= uint64(w.opts.HoldRecords) {
			w.buildFrame(pb)
			w.held = append(w.held, append([]byte(nil), w.frame...))
			w.heldRecs += n
			return
		}
		w.dropBatch(pb)
		return
	}
	before, beforeIndex := w.prev, w.nextIndex
	w.buildFrame(pb)
	err := w.writeFrame(w.frame, pb.at)
	if err == nil {
		w.stats.Written += n
		w.segRecs += n
		if err := w.afterWrite(pb.at); err != nil && w.err == nil {
			w.setErr(err)
			w.opts.Logf("audit: %v", err)
		}
		return
	}
	if !isFull(err) {
		w.setErr(fmt.Errorf("audit write %s: %w", w.f.Name(), err))
		w.opts.Logf("audit: %v", w.err)
		w.mu.Lock()
		w.lost += n
		w.mu.Unlock()
		return
	}
	w.enterFull(err)
	if w.opts.OnFull == FullFreeze {
		w.held = append(w.held, append([]byte(nil), w.frame...))
		w.heldRecs += n
		return
	}
	w.prev, w.nextIndex = before, beforeIndex
	w.dropBatch(pb)
}

// dropBatch (io held) counts a batch as lost (its records keep their
// per-container numbers; a KindLoss record in it is carried over).
func (w *Writer) dropBatch(pb *pending) {
	n := uint64(pb.n - pb.lossRecs)
	w.mu.Lock()
	w.lostPending += n + pb.lossInBatch
	w.lost += n
	w.mu.Unlock()
}

// enterFull (io held) enters the full state.
func (w *Writer) enterFull(err error) {
	if !w.full {
		w.opts.Logf("audit: ALERT disk full writing %s: %v; policy %s", w.opts.Dir, err, w.opts.OnFull)
	}
	w.full = true
	w.fullNow.Store(true)
	w.retryAt = w.opts.Now().Add(w.opts.RetryInterval)
}

func isFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// buildFrame (io held) compresses a batch into w.frame and chains it.
func (w *Writer) buildFrame(pb *pending) {
	b := startFrame(w.frame[:0], frameBatch)
	bh := batchHeader{firstIndex: w.nextIndex, records: uint32(pb.n), rawLen: uint32(len(pb.raw)),
		minTime: pb.minTime, maxTime: pb.maxTime}
	switch w.opts.Compression {
	case CompressZstd:
		bh.codec = codecZstd
		b = appendBatchHeader(b, &bh)
		b = w.zenc.EncodeAll(pb.raw, b)
	case CompressS2:
		bh.codec = codecS2
		b = appendBatchHeader(b, &bh)
		need := len(b) + s2.MaxEncodedLen(len(pb.raw))
		if cap(b) < need {
			b = append(make([]byte, 0, need+need/4), b...)
		}
		b = b[:len(b)+len(s2.Encode(b[len(b):need], pb.raw))]
	default:
		bh.codec = codecRaw
		b = appendBatchHeader(b, &bh)
		b = append(b, pb.raw...)
	}
	b, w.prev = w.seal.finishFrame(b, 0, &w.prev)
	w.frame = b
	w.nextIndex += uint64(pb.n)
}

// writeFrame appends a frame to the segment; on error it cuts the file back
// so no torn frame stays.
func (w *Writer) writeFrame(b []byte, at time.Time) error {
	n, err := w.f.Write(b)
	if err != nil {
		if n > 0 {
			if terr := w.f.Truncate(w.segOff); terr != nil {
				w.opts.Logf("audit: cut back %s after a failed write: %v", w.f.Name(), terr)
			}
			if _, serr := w.f.Seek(w.segOff, 0); serr != nil {
				w.opts.Logf("audit: seek %s: %v", w.f.Name(), serr)
			}
		}
		return err
	}
	w.segOff += int64(n)
	w.stats.Bytes += int64(n)
	w.stats.Batches++
	w.dirty = true
	w.wpos.segment, w.wpos.offset = w.segNum, w.segOff
	copy(w.wpos.hash[:], b[len(b)-frameTrailer+32:])
	if b[0] == frameBatch {
		bh, _, _ := parseBatchHeader(b[framePrefix:])
		w.wpos.next = bh.firstIndex + uint64(bh.records)
	}
	if len(w.segs) > 0 {
		s := &w.segs[len(w.segs)-1]
		s.size = w.segOff
		s.last = at
	}
	if w.opts.Fsync == FsyncNever {
		w.writeHead(w.wpos) // nothing is synced: the head follows the writes
	}
	// FsyncBatch: commit syncs what a round of writes wrote; FsyncPolicy(d):
	// the background goroutine syncs.
	return nil
}

// syncLocked syncs the segment and then writes the signed head of what it
// synced.
func (w *Writer) syncLocked() error {
	for w.syncing {
		w.syncDone.Wait() // the background's sync: it may fail, then dirty is set again
	}
	if !w.dirty || w.opts.Fsync == FsyncNever {
		return nil
	}
	if err := fdatasync(w.f); err != nil {
		if isFull(err) {
			w.enterFull(err)
			return nil // Flush says so; the writer carries on by its policy
		}
		return fmt.Errorf("sync %s: %w", w.f.Name(), err)
	}
	w.dirty = false
	w.lastSync = time.Now()
	w.stats.Syncs++
	w.writeHead(w.wpos)
	return nil
}

// writeHeld writes the frames held while the disk was full, in order.
func (w *Writer) writeHeld(now time.Time) error {
	for len(w.held) > 0 {
		fr := w.held[0]
		if err := w.writeFrame(fr, now); err != nil {
			if !isFull(err) {
				w.setErr(fmt.Errorf("audit write %s: %w", w.f.Name(), err))
			}
			return err
		}
		recs := uint64(batchRecords(fr))
		w.heldRecs -= recs
		w.stats.Written += recs
		w.segRecs += recs
		w.held = w.held[1:]
	}
	w.held = nil
	return w.afterWrite(now)
}

func batchRecords(fr []byte) uint32 {
	h, _, _ := parseBatchHeader(fr[framePrefix:])
	return h.records
}

// afterWrite rotates a segment that reached its size; now is the time of
// the write.
func (w *Writer) afterWrite(now time.Time) error {
	if w.segOff < w.opts.SegmentBytes || len(w.held) > 0 {
		return nil
	}
	return w.rotate(now)
}

// rotate seals the current segment and starts the next.
func (w *Writer) rotate(now time.Time) error {
	if err := w.sealSegment(sealRotate, now); err != nil {
		if isFull(err) {
			w.enterFull(err)
			return nil
		}
		return err
	}
	if err := w.syncLocked(); err != nil {
		return err
	}
	w.f.Close()
	w.f = nil
	if err := w.ensureSegment(now); err != nil {
		return err
	}
	w.retention()
	return nil
}

// ensureSegment creates the next segment if the last one was sealed but
// its successor could not be created (disk full at rotation). While there
// is no segment the writer is in the full state.
func (w *Writer) ensureSegment(now time.Time) error {
	if w.f != nil {
		return nil
	}
	if err := w.newSegment(now); err != nil {
		if isFull(err) {
			w.enterFull(err)
			return nil
		}
		w.setErr(err)
		return err
	}
	return nil
}

// sealSegment writes the seal frame of the current segment.
func (w *Writer) sealSegment(reason byte, now time.Time) error {
	b := startFrame(w.frame[:0], frameSeal)
	b = appendSealBody(b, &sealBody{reason: reason, nextIndex: w.nextIndex, records: w.segRecs, time: now.UnixNano()})
	prev := w.prev
	b, h := w.seal.finishFrame(b, 0, &prev)
	w.frame = b
	if err := w.writeFrame(b, now); err != nil {
		return fmt.Errorf("seal segment %d: %w", w.segNum, err)
	}
	w.prev = h
	return nil
}

// newSegment (io held, not mu) creates the next segment file with its
// header frame, created at now.
func (w *Writer) newSegment(now time.Time) error {
	num := w.segNum + 1
	path := filepath.Join(w.opts.Dir, segName(num))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	counters := make(map[uint64]uint64, len(w.counters))
	for cg, c := range w.counters {
		if c > 0 {
			counters[cg] = c
		}
	}
	b := append(w.frame[:0], fileMagic...)
	start := len(b)
	b = startFrame(b, frameHeader)
	b = appendHeaderBody(b, &segHeader{version: formatVersion, segment: num, firstIndex: w.nextIndex,
		created: now.UnixNano(), keyID: w.keyID, counters: counters})
	prev := w.prev
	b, h := w.seal.finishFrame(b, start, &prev)
	w.frame = b
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write segment header: %w", err)
	}
	if w.opts.Fsync != FsyncNever {
		if err := f.Sync(); err != nil {
			f.Close()
			os.Remove(path)
			return fmt.Errorf("sync segment header: %w", err)
		}
		syncDir(w.opts.Dir)
	}
	w.f, w.segNum, w.segOff, w.segFirst, w.segRecs, w.segCreated = f, num, int64(len(b)), w.nextIndex, 0, now
	w.segs = append(w.segs, segInfo{num: num, path: path, size: int64(len(b)), last: now, prevEnd: prev, first: w.nextIndex})
	w.prev = h
	w.stats.Bytes += int64(len(b))
	w.wpos = headPos{hash: h, next: w.nextIndex, segment: num, offset: int64(len(b))}
	w.writeHead(w.wpos) // synced above (or nothing is synced)
	return nil
}

// fdatasync flushes a segment's data (and its size) to the disk.
func fdatasync(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := sc.Control(func(fd uintptr) {
		for {
			serr = unix.Fdatasync(int(fd))
			if serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("fdatasync: %w", serr)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// openedLocked (mu held) notes that the batch being built got its first
// record, and arms the background's timer for its flush interval unless
// it is armed for sooner.
func (w *Writer) openedLocked() {
	w.batchOpen = w.opts.Now()
	if w.opts.FlushInterval <= 0 {
		return
	}
	due := w.batchOpen.Add(w.opts.FlushInterval)
	if w.wakeAt.IsZero() || w.wakeAt.After(due) {
		w.timer.Reset(w.opts.FlushInterval)
		w.wakeAt = due
	}
}

// minTimed is the shortest wait of the background's timer.
const minTimed = time.Millisecond

// schedule (io held) arms the background's timer for its next timed work:
// the open batch's flush interval, the segment's age, the fsync interval
// of what was written, a full disk's retry; or stops it when none waits,
// so that an idle writer is not woken (a ticker woke it ten times a
// second).
func (w *Writer) schedule() {
	var next time.Duration
	due := func(d time.Duration) {
		d = max(d, minTimed)
		if next == 0 || d < next {
			next = d
		}
	}
	timed := w.opts.FlushInterval > 0 || w.opts.SegmentAge > 0 || w.opts.Fsync > 0 || w.full
	var now time.Time
	if timed && w.err == nil {
		now = w.opts.Now()
		if w.full {
			due(w.retryAt.Sub(now))
		}
		if w.opts.SegmentAge > 0 && w.f != nil && !w.full && len(w.held) == 0 && w.segRecs > 0 {
			due(w.segCreated.Add(w.opts.SegmentAge).Sub(now))
		}
		if w.opts.Fsync > 0 && w.dirty && w.f != nil {
			due(time.Duration(w.opts.Fsync) - time.Since(w.lastSync))
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if timed && w.err == nil && w.opts.FlushInterval > 0 && w.enc.n > 0 {
		due(w.batchOpen.Add(w.opts.FlushInterval).Sub(now))
	}
	if next == 0 {
		w.timer.Stop()
		w.wakeAt = time.Time{}
		return
	}
	w.timer.Reset(next)
	w.wakeAt = now.Add(next)
}

// background is the writer's goroutine: it writes the batches handed over
// as they come, writes batches older than FlushInterval, rotates by age,
// syncs within the fsync interval and retries a full disk. Its timer runs
// only while such timed work waits (schedule, openedLocked).
func (w *Writer) background() {
	defer close(w.done)
	defer w.timer.Stop()
	w.io.Lock()
	w.schedule()
	w.io.Unlock()
	for {
		ticked := false
		select {
		case <-w.stop:
			return
		case <-w.kick:
		case <-w.timer.C:
			ticked = true
		}
		w.io.Lock()
		// after a fatal error too: writeBatch counts the batches as lost
		// and the appenders waiting for room go on
		w.writeQueued()
		if ticked && w.err == nil {
			w.timed()
		}
		w.schedule()
		w.io.Unlock()
	}
}

// timed (io held) is the background's periodic work.
func (w *Writer) timed() {
	if w.full {
		w.tryResume()
	}
	if w.opts.FlushInterval <= 0 && w.opts.SegmentAge <= 0 && w.opts.Fsync <= 0 {
		return // nothing timed to do: the clock is not read (tests give clocks that count their reads)
	}
	now := w.opts.Now()
	if w.opts.FlushInterval > 0 {
		w.mu.Lock()
		if w.enc.n > 0 && now.Sub(w.batchOpen) >= w.opts.FlushInterval {
			w.cutLocked()
		}
		w.mu.Unlock()
		w.writeQueued()
	}
	if w.opts.SegmentAge > 0 && w.f != nil && !w.full && len(w.held) == 0 && now.Sub(w.segCreated) >= w.opts.SegmentAge {
		w.mu.Lock()
		w.cutLocked()
		w.mu.Unlock()
		w.writeQueued()
		if w.err == nil && w.segRecs > 0 && !w.full && w.f != nil {
			if err := w.rotate(now); err != nil {
				w.opts.Logf("audit: rotate %s: %v", w.opts.Dir, err)
			}
		}
	}
	if w.opts.Fsync > 0 && w.dirty && w.f != nil && time.Since(w.lastSync) >= time.Duration(w.opts.Fsync) {
		// Sync without the lock: Flush, Stats and Head do not wait for the disk.
		f, pos := w.f, w.wpos
		w.dirty = false
		w.syncing = true
		w.io.Unlock()
		err := fdatasync(f)
		w.io.Lock()
		w.syncing = false
		defer w.syncDone.Broadcast() // after the head below
		w.lastSync = time.Now()
		w.stats.Syncs++
		if err != nil && !errors.Is(err, os.ErrClosed) {
			w.dirty = true
			w.opts.Logf("audit: sync %s: %v", f.Name(), err)
		} else if err == nil && (pos.segment > w.headAt.segment || pos.segment == w.headAt.segment && pos.offset > w.headAt.offset) {
			w.writeHead(pos)
		}
	}
}
