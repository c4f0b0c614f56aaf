// Package cli is the logic of the portcullis admin CLI: an HTTP client of the control
// plane's admin API (/admin/v1). cmd/portcullis only wires signals and calls Run.
//
// Configuration: PORTCULLIS_ADMIN_URL / --admin-url (default http://127.0.0.1:8080)
// and the admin token: PORTCULLIS_ADMIN_TOKEN, else the content of
// <data dir>/admin-token (PORTCULLIS_DATA_DIR / --data-dir, default .data), which must
// be readable by its owner only. There is no --admin-token: a token on the command
// line shows in process listings, so the CLI refuses one with a usage error. The
// admin token is never printed.
package cli
