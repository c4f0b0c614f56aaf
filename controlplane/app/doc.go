// Package app assembles the Portcullis control plane: configuration, the Postgres
// store and its migrations, the bootstrap admin token, NATS (external or embedded)
// and its buckets, the policy publisher, the Vault login, the key rotator and the
// ingest of key-access events, the audit archive's ingest of every region's stream,
// the anomaly detector, the collector of the workers' health reports, the
// development JWT issuer and the HTTP server (admin API, health, readiness, metrics
// and the console placeholder).
//
// The long-running components (the publisher, the rotator, the key-access ingest,
// the audit ingest, the anomaly detector, the health collector and the HTTP server)
// each have the shape Run(ctx) error and run under one shared/rungroup group: a
// component that fails stops the others and closes App.Done. Stop shuts the HTTP
// server down, ends the group's context, waits for the components within its
// deadline and then closes Vault, NATS and Postgres.
//
// It is exported so that cmd/controlplane and the end-to-end tests start a control
// plane the same way: LoadConfig, then Start, then Stop.
package app
