package store

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors a collection returns for requests the data makes impossible. Callers test
// them with errors.Is and errors.As.
var (
	// ErrNotFound means no row has the key.
	ErrNotFound = errors.New("not found")
	// ErrStale means the row exists but its revision is not the one the caller expected.
	ErrStale = errors.New("revision does not match")
	// ErrBadCursor means a pagination cursor was not one List returned.
	ErrBadCursor = errors.New("invalid cursor")
	// ErrInvalid means the database refused a value (a check constraint or a value out
	// of range); the admin API validates first, so this signals a gap in validation.
	ErrInvalid = errors.New("value refused by the database")
)

// DuplicateError reports a write that would repeat a unique key.
type DuplicateError struct {
	Fields []string // JSON fields that make up the key
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("duplicate %s", strings.Join(e.Fields, " and "))
}

// ReferenceError reports a write that names an entity that does not exist.
type ReferenceError struct {
	Field string // JSON field holding the reference
}

func (e *ReferenceError) Error() string { return fmt.Sprintf("%s refers to nothing", e.Field) }

// InUseError reports a delete of a row that other rows still reference.
type InUseError struct {
	By string // the referencing table, e.g. "clients"
}

func (e *InUseError) Error() string { return "still referenced by " + e.By }

// PostgreSQL error codes (SQLSTATE) the store translates.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeCheckViolation      = "23514"
	codeNotNullViolation    = "23502"
	classDataException      = "22"
)

// translate turns a constraint violation on table t into one of the package's errors.
// deleting tells a foreign-key violation of a delete (still referenced) from one of an
// insert or update (names something missing).
func translate[T any](t *table[T], err error, deleting bool) error {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return err
	}
	switch {
	case pg.Code == codeUniqueViolation:
		if fields, ok := t.unique[pg.ConstraintName]; ok {
			return &DuplicateError{Fields: fields}
		}
		return &DuplicateError{Fields: []string{t.key}}
	case pg.Code == codeForeignKeyViolation && deleting:
		return &InUseError{By: pg.TableName}
	case pg.Code == codeForeignKeyViolation:
		if field, ok := t.refs[pg.ConstraintName]; ok {
			return &ReferenceError{Field: field}
		}
		return fmt.Errorf("%w: %s", ErrInvalid, pg.ConstraintName)
	case pg.Code == codeCheckViolation, pg.Code == codeNotNullViolation,
		strings.HasPrefix(pg.Code, classDataException):
		return fmt.Errorf("%w: %s", ErrInvalid, pg.Message)
	}
	return err
}
