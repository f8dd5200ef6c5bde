package audit

import (
	"errors"
	"fmt"
	"log"
	"path/filepath"
	"strings"
	"time"
)

// FsyncPolicy says when the writer calls fsync: FsyncBatch after every
// batch (batches that wait for the writer together are written and then
// synced once, before the signed head names them), a positive duration at
// most that often (a background flusher makes
// sure a written batch is synced within the interval), FsyncNever leaves it
// to the kernel. A process crash loses no written batch under any policy;
// the policy bounds what a power loss or kernel crash can take.
type FsyncPolicy time.Duration

const (
	// FsyncBatch syncs after every batch, before the signed head names it (the default).
	FsyncBatch FsyncPolicy = 0
	// FsyncNever never syncs (benchmarks, tests, throwaway runs).
	FsyncNever FsyncPolicy = -1
)

// ParseFsync reads "batch", "never" or a duration such as "100ms".
func ParseFsync(s string) (FsyncPolicy, error) {
	switch s {
	case "batch", "":
		return FsyncBatch, nil
	case "never":
		return FsyncNever, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("fsync %q: want batch, never or a positive duration such as 100ms", s)
	}
	return FsyncPolicy(d), nil
}

func (p FsyncPolicy) String() string {
	switch {
	case p == FsyncBatch:
		return "batch"
	case p < 0:
		return "never"
	}
	return time.Duration(p).String()
}

// FullPolicy says what the writer does when the disk is full.
type FullPolicy string

const (
	// FullCount keeps running: records that cannot be written are dropped
	// and counted, and a KindLoss record says how many once space returns.
	FullCount FullPolicy = "count"
	// FullFreeze keeps the unwritten records in memory (up to
	// Options.HoldRecords) and returns ErrFull from Append, AppendEvent and
	// Flush until a write succeeds, so the caller can freeze the monitored
	// containers until space returns.
	FullFreeze FullPolicy = "freeze"
)

// ParseFullPolicy reads "count" or "freeze".
func ParseFullPolicy(s string) (FullPolicy, error) {
	switch FullPolicy(s) {
	case FullCount, "":
		return FullCount, nil
	case FullFreeze:
		return FullFreeze, nil
	}
	return "", fmt.Errorf("on-full %q: want count or freeze", s)
}

// Compression names a batch compression.
type Compression string

// The compressions.
const (
	CompressS2   Compression = "s2"
	CompressZstd Compression = "zstd"
	CompressNone Compression = "none"
)

// ErrFull is returned (wrapped) while the disk is full and OnFull is
// FullFreeze.
var ErrFull = errors.New("audit: disk full")

// ErrClosed is returned by a Writer after Close.
var ErrClosed = errors.New("audit: writer closed")

