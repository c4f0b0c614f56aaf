package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// adminTokenLock is the pg_advisory_xact_lock key that serialises changes to the admin
// tokens across replicas ("pcadmtok" as 8 bytes).
const adminTokenLock int64 = 0x7063616d64746f6b

// HasAdminToken reports whether any admin token exists.
func (s *Store) HasAdminToken(ctx context.Context) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM admin_tokens)`).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up admin tokens: %w", err)
	}
	return ok, nil
}

// HasPrincipals reports whether any principal exists.
func (s *Store) HasPrincipals(ctx context.Context) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM principals)`).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up principals: %w", err)
	}
	return ok, nil
}

// AddFirstAdminToken stores hash as the bootstrap admin token if, and only if, no
// admin token and no principal exists yet (a first start). It reports whether it
// stored it; of replicas racing at first start exactly one wins.
func (s *Store) AddFirstAdminToken(ctx context.Context, hash []byte) (bool, error) {
	var added bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, adminTokenLock); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO admin_tokens (token_hash, kind)
			SELECT $1, 'bootstrap' WHERE NOT EXISTS (SELECT 1 FROM admin_tokens)
			AND NOT EXISTS (SELECT 1 FROM principals)`, hash)
		added = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("add admin token: %w", err)
	}
	return added, nil
}

// Admin token kinds: the bootstrap token may only manage principals; the
// break-glass token may do everything.
const (
	AdminTokenBootstrap  = "bootstrap"
	AdminTokenBreakGlass = "break_glass"
)

// ReplaceAdminTokens deletes every admin token and stores hash as the only one, a
// break-glass token, recording the reset in the change history.
func (s *Store) ReplaceAdminTokens(ctx context.Context, hash []byte) error {
	err := s.write(ctx, func(tx pgx.Tx) (Change, error) {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, adminTokenLock); err != nil {
			return Change{}, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM admin_tokens`); err != nil {
			return Change{}, err
		}
		_, err := tx.Exec(ctx, `INSERT INTO admin_tokens (token_hash, kind) VALUES ($1, $2)`, hash, AdminTokenBreakGlass)
		return Change{Action: "reset", Resource: "admin-tokens", Key: AdminTokenBreakGlass,
			After: map[string]string{"kind": AdminTokenBreakGlass}}, err
	})
	if err != nil {
		return fmt.Errorf("replace admin tokens: %w", err)
	}
	return nil
}

// DisableAdminTokens deletes every admin token, bootstrap and break-glass,
// reporting how many there were, and records it in the change history.
func (s *Store) DisableAdminTokens(ctx context.Context) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx pgx.Tx) (Change, error) {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, adminTokenLock); err != nil {
			return Change{}, err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM admin_tokens`)
		n = tag.RowsAffected()
		return Change{Action: "disable", Resource: "admin-tokens", Key: "all", Before: map[string]any{"count": n}}, err
	})
	if err != nil {
		return 0, fmt.Errorf("disable admin tokens: %w", err)
	}
	return n, nil
}
