// Package migrations holds the control plane's PostgreSQL schema as numbered SQL files,
// embedded in FS. The control plane applies them in lexical order, each at most once,
// recording what it applied in the schema_migrations table (see the store package).
// A file, once released, is never edited; a change to the schema is a new file.
package migrations

import "embed"

// FS holds every migration, named NNNN_description.sql.
//
//go:embed *.sql
var FS embed.FS
