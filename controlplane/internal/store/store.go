// Package store keeps the control plane's state in PostgreSQL (pgx/v5): the policy
// entities the admin API edits, the policy version, and the hashes of admin tokens.
//
// Every mutation of a policy entity runs in one transaction that also increments
// policy_state.version, so a snapshot read at version v contains exactly the changes
// up to v. A Store is safe for concurrent use.
package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Store is the control plane's PostgreSQL state.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects a pool to databaseURL and checks that the server answers.
func Open(ctx context.Context, databaseURL string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// The parse error can quote the URL, password included.
		return nil, fmt.Errorf("parse database URL: invalid connection string")
	}
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		// Read timestamps in UTC whatever the server's or this host's time zone.
		conn.TypeMap().RegisterType(&pgtype.Type{
			Name: "timestamptz", OID: pgtype.TimestamptzOID, Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC},
		})
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	s := &Store{pool: pool}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close releases every connection. It waits for connections in use to be returned.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// Tenants is the tenants collection.
func (s *Store) Tenants() *Collection[policy.Tenant] { return &Collection[policy.Tenant]{s, tenants} }

// Settings is the policy's one set of gateway settings (key policy.SettingsName).
func (s *Store) Settings() *Collection[policy.GatewaySettings] {
	return &Collection[policy.GatewaySettings]{s, gatewaySettings}
}

// Tiers is the tiers collection.
func (s *Store) Tiers() *Collection[policy.Tier] { return &Collection[policy.Tier]{s, tiers} }

// Clients is the clients collection.
func (s *Store) Clients() *Collection[policy.Client] { return &Collection[policy.Client]{s, clients} }

// Providers is the providers collection.
func (s *Store) Providers() *Collection[policy.Provider] {
	return &Collection[policy.Provider]{s, providers}
}

// Deployments is the deployments collection.
func (s *Store) Deployments() *Collection[policy.Deployment] {
	return &Collection[policy.Deployment]{s, deployments}
}

// Models is the models collection.
func (s *Store) Models() *Collection[policy.Model] { return &Collection[policy.Model]{s, models} }

// ResidencyRules is the residency rules collection.
func (s *Store) ResidencyRules() *Collection[policy.ResidencyRule] {
	return &Collection[policy.ResidencyRule]{s, residencyRules}
}

// FallbackMaps is the fallback maps collection.
func (s *Store) FallbackMaps() *Collection[policy.FallbackMap] {
	return &Collection[policy.FallbackMap]{s, fallbackMaps}
}

// RevokedTokens is the revoked tokens collection.
func (s *Store) RevokedTokens() *Collection[policy.RevokedToken] {
	return &Collection[policy.RevokedToken]{s, revokedTokens}
}

// LimitOverrides is the per-client limit overrides collection, keyed by client_id. An
// override is live until its expires_at (by the database clock); an expired one is
// invisible, and Put replaces it as new. Deleting a client deletes its override.
func (s *Store) LimitOverrides() *Collection[policy.LimitOverride] {
	return &Collection[policy.LimitOverride]{s, limitOverrides}
}

// PolicyVersion returns the current policy version.
func (s *Store) PolicyVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.pool.QueryRow(ctx, `SELECT version FROM policy_state`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read policy version: %w", err)
	}
	return v, nil
}

// mutate runs fn in a transaction that also bumps the policy version and records
// the change fn describes, made by the actor of ctx, in the change history; and
// commits.
func (s *Store) mutate(ctx context.Context, fn func(pgx.Tx) (Change, error)) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The policy version first, then the entity rows, as ApplyBatch locks them:
		// one order, so that a write and a configuration apply never deadlock.
		if _, err := tx.Exec(ctx, `SELECT version FROM policy_state FOR UPDATE`); err != nil {
			return fmt.Errorf("lock policy version: %w", err)
		}
		ch, err := fn(tx)
		if err != nil {
			return err
		}
		var version int64
		if err := tx.QueryRow(ctx, `UPDATE policy_state SET version = version + 1 RETURNING version`).Scan(&version); err != nil {
			return fmt.Errorf("bump policy version: %w", err)
		}
		return recordChange(ctx, tx, ch, &version)
	})
}
