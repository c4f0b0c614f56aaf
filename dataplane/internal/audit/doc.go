// Package audit is the data plane's audit publisher: every request's audit event
// (shared/audit.Event, rejected requests included) goes to the region's JetStream
// stream PC_AUDIT_<REGION> on audit.<region>.<client>, with Nats-Msg-Id = request id,
// and as a JSON line to a sink (stdout or a file) for fluentbit.
//
// # One path through a spool
//
// Every event goes through an append-only on-disk spool, in normal operation and
// during a NATS outage alike:
//
//   - Publish writes the sink line, appends the event to the spool and returns once
//     the append is fsync'd. Appends are group-committed: the events that arrive
//     while one fsync runs share the next one, so Publish costs about one fsync
//     whatever the rate.
//   - A relay goroutine (Run) reads the spool in order from a cursor, publishes up
//     to 256 events at a time without waiting, then waits for their acks in order
//     and advances the cursor over the acknowledged prefix. Fully acknowledged
//     segments are deleted. While NATS is unreachable the relay backs off and the
//     spool grows; when NATS is back it replays the spool in order.
//
// # The guarantee
//
// Once Publish returns nil, the event is on disk, fsync'd, and the relay publishes
// it until JetStream acknowledges it, across crashes and restarts of the worker: a
// publisher opened on the same directory replays what the last one left. The only
// ways such an event is not delivered are:
//
//   - the drop_oldest full policy deleted it to make room (counted in
//     portcullis_audit_dropped_total and logged as an error);
//   - the disk lost or damaged fsync'd data, which the per-record CRC detects (also
//     counted as dropped and logged);
//   - someone deleted the spool directory.
//
// When Publish returns an error, JetStream never gets the event: with ErrSpoolFull
// (full policy reject_requests) the API answers 503. "Acknowledged" means
// JetStream's PubAck; how durable that is depends on the servers' sync_interval
// (docs/design.md §3).
//
// Delivery is at least once. A retried window, or a restart that finds a cursor
// saved up to 200 ms before the last ack, publishes some events again: JetStream
// drops them by Nats-Msg-Id within StreamDuplicates, and the control plane's ingest
// is idempotent by request id after that. Events are published in spool order; when
// an ack fails midway through a window, the events after it that JetStream stored
// anyway stay ahead of the ones retried.
//
// # The spool on disk
//
// The spool directory is per worker, <data-dir>/audit-spool/<worker-id>, locked
// while open so two processes never share it. It holds numbered segment files
// (00000000000000000001.seg, …), each a sequence of records framed by a length and
// a CRC-32C, and a cursor file with the acknowledged position (written after the
// acks, atomically, so it is only ever behind). At open, every record is checked;
// a torn record at the end (a crash mid-write: its caller never got nil) is
// truncated and logged, never fatal. Segments are a sixteenth of SpoolMaxBytes (4
// KiB to 64 MiB); the bound counts every byte on disk plus the events being written.
package audit
