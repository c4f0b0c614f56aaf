package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Record is one stored entity with its bookkeeping: Revision changes on every update
// and serves as the admin API's ETag.
type Record[T any] struct {
	Entity    T
	Revision  int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Page is one page of a collection in key order.
type Page[T any] struct {
	Items []Record[T]
	Next  string // opaque cursor of the next page; "" when this page is the last
}

// Collection is the stored set of one policy entity type, e.g. the tiers. Every
// mutation bumps the policy version in the same transaction. In a collection whose
// entities expire (LimitOverrides), an expired entity is invisible to Get, List, Update
// and Delete, as if it had been deleted. Safe for concurrent use.
type Collection[T any] struct {
	s *Store
	t *table[T]
}

// KeyName is the name of the key column, which is also the key's JSON field.
func (c *Collection[T]) KeyName() string { return c.t.key }

// Key points at e's key field.
func (c *Collection[T]) Key(e *T) *string { return c.t.keyOf(e) }

// GeneratesKey reports whether Create fills an empty key with a fresh random id.
func (c *Collection[T]) GeneratesKey() bool { return c.t.newKey != nil }

// Get returns the entity with key, or ErrNotFound.
func (c *Collection[T]) Get(ctx context.Context, key string) (Record[T], error) {
	args := []any{key}
	q := fmt.Sprintf(`SELECT %s FROM %s WHERE %s = $1%s%s`, c.t.selectList(), c.t.name, c.t.key, c.t.visible(), c.t.scoped(ctx, &args))
	r, err := c.t.scan(c.s.pool.QueryRow(ctx, q, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return Record[T]{}, ErrNotFound
	}
	if err != nil {
		return Record[T]{}, fmt.Errorf("get %s %q: %w", c.t.name, key, err)
	}
	return r, nil
}

// List returns up to limit entities after cursor ("" for the first page), ordered by
// the collection's natural key. Pages stay consistent under concurrent inserts and
// deletes: every entity present throughout the walk is returned exactly once.
func (c *Collection[T]) List(ctx context.Context, cursor string, limit int) (Page[T], error) {
	return c.ListFiltered(ctx, cursor, limit, Filter{})
}

// Filter narrows a list: Search keeps the entities whose key holds it (any case),
// and Equals those whose named columns hold the given values (a column the
// collection does not have is an error).
type Filter struct {
	Search string
	Equals map[string]string
}

// ListFiltered is List over the entities f keeps; a cursor belongs to its filter.
func (c *Collection[T]) ListFiltered(ctx context.Context, cursor string, limit int, f Filter) (Page[T], error) {
	if limit < 1 {
		return Page[T]{}, fmt.Errorf("list %s: limit %d must be positive", c.t.name, limit)
	}
	after, err := decodeCursor(cursor, len(c.t.order))
	if err != nil {
		return Page[T]{}, err
	}
	var q strings.Builder
	fmt.Fprintf(&q, `SELECT %s FROM %s`, c.t.selectList(), c.t.name)
	args := make([]any, 0, len(after)+2)
	where := "true"
	if after != nil {
		marks := make([]string, len(after))
		for i, v := range after {
			args = append(args, v)
			marks[i] = fmt.Sprintf("$%d", i+1)
		}
		where = fmt.Sprintf(`(%s) > (%s)`, strings.Join(c.t.order, ", "), strings.Join(marks, ", "))
	}
	cond, err := c.where(ctx, f, &args)
	if err != nil {
		return Page[T]{}, err
	}
	fmt.Fprintf(&q, ` WHERE %s%s`, where, cond)
	args = append(args, limit+1)
	fmt.Fprintf(&q, ` ORDER BY %s LIMIT $%d`, strings.Join(c.t.order, ", "), len(args))
	rows, err := c.s.pool.Query(ctx, q.String(), args...)
	if err != nil {
		return Page[T]{}, fmt.Errorf("list %s: %w", c.t.name, err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Record[T], error) { return c.t.scan(row) })
	if err != nil {
		return Page[T]{}, fmt.Errorf("list %s: %w", c.t.name, err)
	}
	page := Page[T]{Items: items}
	if len(items) > limit {
		page.Items = items[:limit]
		page.Next = encodeCursor(c.t.orderOf(&items[limit-1].Entity))
	}
	return page, nil
}

// Count is how many entities f keeps.
func (c *Collection[T]) Count(ctx context.Context, f Filter) (int, error) {
	var args []any
	cond, err := c.where(ctx, f, &args)
	if err != nil {
		return 0, err
	}
	var n int
	if err := c.s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE true%s`, c.t.name, cond), args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", c.t.name, err)
	}
	return n, nil
}

// where is the SQL that keeps what f keeps, the visible and in-scope entities,
// starting with " AND "; its values are appended to args.
func (c *Collection[T]) where(ctx context.Context, f Filter, args *[]any) (string, error) {
	var b strings.Builder
	if f.Search != "" {
		*args = append(*args, "%"+likeEscaper.Replace(f.Search)+"%")
		fmt.Fprintf(&b, ` AND %s ILIKE $%d`, c.t.key, len(*args))
	}
	for _, col := range slices.Sorted(maps.Keys(f.Equals)) {
		if !slices.Contains(c.t.columnNames(), col) {
			return "", fmt.Errorf("list %s: no column %q to filter on", c.t.name, col)
		}
		*args = append(*args, f.Equals[col])
		fmt.Fprintf(&b, ` AND %s::text = $%d`, col, len(*args))
	}
	b.WriteString(c.t.visible())
	b.WriteString(c.t.scoped(ctx, args))
	return b.String(), nil
}

// likeEscaper escapes the wildcards of a LIKE pattern (the default escape is a
// backslash).
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// Create inserts e. An empty key is filled with a random id if the collection
// generates keys. It returns a *DuplicateError if the key (or another unique key)
// exists and a *ReferenceError if e names an entity that does not exist (or, under a
// tenant scope, a tenant outside it).
func (c *Collection[T]) Create(ctx context.Context, e T) (Record[T], error) {
	if key := c.t.keyOf(&e); *key == "" && c.t.newKey != nil {
		*key = c.t.newKey()
	}
	cols := c.t.columnNames()
	marks := make([]string, len(cols))
	for i := range cols {
		marks[i] = c.t.writeExpr(i, fmt.Sprintf("$%d", i+1))
	}
	q := fmt.Sprintf(`INSERT INTO %s (%s) VALUES (%s) RETURNING %s`,
		c.t.name, strings.Join(cols, ", "), strings.Join(marks, ", "), c.t.selectList())
	var rec Record[T]
	err := c.s.mutate(ctx, func(tx pgx.Tx) (Change, error) {
		var err error
		if rec, err = c.t.scan(tx.QueryRow(ctx, q, c.t.values(&e)...)); err != nil {
			return Change{}, err
		}
		if err := c.inScope(ctx, tx, *c.t.keyOf(&rec.Entity)); err != nil {
			return Change{}, err
		}
		return c.change("create", nil, &rec), nil
	})
	if err != nil {
		return Record[T]{}, fmt.Errorf("create %s: %w", c.t.name, translate(c.t, err, false))
	}
	return rec, nil
}

// Update replaces the entity with key by e (whose key field is ignored). If revision
// is not zero the stored revision must equal it, else ErrStale. It returns
// ErrNotFound if there is no such entity.
func (c *Collection[T]) Update(ctx context.Context, key string, revision int64, e T) (Record[T], error) {
	*c.t.keyOf(&e) = key
	cols := c.t.columnNames()
	sets := make([]string, 0, len(cols))
	for i, col := range cols[1:] {
		sets = append(sets, col+" = "+c.t.writeExpr(i+1, fmt.Sprintf("$%d", i+2)))
	}
	q := fmt.Sprintf(`UPDATE %s SET %s, revision = revision + 1, updated_at = now()
		WHERE %s = $1 AND ($%d::bigint = 0 OR revision = $%d)%s RETURNING %s`,
		c.t.name, strings.Join(sets, ", "), c.t.key, len(cols)+1, len(cols)+1, c.t.visible(), c.t.selectList())
	args := append(c.t.values(&e), revision)
	var rec Record[T]
	err := c.s.mutate(ctx, func(tx pgx.Tx) (Change, error) {
		before, err := c.lockedGet(ctx, tx, key)
		if err != nil {
			return Change{}, err
		}
		rec, err = c.t.scan(tx.QueryRow(ctx, q, args...))
		if errors.Is(err, pgx.ErrNoRows) {
			return Change{}, c.missing(ctx, tx, key)
		}
		if err != nil {
			return Change{}, err
		}
		if err := c.inScope(ctx, tx, key); err != nil {
			return Change{}, err
		}
		return c.change("update", before, &rec), nil
	})
	if err != nil {
		return Record[T]{}, fmt.Errorf("update %s %q: %w", c.t.name, key, translate(c.t, err, false))
	}
	return rec, nil
}

// Delete removes the entity with key. If revision is not zero the stored revision
// must equal it, else ErrStale. It returns ErrNotFound if there is no such entity and
// an *InUseError if other entities still reference it.
func (c *Collection[T]) Delete(ctx context.Context, key string, revision int64) error {
	err := c.s.mutate(ctx, func(tx pgx.Tx) (Change, error) { return c.deleteTx(ctx, tx, key, revision) })
	if err != nil {
		return fmt.Errorf("delete %s %q: %w", c.t.name, key, translate(c.t, err, true))
	}
	return nil
}

// deleteTx is Delete inside tx, untranslated errors.
func (c *Collection[T]) deleteTx(ctx context.Context, tx pgx.Tx, key string, revision int64) (Change, error) {
	args := []any{key, revision}
	q := fmt.Sprintf(`DELETE FROM %s WHERE %s = $1 AND ($2::bigint = 0 OR revision = $2)%s%s RETURNING %s`,
		c.t.name, c.t.key, c.t.visible(), c.t.scoped(ctx, &args), c.t.selectList())
	before, err := c.t.scan(tx.QueryRow(ctx, q, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return Change{}, c.missing(ctx, tx, key)
	}
	if err != nil {
		return Change{}, err
	}
	return c.change("delete", &before, nil), nil
}

// Put creates the entity with e's key, or replaces it if it exists: the stored
// revision goes up by one and created_at stays. In a table whose rows expire (see
// LimitOverrides), an expired row is replaced as a new one (revision 1). Put needs a
// key even in a collection that generates keys. Errors are those of Create.
func (c *Collection[T]) Put(ctx context.Context, e T) (Record[T], error) {
	key := *c.t.keyOf(&e)
	if key == "" {
		return Record[T]{}, fmt.Errorf("put %s: empty %s", c.t.name, c.t.key)
	}
	var rec Record[T]
	err := c.s.mutate(ctx, func(tx pgx.Tx) (Change, error) {
		var ch Change
		var err error
		rec, ch, err = c.putTx(ctx, tx, e)
		return ch, err
	})
	if err != nil {
		return Record[T]{}, fmt.Errorf("put %s %q: %w", c.t.name, key, translate(c.t, err, false))
	}
	return rec, nil
}

// putTx is Put inside tx, untranslated errors; e's key is not empty.
func (c *Collection[T]) putTx(ctx context.Context, tx pgx.Tx, e T) (Record[T], Change, error) {
	key := *c.t.keyOf(&e)
	cols := c.t.columnNames()
	marks := make([]string, len(cols))
	sets := make([]string, 0, len(cols)+2)
	for i, col := range cols {
		marks[i] = c.t.writeExpr(i, fmt.Sprintf("$%d", i+1))
		if i > 0 {
			sets = append(sets, col+" = EXCLUDED."+col)
		}
	}
	// The table-qualified columns of live are those of the existing row.
	alive := "true"
	if c.t.liveOnly && c.t.live != "" {
		alive = c.t.live
	}
	sets = append(sets,
		fmt.Sprintf("revision = CASE WHEN %s THEN %s.revision + 1 ELSE 1 END", alive, c.t.name),
		fmt.Sprintf("created_at = CASE WHEN %s THEN %s.created_at ELSE now() END", alive, c.t.name),
		"updated_at = now()")
	q := fmt.Sprintf(`INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) DO UPDATE SET %s RETURNING %s`,
		c.t.name, strings.Join(cols, ", "), strings.Join(marks, ", "), c.t.key, strings.Join(sets, ", "), c.t.selectList())
	before, err := c.lockedGet(ctx, tx, key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Record[T]{}, Change{}, err
	}
	rec, err := c.t.scan(tx.QueryRow(ctx, q, c.t.values(&e)...))
	if err != nil {
		return Record[T]{}, Change{}, err
	}
	if err := c.inScope(ctx, tx, key); err != nil {
		return Record[T]{}, Change{}, err
	}
	return rec, c.change("put", before, &rec), nil
}

// lockedGet reads and locks the visible row with key inside tx: nil, ErrNotFound
// when there is none (or it is outside ctx's tenant scope).
func (c *Collection[T]) lockedGet(ctx context.Context, tx pgx.Tx, key string) (*Record[T], error) {
	args := []any{key}
	q := fmt.Sprintf(`SELECT %s FROM %s WHERE %s = $1%s%s FOR UPDATE`, c.t.selectList(), c.t.name, c.t.key,
		c.t.visible(), c.t.scoped(ctx, &args))
	r, err := c.t.scan(tx.QueryRow(ctx, q, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// inScope checks, under a tenant scope, that the row with key written in tx lies
// within it, else a *ReferenceError on the table's tenant field: a tenant admin
// names a tenant (or a client) outside its own as if it did not exist.
func (c *Collection[T]) inScope(ctx context.Context, tx pgx.Tx, key string) error {
	args := []any{key}
	cond := c.t.scoped(ctx, &args)
	if cond == "" {
		return nil
	}
	var ok bool
	q := fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE %s = $1%s)`, c.t.name, c.t.key, cond)
	if err := tx.QueryRow(ctx, q, args...).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		field := c.t.scopeField
		if field == "" {
			field = c.t.key
		}
		return &ReferenceError{Field: field}
	}
	return nil
}

