package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/shared/keyevents"
)

// Rotation is one row of a deployment's key rotation history: versions, who or what
// triggered it and why, never key material.
type Rotation struct {
	ID            int64      `json:"id"`
	Deployment    string     `json:"deployment"`
	Provider      string     `json:"provider"`
	Kind          string     `json:"kind"`    // keyevents.KindRotated or KindRevoked
	Trigger       string     `json:"trigger"` // schedule, manual, detected, revoke
	Actor         string     `json:"actor"`
	Reason        string     `json:"reason"`
	OldVersion    *int       `json:"old_version"`
	NewVersion    *int       `json:"new_version"`
	OverlapUntil  *time.Time `json:"overlap_until"`
	ProviderKeyID string     `json:"provider_key_id,omitempty"`
	RetiredAt     *time.Time `json:"retired_at"`
	CreatedAt     time.Time  `json:"created_at"`
}

// Rotation triggers.
const (
	TriggerSchedule = "schedule"
	TriggerManual   = "manual"
	TriggerDetected = "detected"
	TriggerRevoke   = "revoke"
)

const rotationCols = `id, deployment, provider, kind, trigger, actor, reason, old_version, new_version,
	overlap_until, provider_key_id, retired_at, created_at`

func scanRotation(row pgx.Row) (Rotation, error) {
	var r Rotation
	err := row.Scan(&r.ID, &r.Deployment, &r.Provider, &r.Kind, &r.Trigger, &r.Actor, &r.Reason, &r.OldVersion,
		&r.NewVersion, &r.OverlapUntil, &r.ProviderKeyID, &r.RetiredAt, &r.CreatedAt)
	return r, err
}

// AddRotation records r and returns it with its id and creation time.
func (s *Store) AddRotation(ctx context.Context, r Rotation) (Rotation, error) {
	row := s.pool.QueryRow(ctx, `INSERT INTO key_rotations
		(deployment, provider, kind, trigger, actor, reason, old_version, new_version, overlap_until, provider_key_id, retired_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING `+rotationCols,
		r.Deployment, r.Provider, r.Kind, r.Trigger, r.Actor, r.Reason, r.OldVersion, r.NewVersion, r.OverlapUntil,
		r.ProviderKeyID, r.RetiredAt)
	out, err := scanRotation(row)
	if err != nil {
		return Rotation{}, fmt.Errorf("record key rotation: %w", err)
	}
	return out, nil
}

// LastRotation returns deployment's latest rotation, and false when it has none.
func (s *Store) LastRotation(ctx context.Context, deployment string) (Rotation, bool, error) {
	r, err := scanRotation(s.pool.QueryRow(ctx, `SELECT `+rotationCols+` FROM key_rotations
		WHERE deployment = $1 ORDER BY id DESC LIMIT 1`, deployment))
	if errors.Is(err, pgx.ErrNoRows) {
		return Rotation{}, false, nil
	}
	if err != nil {
		return Rotation{}, false, fmt.Errorf("read last key rotation: %w", err)
	}
	return r, true, nil
}

