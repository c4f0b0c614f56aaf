package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/controlplane/changelog"
)

// changesLock is the pg_advisory_xact_lock key that serialises appends to the change
// history, so that its sequence has no gaps and each row links to the one before
// ("pcchange" as 8 bytes).
const changesLock int64 = 0x70636368616e6765

// ChangeRecord is one row of the change history (see package changelog).
type ChangeRecord = changelog.Record

// Actor is who makes a change, as the change history records it.
type Actor struct {
	Principal string // the principal's name; "bootstrap", "break-glass" or "system" without one
	Kind      string // person, service, bootstrap, break_glass or system
	Roles     string // the roles in force, e.g. "admin" or "tenant_admin:acme"
	// Credential says what the request authenticated with: "token:<id>",
	// "session:<id>", "bootstrap" or "break_glass"; never the secret itself.
	Credential string
	Source     string // the client's address
	RequestID  string
}

// systemActor is the actor of a write with no actor in its context: the control
// plane's own components (the anomaly detector's throttles).
var systemActor = Actor{Principal: "system", Kind: "system", Roles: "", Credential: "none", Source: "", RequestID: ""}

type actorKey struct{}

// WithActor returns ctx carrying a, whom every write made with it is recorded as.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorOf returns the actor ctx carries, or the system actor.
func ActorOf(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		return a
	}
	return systemActor
}

// Change is one write, before it is recorded.
type Change struct {
	Action   string // create, update, delete, put, rotate, revoke, ack, …
	Resource string // e.g. "clients", "secrets", "principals"
	Key      string // the resource's key, e.g. the client id
	// Before and After are the resource's state (nil for none); they are recorded as
	// JSON and must hold no secret.
	Before, After any
}

// RecordChange appends ch, made by the actor in ctx, to the change history in a
// transaction of its own, for writes outside the policy (key rotations, alert
// acknowledgements).
func (s *Store) RecordChange(ctx context.Context, ch Change) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return recordChange(ctx, tx, ch, nil)
	})
}

// recordChange appends ch to the change history inside tx; version is the policy
// version the write produced, nil for a write outside the policy.
func recordChange(ctx context.Context, tx pgx.Tx, ch Change, version *int64) error {
	before, err := historyJSON(ch.Before)
	if err != nil {
		return err
	}
	after, err := historyJSON(ch.After)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, changesLock); err != nil {
		return fmt.Errorf("lock change history: %w", err)
	}
	a := ActorOf(ctx)
	r := ChangeRecord{
		At: time.Now().UTC().Truncate(time.Microsecond), Principal: a.Principal, PrincipalKind: a.Kind, Roles: a.Roles,
		Credential: a.Credential, Source: a.Source, RequestID: a.RequestID, Action: ch.Action, Resource: ch.Resource,
		Key: ch.Key, Before: before, After: after, PolicyVersion: version,
	}
	err = tx.QueryRow(ctx, `SELECT seq, hash FROM admin_changes ORDER BY seq DESC LIMIT 1`).Scan(&r.Seq, &r.PrevHash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		r.Seq, r.PrevHash = 0, changelog.Genesis
	case err != nil:
		return fmt.Errorf("read change history head: %w", err)
	}
	r.Seq++
	r.Hash = changelog.Link(r.PrevHash, r.Canonical())
	_, err = tx.Exec(ctx, `INSERT INTO admin_changes (seq, at, principal, principal_kind, roles, credential, source,
		request_id, action, resource, resource_key, before, after, policy_version, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		r.Seq, r.At, r.Principal, r.PrincipalKind, r.Roles, r.Credential, r.Source, r.RequestID, r.Action, r.Resource,
		r.Key, nullText(before), nullText(after), r.PolicyVersion, r.PrevHash, r.Hash)
	if err != nil {
		return fmt.Errorf("record change: %w", err)
	}
	return nil
}

// historyJSON is v's compact JSON, nil for nil.
func historyJSON(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode change: %w", err)
	}
	if string(b) == "null" {
		return nil, nil
	}
	return b, nil
}

func nullText(b json.RawMessage) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

// ChangeFilter selects changes: by resource, by principal, from and to (to
// exclusive; zero for no bound), after a sequence number, at most Limit of them.
type ChangeFilter struct {
	Resource  string
	Principal string
	From, To  time.Time
	AfterSeq  int64
	Limit     int
	// Newest lists newest first, from BeforeSeq down when it is set.
	Newest    bool
	BeforeSeq int64
}

const changeCols = `seq, at, principal, principal_kind, roles, credential, source, request_id, action, resource,
	resource_key, before, after, policy_version, prev_hash, hash`

// ChangeResources are the resources the change history holds changes of, sorted.
func (s *Store) ChangeResources(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT resource FROM admin_changes ORDER BY resource`)
	if err != nil {
		return nil, fmt.Errorf("change resources: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("change resources: %w", err)
	}
	return out, nil
}

// Changes returns the changes f selects, oldest first (newest first with f.Newest).
func (s *Store) Changes(ctx context.Context, f ChangeFilter) ([]ChangeRecord, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Resource != "" {
		add("resource = $%d", f.Resource)
	}
	if f.Principal != "" {
		add("principal = $%d", f.Principal)
	}
	if !f.From.IsZero() {
		add("at >= $%d", f.From)
	}
	if !f.To.IsZero() {
		add("at < $%d", f.To)
	}
	add("seq > $%d", f.AfterSeq)
	order := "seq"
	if f.Newest {
		order = "seq DESC"
		if f.BeforeSeq > 0 {
			add("seq < $%d", f.BeforeSeq)
		}
	}
	q := `SELECT ` + changeCols + ` FROM admin_changes WHERE ` + strings.Join(where, " AND ") + ` ORDER BY ` + order
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list changes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ChangeRecord, error) {
		var r ChangeRecord
		var before, after *string
		err := row.Scan(&r.Seq, &r.At, &r.Principal, &r.PrincipalKind, &r.Roles, &r.Credential, &r.Source,
			&r.RequestID, &r.Action, &r.Resource, &r.Key, &before, &after, &r.PolicyVersion, &r.PrevHash, &r.Hash)
		if before != nil {
			r.Before = json.RawMessage(*before)
		}
		if after != nil {
			r.After = json.RawMessage(*after)
		}
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("list changes: %w", err)
	}
	return out, nil
}
