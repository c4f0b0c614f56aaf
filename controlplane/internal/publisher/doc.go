// Package publisher keeps the PC_POLICY KV bucket's snapshot key in step with
// Postgres. It builds the whole snapshot from a SnapshotSource, encodes it and
// compare-and-swaps it into the bucket: at start, after every Notify, and on a fixed
// interval so that a lost update heals.
//
// Several control-plane replicas may publish at once. Every write is conditional on the
// revision that was read, and a publisher never replaces a snapshot whose version is
// equal to or newer than its own, so an older policy never overwrites a newer one.
package publisher
