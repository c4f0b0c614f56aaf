// Package web holds the Portcullis admin console's templates and static assets,
// embedded with go:embed so the control plane binary carries them. For now it serves a
// single placeholder page that points operators at the admin API and the CLI.
package web
