package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Batch is writes to several collections that ApplyBatch makes in one transaction,
// as one policy version. Build it with PutIn and DeleteIn; it is not safe for
// concurrent use.
type Batch struct {
	ops []func(ctx context.Context, tx pgx.Tx) (Change, error)
}

// Len is how many writes b holds.
func (b *Batch) Len() int { return len(b.ops) }

// PutIn adds a Put of e in c to b.
func PutIn[T any](b *Batch, c *Collection[T], e T) {
	b.ops = append(b.ops, func(ctx context.Context, tx pgx.Tx) (Change, error) {
		key := *c.t.keyOf(&e)
		if key == "" {
			return Change{}, fmt.Errorf("put %s: empty %s", c.t.name, c.t.key)
		}
		_, ch, err := c.putTx(ctx, tx, e)
		if err != nil {
			return Change{}, fmt.Errorf("put %s %q: %w", c.t.name, key, translate(c.t, err, false))
		}
		return ch, nil
	})
}

// DeleteIn adds a Delete of key in c (any revision) to b.
func DeleteIn[T any](b *Batch, c *Collection[T], key string) {
	b.ops = append(b.ops, func(ctx context.Context, tx pgx.Tx) (Change, error) {
		ch, err := c.deleteTx(ctx, tx, key, 0)
		if err != nil {
			return Change{}, fmt.Errorf("delete %s %q: %w", c.t.name, key, translate(c.t, err, true))
		}
		return ch, nil
	})
}

// ApplyBatch makes b's writes, in order, in one transaction that is one policy
// version with one change-history row per write, if the policy is still at version
// expect (0: whatever it is): else ErrStale, and nothing is written. Any write's
// error rolls back them all. It returns the new version (the current one for an
// empty batch).
func (s *Store) ApplyBatch(ctx context.Context, expect int64, b *Batch) (int64, error) {
	var version int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT version FROM policy_state FOR UPDATE`).Scan(&version); err != nil {
			return fmt.Errorf("read policy version: %w", err)
		}
		if expect != 0 && version != expect {
			return ErrStale
		}
		if len(b.ops) == 0 {
			return nil
		}
		changes := make([]Change, 0, len(b.ops))
		for _, op := range b.ops {
			ch, err := op(ctx, tx)
			if err != nil {
				return err
			}
			changes = append(changes, ch)
		}
		version++
		if _, err := tx.Exec(ctx, `UPDATE policy_state SET version = $1`, version); err != nil {
			return fmt.Errorf("bump policy version: %w", err)
		}
		for _, ch := range changes {
			if err := recordChange(ctx, tx, ch, &version); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return version, nil
}

// PutPrincipalIn adds to b: create the principal p with p.Roles as its manual role
// bindings, or make an existing one's display name, email, disabled flag and manual
// bindings p's. Its kind cannot change, and the bindings from the identity provider
// stay.
func PutPrincipalIn(b *Batch, p Principal) {
	b.ops = append(b.ops, func(ctx context.Context, tx pgx.Tx) (Change, error) {
		before, err := getPrincipal(ctx, tx, p.Name, true)
		if errors.Is(err, ErrNotFound) {
			if _, err := tx.Exec(ctx, `INSERT INTO principals (name, kind, display_name, email, disabled)
				VALUES ($1, $2, $3, $4, $5)`, p.Name, p.Kind, p.DisplayName, p.Email, p.Disabled); err != nil {
				return Change{}, fmt.Errorf("create principal %q: %w", p.Name, principalError(err))
			}
			if err := setBindings(ctx, tx, p.Name, BindingManual, p.Roles); err != nil {
				return Change{}, fmt.Errorf("principal %q: %w", p.Name, err)
			}
			after, err := getPrincipal(ctx, tx, p.Name, false)
			return Change{Action: "create", Resource: "principals", Key: p.Name, After: after}, err
		}
		if err != nil {
			return Change{}, err
		}
		if before.Kind != p.Kind {
			return Change{}, fmt.Errorf("principal %q: %w: its kind is %s and cannot change", p.Name, ErrInvalid, before.Kind)
		}
		if _, err := tx.Exec(ctx, `UPDATE principals SET display_name = $2, email = $3, disabled = $4,
			revision = revision + 1, updated_at = now() WHERE name = $1`, p.Name, p.DisplayName, p.Email, p.Disabled); err != nil {
			return Change{}, fmt.Errorf("update principal %q: %w", p.Name, principalError(err))
		}
		if _, err := tx.Exec(ctx, `DELETE FROM role_bindings WHERE principal = $1 AND source = $2`, p.Name, BindingManual); err != nil {
			return Change{}, fmt.Errorf("replace role bindings: %w", err)
		}
		if err := setBindings(ctx, tx, p.Name, BindingManual, p.Roles); err != nil {
			return Change{}, fmt.Errorf("principal %q: %w", p.Name, err)
		}
		after, err := getPrincipal(ctx, tx, p.Name, false)
		return Change{Action: "update", Resource: "principals", Key: p.Name, Before: before, After: after}, err
	})
}
