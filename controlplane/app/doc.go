// Package app assembles the Portcullis control plane: configuration, the Postgres
// store and its migrations, the bootstrap admin token, NATS (external or embedded)
// and its buckets, the policy publisher, the Vault login, the key rotator and the
// ingest of key-access events, the audit archive's ingest of every region's stream,
// the anomaly detector, the collector of the workers' health reports, the
// development JWT issuer and the HTTP server (admin API, health, readiness, metrics
// and the console placeholder).
//
// It is exported so that cmd/controlplane and the end-to-end tests start a control
// plane the same way: LoadConfig, then Start, then Stop.
package app
