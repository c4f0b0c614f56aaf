package store

import (
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// table maps an entity type T onto its SQL table. Every table has a text key column
// and the bookkeeping columns revision, created_at and updated_at.
type table[T any] struct {
	name    string
	key     string           // key column; also the key's JSON field
	keyOf   func(*T) *string // the key field of an entity
	newKey  func() string    // fills an empty key on create; nil means the key is required
	columns []column[T]      // every other column, bookkeeping excluded
	// order is the natural key that lists and snapshots sort by and that pagination
	// cursors hold; orderOf reads it from an entity. Nil order means the key column.
	order   []string
	orderOf func(*T) []string
	refs    map[string]string   // foreign-key constraint name → JSON field
	unique  map[string][]string // unique constraint name → JSON fields (the primary key is implied)
	live    string              // SQL condition a row must meet to enter a snapshot; "" means every row
	// liveOnly hides rows that fail live from Get, List, Update and Delete as well, as
	// if they were deleted; Put replaces such a row as a new one. live must then qualify
	// its columns with the table name, so that in Put's ON CONFLICT it reads the
	// existing row.
	liveOnly bool
	// scope, when set, confines the rows to a tenant scope (WithTenants): an SQL
	// condition with one %s, the text[] of the scope's tenants. scopeField is the
	// JSON field a write outside the scope is refused on. A table without scope has
	// no rows under a scope.
	scope      string
	scopeField string
	// history, when set, is the form of an entity the change history records, e.g.
	// with a secret in it left out; nil records the entity.
	history func(T) any
}

// column is one non-key column of a table.
type column[T any] struct {
	name  string
	read  string // SELECT expression; "" means the column itself
	write string // value expression around the placeholder %s; "" means the placeholder alone
	value func(*T) any
	dest  func(*T) any
}

// init fills the defaults of t and returns it.
func (t *table[T]) init() *table[T] {
	if t.order == nil {
		t.order = []string{t.key}
		t.orderOf = func(e *T) []string { return []string{*t.keyOf(e)} }
	}
	return t
}

// columnNames lists the key column followed by the other columns.
func (t *table[T]) columnNames() []string {
	names := make([]string, 0, len(t.columns)+1)
	names = append(names, t.key)
	for _, c := range t.columns {
		names = append(names, c.name)
	}
	return names
}

// writeExpr is the value expression of column i of columnNames for placeholder mark.
func (t *table[T]) writeExpr(i int, mark string) string {
	if i == 0 || t.columns[i-1].write == "" {
		return mark
	}
	return fmt.Sprintf(t.columns[i-1].write, mark)
}

func (t *table[T]) selectList() string {
	exprs := make([]string, 0, len(t.columns)+4)
	exprs = append(exprs, t.key)
	for _, c := range t.columns {
		if c.read != "" {
			exprs = append(exprs, c.read)
		} else {
			exprs = append(exprs, c.name)
		}
	}
	exprs = append(exprs, "revision", "created_at", "updated_at")
	return strings.Join(exprs, ", ")
}

// values lists e's values in columnNames order.
func (t *table[T]) values(e *T) []any {
	vals := make([]any, 0, len(t.columns)+1)
	vals = append(vals, *t.keyOf(e))
	for _, c := range t.columns {
		vals = append(vals, c.value(e))
	}
	return vals
}

// scan reads one row of selectList.
func (t *table[T]) scan(row pgx.Row) (Record[T], error) {
	var r Record[T]
	dests := make([]any, 0, len(t.columns)+4)
	dests = append(dests, t.keyOf(&r.Entity))
	for _, c := range t.columns {
		dests = append(dests, c.dest(&r.Entity))
	}
	dests = append(dests, &r.Revision, &r.CreatedAt, &r.UpdatedAt)
	err := row.Scan(dests...)
	return r, err
}

// col maps column name onto the entity field that field points at.
func col[T, V any](name string, field func(*T) *V) column[T] {
	return column[T]{
		name:  name,
		value: func(e *T) any { return *field(e) },
		dest:  func(e *T) any { return field(e) },
	}
}

// arrayCol maps a NOT NULL text[] column; a nil slice is stored as an empty array.
func arrayCol[T any](name string, field func(*T) *[]string) column[T] {
	c := col(name, field)
	c.value = func(e *T) any {
		if s := *field(e); s != nil {
			return s
		}
		return []string{}
	}
	return c
}

// nullableCol maps a nullable text column; NULL reads as "" and "" is stored as NULL,
// so that an unset optional reference satisfies its foreign key.
func nullableCol[T any](name string, field func(*T) *string) column[T] {
	c := col(name, field)
	c.read = "coalesce(" + name + ", '')"
	c.write = "nullif(%s, '')"
	return c
}

// optionalCol maps a nullable bigint column; NULL reads as 0 and 0 is stored as NULL,
// so that "not set" is NULL in SQL and the zero value in Go.
func optionalCol[T any](name string, field func(*T) *int64) column[T] {
	c := col(name, field)
	c.read = "coalesce(" + name + ", 0)"
	c.write = "nullif(%s::bigint, 0)"
	return c
}

// visible is the SQL condition, joined with AND, that a row must meet to be seen by
// Get, List, Update and Delete: "" unless the table is liveOnly.
func (t *table[T]) visible() string {
	if !t.liveOnly || t.live == "" {
		return ""
	}
	return " AND (" + t.live + ")"
}

// newID returns a random (version 4) UUID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
