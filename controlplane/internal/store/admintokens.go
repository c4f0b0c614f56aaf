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

// AdminTokenExists reports whether an admin token with the SHA-256 hash exists.
func (s *Store) AdminTokenExists(ctx context.Context, hash []byte) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM admin_tokens WHERE token_hash = $1)`, hash).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up admin token: %w", err)
	}
	return ok, nil
}

// AddFirstAdminToken stores hash as the admin token if, and only if, none exists yet.
// It reports whether it stored it; of replicas racing at first start exactly one wins.
func (s *Store) AddFirstAdminToken(ctx context.Context, hash []byte) (bool, error) {
	var added bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, adminTokenLock); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO admin_tokens (token_hash)
			SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM admin_tokens)`, hash)
		added = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("add admin token: %w", err)
	}
	return added, nil
}

// ReplaceAdminTokens deletes every admin token and stores hash as the only one.
func (s *Store) ReplaceAdminTokens(ctx context.Context, hash []byte) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, adminTokenLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM admin_tokens`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO admin_tokens (token_hash) VALUES ($1)`, hash)
		return err
	})
	if err != nil {
		return fmt.Errorf("replace admin tokens: %w", err)
	}
	return nil
}
