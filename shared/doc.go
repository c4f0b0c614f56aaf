// Package shared is the root of the wire contract between the Portcullis control plane
// and its data planes. The contract itself lives in the subpackages: policy (the
// snapshot), natsnames (bucket, stream and subject names), apierr (the error-code
// registry), identity (JWT claim names), config (flag and environment loading),
// natsembed (the embedded nats-server used in dev and tests), natsconn (the one way
// both binaries connect to NATS: credentials, TLS, reconnects), natsbuckets (the
// buckets and streams and their settings), keyevents (key rotations, revocations and
// key-access events), health (workers' deployment health reports), httpmetrics,
// logging, and rungroup (how each binary runs its long-running components, each a
// Run(ctx) error, under one context, and stops them within a deadline). Test
// helpers: logtest, testcerts, and vaulttest (a real Vault from tests/vaultdev, over
// HTTP only).
//
// This module must never import pgx, echo or Vault; an architecture test enforces it.
package shared