// Rotations returns the latest rotations, newest first; of one deployment when
// deployment is not empty.
func (s *Store) Rotations(ctx context.Context, deployment string, limit int) ([]Rotation, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+rotationCols+` FROM key_rotations
		WHERE $1 = '' OR deployment = $1 ORDER BY id DESC LIMIT $2`, deployment, limit)
	if err != nil {
		return nil, fmt.Errorf("list key rotations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Rotation, error) { return scanRotation(r) })
	if err != nil {
		return nil, fmt.Errorf("list key rotations: %w", err)
	}
	return out, nil
}

// DueRetirements returns the rotations whose overlap ended before now and whose old
// key is not retired yet.
func (s *Store) DueRetirements(ctx context.Context, now time.Time) ([]Rotation, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+rotationCols+` FROM key_rotations
		WHERE retired_at IS NULL AND overlap_until IS NOT NULL AND overlap_until <= $1 ORDER BY id`, now)
	if err != nil {
		return nil, fmt.Errorf("list due key retirements: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Rotation, error) { return scanRotation(r) })
	if err != nil {
		return nil, fmt.Errorf("list due key retirements: %w", err)
	}
	return out, nil
}

// MarkRetired records that rotation id's old key was retired at t.
func (s *Store) MarkRetired(ctx context.Context, id int64, t time.Time) error {
	if _, err := s.pool.Exec(ctx, `UPDATE key_rotations SET retired_at = $2 WHERE id = $1 AND retired_at IS NULL`, id, t); err != nil {
		return fmt.Errorf("mark key rotation %d retired: %w", id, err)
	}
	return nil
}

// AddKeyAccess stores a key-access event once: a redelivered event (same id) is
// ignored. It reports whether the event was new.
func (s *Store) AddKeyAccess(ctx context.Context, a keyevents.Access) (bool, error) {
	var version *int
	if a.KeyVersion > 0 {
		version = &a.KeyVersion
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO key_access
		(at, actor_kind, actor_id, region, deployment, path, version, reason, ok, error, event_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (event_id) DO NOTHING`,
		a.At, a.ActorKind, a.ActorID, a.Region, a.Deployment, a.Path, version, a.Reason, a.OK, a.Error, a.ID)
	if err != nil {
		return false, fmt.Errorf("record key access: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// KeyAccess is a stored key-access event.
type KeyAccess struct {
	At         time.Time `json:"at"`
	ActorKind  string    `json:"actor_kind"`
	ActorID    string    `json:"actor_id"`
	Region     string    `json:"region"`
	Deployment string    `json:"deployment"`
	Path       string    `json:"path"`
	Version    *int      `json:"version"`
	Reason     string    `json:"reason"`
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
}

const keyAccessCols = `at, actor_kind, actor_id, region, deployment, path, version, reason, ok, error`

func scanKeyAccess(r pgx.CollectableRow) (KeyAccess, error) {
	var k KeyAccess
	err := r.Scan(&k.At, &k.ActorKind, &k.ActorID, &k.Region, &k.Deployment, &k.Path, &k.Version, &k.Reason, &k.OK, &k.Error)
	return k, err
}

// LastKeyAccess returns, per deployment and actor, the latest key-access event.
func (s *Store) LastKeyAccess(ctx context.Context) ([]KeyAccess, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (deployment, actor_id) `+keyAccessCols+`
		FROM key_access ORDER BY deployment, actor_id, at DESC`)
	if err != nil {
		return nil, fmt.Errorf("list key access: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanKeyAccess)
	if err != nil {
		return nil, fmt.Errorf("list key access: %w", err)
	}
	return out, nil
}

// KeyAccessLog returns the latest key-access events, newest first; of one deployment
// when deployment is not empty.
func (s *Store) KeyAccessLog(ctx context.Context, deployment string, limit int) ([]KeyAccess, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyAccessCols+`
		FROM key_access WHERE $1 = '' OR deployment = $1 ORDER BY at DESC, id DESC LIMIT $2`, deployment, limit)
	if err != nil {
		return nil, fmt.Errorf("list key access: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanKeyAccess)
	if err != nil {
		return nil, fmt.Errorf("list key access: %w", err)
	}
	return out, nil
}

// LatestFetchedVersionBelow returns the highest version below `below` of the key at
// path that a worker fetched for deployment, or 0 when none did.
func (s *Store) LatestFetchedVersionBelow(ctx context.Context, deployment, path string, below int) (int, error) {
	var v *int
	err := s.pool.QueryRow(ctx, `SELECT max(version) FROM key_access
		WHERE deployment = $1 AND path = $2 AND ok AND actor_kind = 'worker' AND version < $3`, deployment, path, below).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("read fetched key versions: %w", err)
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}
