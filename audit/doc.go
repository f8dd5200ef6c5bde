// Package audit owns vigil's audit log: an append-only, hash-chained,
// signed record of everything the agent saw and did on a node (syscall
// events, tracer drops, verdicts, actions, container lifecycle, policy
// changes, agent start/stop), and the tools to verify it and read it back
// for show, export and replay.
//
// # Layout
//
// One stream per node lives in a directory of segment files
// (seg-00000000000000000001.vlog, ...). A segment is a file magic and a
// sequence of frames: one header frame, batch frames, and a seal frame when
// the segment was closed on purpose (rotation, Close, recovery). Every
// frame carries the chain hash of the frame before it, its own chain hash
//
//	hash = SHA-256(prev || type || body)
//
// and an ed25519 signature of that hash by the node key. The first frame of
// a segment chains to the last frame of the segment before it, so the whole
// stream is one chain. A verifier needs only the public key: it can prove
// the log intact without being able to forge it, which is why vigil signs
// with ed25519 rather than an HMAC (whose verifier holds the secret). The
// cost is one signature per batch (tens of microseconds for thousands of
// records).
//
// A batch frame holds a run of records in a compact binary encoding (see
// codec.go), compressed with zstd. Records are numbered by a stream-wide
// index (contiguous from 1: a missing number is a deleted record) and by a
// per-container sequence number (per cgroup id).
//
// # Durability
//
// Records are batched in memory; a batch is written when it holds
// Options.BatchRecords records, when Flush is called, or by a background
// flusher after Options.FlushInterval. fsync follows Options.Fsync. A
// process crash loses at most the batch in memory; a torn frame at the end
// (power loss, a cut file) is found and truncated by the next Open, which
// records the loss as a KindLoss record. When the disk is full the writer
// logs an alert, counts what it could not write and follows Options.OnFull.
//
// # Retention
//
// Segments rotate at Options.SegmentBytes; sealed segments older than
// Options.MaxAge or beyond Options.MaxBytes are deleted, oldest first. Before
// deleting, the writer writes a signed anchor file naming the first kept
// segment and the chain hash it starts from, so the rest of the stream stays
// verifiable and a deletion that is not retention is still detected.
package audit
