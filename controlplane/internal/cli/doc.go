// Package cli is the logic of the portcullis admin CLI: an HTTP client of the control
// plane's admin API (/admin/v1). cmd/portcullis only wires signals and calls Run.
//
// Configuration: PORTCULLIS_ADMIN_URL / --admin-url (default http://127.0.0.1:8080)
// and PORTCULLIS_ADMIN_TOKEN / --admin-token (default: the content of
// <data dir>/admin-token, with PORTCULLIS_DATA_DIR / --data-dir defaulting to .data).
// The admin token is never printed.
package cli