// Options configures a Writer. Only Dir is required.
type Options struct {
	// Dir holds the segments; created (mode 0700) if missing.
	Dir string
	// KeyFile is the node's ed25519 private key (PKCS#8 PEM), created with
	// mode 0600 at first start, with the public key beside it (.pub).
	// Default: audit.key in Dir's parent directory, outside the log, so a
	// copy of the log does not carry the key that signs it.
	KeyFile string
	// AcceptKeys are earlier node keys (public key files) after a key
	// change: the writer continues a log whose last segment one of them
	// signed, and records the change (a KindAgent "key-change" record).
	// Verify then needs the old keys as well (VerifyOptions.OldKeys).
	AcceptKeys []string
	// Fsync is when to fsync; default FsyncBatch.
	Fsync FsyncPolicy
	// BatchRecords is how many records a batch holds before it is handed to
	// the writer's goroutine; default 4096. A process crash loses at most
	// the batch being built and the PendingBatches handed over but not yet
	// written: (1+PendingBatches) x BatchRecords records, none that Flush
	// returned for or that the signed head names.
	BatchRecords int
	// PendingBatches bounds the batches handed to the writer's goroutine
	// and not yet written (it compresses, chains, signs, writes and syncs
	// them off the appender's goroutine); an append that fills a batch
	// while that many wait, waits for one to be written (back-pressure,
	// counted in Stats.Stalls: nothing is dropped for it). Default 4: on a
	// loaded 2-core machine, 2 left the appender waiting behind a slow
	// fdatasync a few times a run.
	PendingBatches int
	// FlushInterval writes a partial batch that is this old; default 200ms.
	// Negative: only full batches, Flush and Close write.
	FlushInterval time.Duration
	// SegmentBytes rotates a segment at this size; default 64 MiB.
	SegmentBytes int64
	// SegmentAge also rotates a segment this old (that holds records), so
	// retention by age can delete quiet logs' data; default 1h, negative:
	// rotate by size only.
	SegmentAge time.Duration
	// MaxBytes deletes the oldest sealed segments while the log is larger;
	// 0: no limit.
	MaxBytes int64
	// MaxAge deletes sealed segments whose last record is older; 0: no
	// limit.
	MaxAge time.Duration
	// Compression of batches: CompressS2 (the default: about 20 ns per
	// event), CompressZstd (about 8x the CPU for 20-35% fewer bytes) or
	// CompressNone. Readers handle all three.
	Compression Compression
	// OnFull is the disk-full policy; default FullCount.
	OnFull FullPolicy
	// HoldRecords bounds what FullFreeze keeps in memory while the disk is
	// full; beyond it records are counted as lost. Default 16 batches.
	HoldRecords int
	// RetryInterval is how often a full disk is tried again; default 1s.
	RetryInterval time.Duration
	// Logf receives alerts (disk full, recovery, retention); default
	// log.Printf. A logrus logger's Warnf fits.
	Logf func(format string, args ...any)
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Anchor, if set, is handed the signed head (Writer.Head) every
	// AnchorInterval when it changed, and the last one at Close, from a
	// goroutine of its own (appends never wait for it). Store it where an
	// attacker on the node cannot rewrite it: AnchorCommand runs a command
	// with it on standard input. An error is logged; the next head is
	// handed over at the next interval.
	Anchor func(Head) error
	// AnchorInterval is how often Anchor is called; default 1m.
	AnchorInterval time.Duration
}

// DefaultKeyFile is where the key of a log in dir lives unless configured.
func DefaultKeyFile(dir string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(dir)), "audit.key")
}

