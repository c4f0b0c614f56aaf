package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/checkpoint"
)

// AuditRegionHead is a region's chain head (AuditHead) with its region.
type AuditRegionHead struct {
	Region string
	AuditHead
}

// UncheckpointedAuditHeads returns the chain head of every region whose head moved
// past its newest checkpoint (or that has none yet), read at At (the database's
// clock), in region order. Regions without events are left out.
func (s *Store) UncheckpointedAuditHeads(ctx context.Context) ([]AuditRegionHead, error) {
	rows, err := s.pool.Query(ctx, `SELECT c.region, c.seq, c.head, now() FROM audit_chain c
		WHERE c.seq > COALESCE((SELECT max(k.seq) FROM audit_checkpoints k WHERE k.region = c.region), 0)
		ORDER BY c.region`)
	if err != nil {
		return nil, fmt.Errorf("read audit chain heads: %w", err)
	}
	heads, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditRegionHead, error) {
		var h AuditRegionHead
		err := r.Scan(&h.Region, &h.Seq, &h.Hash, &h.At)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("read audit chain heads: %w", err)
	}
	return heads, nil
}

// AddAuditCheckpoint keeps c, a signed chain checkpoint, unless the region already
// has one at its seq. It reports whether c was added: replicas signing the same
// head at once add one checkpoint, and only the one that added it publishes it.
func (s *Store) AddAuditCheckpoint(ctx context.Context, c checkpoint.Checkpoint) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO audit_checkpoints (region, seq, chain_hash, at, key_id, sig)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (region, seq) DO NOTHING`,
		c.Region, c.Seq, c.ChainHash, c.At, c.KeyID, c.Sig)
	if err != nil {
		return false, fmt.Errorf("add audit checkpoint of region %s at seq %d: %w", c.Region, c.Seq, err)
	}
	return tag.RowsAffected() == 1, nil
}

// UnpublishedAuditCheckpoints returns up to limit checkpoints not yet marked
// published, oldest first.
func (s *Store) UnpublishedAuditCheckpoints(ctx context.Context, limit int) ([]checkpoint.Checkpoint, error) {
	return s.auditCheckpoints(ctx, `SELECT region, seq, chain_hash, at, key_id, sig FROM audit_checkpoints
		WHERE published_at IS NULL ORDER BY at, region, seq LIMIT $1`, limit)
}

// MarkAuditCheckpointPublished records that region's checkpoint at seq was published.
func (s *Store) MarkAuditCheckpointPublished(ctx context.Context, region string, seq int64) error {
	if _, err := s.pool.Exec(ctx, `UPDATE audit_checkpoints SET published_at = now()
		WHERE region = $1 AND seq = $2 AND published_at IS NULL`, region, seq); err != nil {
		return fmt.Errorf("mark audit checkpoint published: %w", err)
	}
	return nil
}

// AuditCheckpoints returns up to limit of region's checkpoints, newest first.
func (s *Store) AuditCheckpoints(ctx context.Context, region string, limit int) ([]checkpoint.Checkpoint, error) {
	return s.auditCheckpoints(ctx, `SELECT region, seq, chain_hash, at, key_id, sig FROM audit_checkpoints
		WHERE region = $2 ORDER BY seq DESC LIMIT $1`, limit, region)
}

func (s *Store) auditCheckpoints(ctx context.Context, query string, args ...any) ([]checkpoint.Checkpoint, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read audit checkpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (checkpoint.Checkpoint, error) {
		c := checkpoint.Checkpoint{V: checkpoint.Version}
		var at time.Time
		err := r.Scan(&c.Region, &c.Seq, &c.ChainHash, &at, &c.KeyID, &c.Sig)
		c.At = at.UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read audit checkpoints: %w", err)
	}
	return out, nil
}
