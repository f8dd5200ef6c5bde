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
// codec.go), compressed with s2 by default (Options.Compression: zstd or
// none). Measured on a realistic mix (openat with paths, getppid, read,
// connect, execve with argv; BenchmarkEncoding): the binary records take
// 35-39 bytes per event raw, 12-22 with s2, 8-18 with zstd; JSON lines
// take 371 bytes raw and 22-32 with zstd, at 4-5x the CPU of binary+zstd.
// s2 adds about 20 ns per event, zstd about 100-200 ns: the writer keeps
// s2 so that it stays well above the tracer's event rate, and a log can be
// written with zstd where disk matters more than CPU. Records are numbered
// by a stream-wide index (contiguous from 1: a missing number is a deleted
// record) and by a per-container sequence number (per cgroup id). The
// binary form keeps every field exactly, paths that are not UTF-8 included.
//
// # Durability
//
// Records are batched in memory: an append only encodes its record into
// the batch being built. A batch is cut when it holds Options.BatchRecords
// records, when Flush is called, or after Options.FlushInterval, and handed
// to the writer's own goroutine, which compresses, chains, signs and
// writes it and syncs per Options.Fsync (under FsyncBatch, batches that
// waited together are written and then synced once), then rewrites the
// signed head. The hand-off is bounded (Options.PendingBatches): an
// append that cuts a batch while that many wait, waits for the writer
// (back-pressure, counted in Stats.Stalls; nothing is dropped for it). A
// process crash loses at most the records not written yet: the batch being
// built and the batches waiting in the hand-off, never one that Flush
// returned for or that the signed head names. A torn frame at the end
// (power loss, a cut file) is found and truncated by the next Open, which
// records the loss as a KindLoss record. When the disk is full the writer
// logs an alert, counts what it could not write and follows Options.OnFull.
// One writer owns a directory at a time (a lock file); readers need no lock.
//
// # Retention
//
// Segments rotate at Options.SegmentBytes or Options.SegmentAge; sealed
// segments older than Options.MaxAge or beyond Options.MaxBytes are
// deleted, oldest first. Before
// deleting, the writer writes a signed anchor file naming the first kept
// segment and the chain hash it starts from, so the rest of the stream stays
// verifiable and a deletion that is not retention is still detected.
//
// # The signed head
//
// The chain alone cannot show a cut of the newest records at a frame
// boundary (a writer that stopped there looks the same), nor the deletion
// of whole newest segments. The writer therefore keeps a signed head, the
// last record and the last frame's hash, in the file "head" beside the
// segments, rewritten after every batch reaches the disk; verify requires
// the chain to pass through it, and Open records any difference as a
// KindLoss record before it writes a new one (see head.go). An old head
// file put back after a cut to that point is caught only by a head kept
// elsewhere: Writer.Head for the agent's status and metrics,
// Options.Anchor to hand it out, VerifyOptions.Head to check it.
//
// # Keys
//
// Verify with a pinned public key (VerifyOptions.PubKey): the default key
// file sits beside the log, and whoever replaces the log can replace it.
// Readers built with NewReaderWith (show, export) check every signature.
//
// # Use
//
//	w, err := audit.Open(audit.Options{Dir: "/var/lib/vigil/audit"})
//	w.Append(audit.KindAgent, 0, "", audit.Agent{Event: "start", Version: v})
//	// tracer callback, for each *event.Event (may be reused afterwards):
//	w.AppendEvent(ev)
//	for _, v := range engine.Observe(ev) { w.Append(audit.KindVerdict, ev.CgroupID, id, v) }
//	// at the end: the tracer's drop counters, then Close
//	w.AppendGap(cgroup, id, fromSeq, dropped)
//	w.Append(audit.KindAgent, 0, "", audit.Agent{Event: "stop"})
//	w.Close()
package audit