func (o *Options) setDefaults() error {
	if o.Dir == "" {
		return errors.New("audit options: Dir is empty, want the log directory")
	}
	if o.KeyFile == "" {
		o.KeyFile = DefaultKeyFile(o.Dir)
	}
	if o.BatchRecords == 0 {
		o.BatchRecords = 4096
	}
	if o.BatchRecords < 1 || o.BatchRecords > 1<<20 {
		return fmt.Errorf("audit options: BatchRecords %d, want 1..%d", o.BatchRecords, 1<<20)
	}
	if o.PendingBatches == 0 {
		o.PendingBatches = 4
	}
	if o.PendingBatches < 1 || o.PendingBatches > 64 {
		return fmt.Errorf("audit options: PendingBatches %d, want 1..64", o.PendingBatches)
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = 200 * time.Millisecond
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = 64 << 20
	}
	if o.SegmentBytes < 4096 {
		return fmt.Errorf("audit options: SegmentBytes %d, want at least 4096", o.SegmentBytes)
	}
	if o.SegmentAge == 0 {
		o.SegmentAge = time.Hour
	}
	if o.MaxAge > 0 && o.SegmentAge > o.MaxAge/2 {
		o.SegmentAge = o.MaxAge / 2
	}
	if o.MaxBytes < 0 || o.MaxAge < 0 {
		return fmt.Errorf("audit options: MaxBytes %d, MaxAge %s: want 0 (no limit) or positive", o.MaxBytes, o.MaxAge)
	}
	switch o.Compression {
	case "":
		o.Compression = CompressS2
	case CompressS2, CompressZstd, CompressNone:
	default:
		return fmt.Errorf("audit options: Compression %q, want %q, %q or %q", o.Compression, CompressS2, CompressZstd, CompressNone)
	}
	switch o.OnFull {
	case "":
		o.OnFull = FullCount
	case FullCount, FullFreeze:
	default:
		return fmt.Errorf("audit options: OnFull %q, want %q or %q", o.OnFull, FullCount, FullFreeze)
	}
	if o.HoldRecords == 0 {
		o.HoldRecords = 16 * o.BatchRecords
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = time.Second
	}
	if o.Logf == nil {
		o.Logf = log.Printf
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AnchorInterval <= 0 {
		o.AnchorInterval = time.Minute
	}
	return nil
}

// Kind is what a record is.
type Kind uint8

// Record kinds. Their numbers are stored on disk: never renumber.
const (
	KindEvent     Kind = 1 // a syscall event (Record.Event)
	KindGap       Kind = 2 // the tracer dropped records of a cgroup (Gap body)
	KindVerdict   Kind = 3 // a detector verdict (detector.Verdict JSON)
	KindAction    Kind = 4 // a control action taken on a container
	KindLifecycle Kind = 5 // container start/stop with metadata (Lifecycle body)
	KindPolicy    Kind = 6 // a rule or policy change
	KindAgent     Kind = 7 // agent start/stop (Agent body)
	KindLoss      Kind = 8 // the audit writer itself lost records (Loss body)
	KindSample    Kind = 9 // a resource sample of a cgroup (detector.Sample JSON), so replay can re-run resource rules
)

var kindNames = [...]string{KindEvent: "event", KindGap: "gap", KindVerdict: "verdict", KindAction: "action",
	KindLifecycle: "lifecycle", KindPolicy: "policy", KindAgent: "agent", KindLoss: "loss", KindSample: "sample"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k >= KindEvent && int(k) < len(kindNames) }

// KindNames lists the kinds' names in number order.
func KindNames() []string { return append([]string(nil), kindNames[1:]...) }

// ParseKind reads a kind's name.
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if n != "" && n == s {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("kind %q: want one of %s", s, strings.Join(KindNames(), ", "))
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	*k = v
	return err
}

// Gap is the body of a KindGap record: the tracer's counters say Count
// records of the cgroup, from sequence number FromSeq on, were dropped.
type Gap struct {
	FromSeq uint64 `json:"from_seq"`
	Count   uint64 `json:"count"`
	Reason  string `json:"reason,omitempty"`
}

// Lifecycle is a suggested body of a KindLifecycle record.
type Lifecycle struct {
	Event       string            `json:"event"` // "start", "stop", ...
	ID          string            `json:"id,omitempty"`
	Name        string            `json:"name,omitempty"`
	Pod         string            `json:"pod,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Image       string            `json:"image,omitempty"`
	PodUID      string            `json:"pod_uid,omitempty"`
	OwnerKind   string            `json:"owner_kind,omitempty"`
	OwnerName   string            `json:"owner_name,omitempty"`
	PID         uint32            `json:"pid,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Counters    map[string]uint64 `json:"counters,omitempty"` // final tracer counters at stop
}

// Agent is a suggested body of a KindAgent record.
type Agent struct {
	Event   string `json:"event"` // "start", "stop"
	Version string `json:"version,omitempty"`
	Host    string `json:"host,omitempty"`
	PID     int    `json:"pid,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// Loss is the body of a KindLoss record: records the audit writer itself
// could not keep, or that recovery found missing. Records is -1 when the
// count is unknown (never 0 for a loss that may have held records).
type Loss struct {
	// Reason: "torn-tail", "disk-full", "write-error", "unclean-shutdown",
	// "hold-overflow"; found against the signed head at Open: "truncated"
	// (records the head names are gone), "head-mismatch" (the chain does not
	// pass through the head), "no-head", "bad-head".
	Reason  string `json:"reason"`
	Records int64  `json:"records"`
	Bytes   int64  `json:"bytes,omitempty"`
	Segment uint64 `json:"segment,omitempty"`
	Detail  string `json:"detail,omitempty"`
	// Head is the signed head the log no longer matches: kept as evidence
	// before the writer replaces the head file.
	Head *Head `json:"head,omitempty"`
}

// Alert reports whether the loss points at tampering (or damage) rather
// than at a crash or a full disk.
func (l *Loss) Alert() bool {
	switch l.Reason {
	case "truncated", "head-mismatch", "no-head", "bad-head":
		return true
	}
	return false
}
