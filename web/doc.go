// Package web holds the Portcullis admin console's templates and static assets,
// embedded with go:embed so the control plane binary carries them: the page for the
// signed out, the console's page templates and its static files. The control plane's
// console package renders them.
package web
