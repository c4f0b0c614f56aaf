// Package app assembles the Portcullis control plane: configuration, the Postgres
// store and its migrations, the bootstrap admin token, NATS (external or embedded),
// the policy publisher, the development JWT issuer and the HTTP server (admin API,
// health, readiness, metrics and the console placeholder).
//
// It is exported so that cmd/controlplane and the end-to-end tests start a control
// plane the same way: LoadConfig, then Start, then Stop.
package app