// change describes a write of the collection for the change history.
func (c *Collection[T]) change(action string, before, after *Record[T]) Change {
	form := func(r *Record[T]) any {
		if r == nil {
			return nil
		}
		if c.t.history != nil {
			return c.t.history(r.Entity)
		}
		return r.Entity
	}
	key := ""
	if after != nil {
		key = *c.t.keyOf(&after.Entity)
	} else if before != nil {
		key = *c.t.keyOf(&before.Entity)
	}
	return Change{Action: action, Resource: strings.ReplaceAll(c.t.name, "_", "-"), Key: key, Before: form(before), After: form(after)}
}

// missing explains why a conditional write to key touched no row.
func (c *Collection[T]) missing(ctx context.Context, tx pgx.Tx, key string) error {
	var exists bool
	args := []any{key}
	q := fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE %s = $1%s%s)`, c.t.name, c.t.key, c.t.visible(), c.t.scoped(ctx, &args))
	if err := tx.QueryRow(ctx, q, args...).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return ErrStale
	}
	return ErrNotFound
}

// all reads every live entity in key order, for a snapshot.
func (t *table[T]) all(ctx context.Context, tx pgx.Tx) ([]T, error) {
	q := fmt.Sprintf(`SELECT %s FROM %s`, t.selectList(), t.name)
	if t.live != "" {
		q += " WHERE " + t.live
	}
	q += " ORDER BY " + strings.Join(t.order, ", ")
	rows, err := tx.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", t.name, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) {
		r, err := t.scan(row)
		return r.Entity, err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", t.name, err)
	}
	return out, nil
}

func encodeCursor(after []string) string {
	b, _ := json.Marshal(after) // a []string always marshals
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(cursor string, n int) ([]string, error) {
	if cursor == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return nil, ErrBadCursor
	}
	var after []string
	if err := json.Unmarshal(b, &after); err != nil || len(after) != n {
		return nil, ErrBadCursor
	}
	return after, nil
}
