package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Snapshot reads the whole policy in one REPEATABLE READ, read-only transaction, so its
// Version and its content always agree. Revoked tokens and limit overrides that have
// expired (by the database clock) are left out.
func (s *Store) Snapshot(ctx context.Context) (*policy.Snapshot, error) {
	snap := &policy.Snapshot{SchemaVersion: policy.SchemaVersion}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, `SELECT version, now() FROM policy_state`).Scan(&snap.Version, &snap.GeneratedAt); err != nil {
				return fmt.Errorf("read policy version: %w", err)
			}
			var err error
			if snap.Tenants, err = tenants.all(ctx, tx); err != nil {
				return err
			}
			if snap.Tiers, err = tiers.all(ctx, tx); err != nil {
				return err
			}
			if snap.Clients, err = clients.all(ctx, tx); err != nil {
				return err
			}
			if snap.Providers, err = providers.all(ctx, tx); err != nil {
				return err
			}
			if snap.Deployments, err = deployments.all(ctx, tx); err != nil {
				return err
			}
			if snap.Models, err = models.all(ctx, tx); err != nil {
				return err
			}
			if snap.ResidencyRules, err = residencyRules.all(ctx, tx); err != nil {
				return err
			}
			if snap.FallbackMaps, err = fallbackMaps.all(ctx, tx); err != nil {
				return err
			}
			if snap.RevokedTokens, err = revokedTokens.all(ctx, tx); err != nil {
				return err
			}
			if snap.LimitOverrides, err = limitOverrides.all(ctx, tx); err != nil {
				return err
			}
			settings, err := gatewaySettings.all(ctx, tx)
			if len(settings) > 0 {
				snap.Settings = &settings[0]
			}
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	snap.GeneratedAt = snap.GeneratedAt.UTC()
	return snap, nil
}
