package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Principal kinds.
const (
	PrincipalPerson  = "person"
	PrincipalService = "service"
)

// Role binding sources: set through the admin API, or taken from the identity
// provider's claims at each sign-in.
const (
	BindingManual = "manual"
	BindingOIDC   = "oidc"
)

// Principal is a person or a service account that administers the gateway.
type Principal struct {
	Name        string        `json:"name"`
	Kind        string        `json:"kind"`
	DisplayName string        `json:"display_name"`
	Email       string        `json:"email"`
	OIDCIssuer  string        `json:"oidc_issuer,omitempty"`
	OIDCSubject string        `json:"oidc_subject,omitempty"`
	Disabled    bool          `json:"disabled"`
	Roles       []RoleBinding `json:"roles"`
	Revision    int64         `json:"revision"`
	CreatedAt   time.Time     `json:"created_at"`
	UpdatedAt   time.Time     `json:"updated_at"`
}

// RoleBinding gives a principal a role, tenant_admin on one tenant.
type RoleBinding struct {
	Role   string `json:"role"`
	Tenant string `json:"tenant,omitempty"`
	Source string `json:"source"`
}

// APIToken is an admin API token's record; the token itself is never stored.
type APIToken struct {
	ID         string     `json:"id"`
	Principal  string     `json:"principal"`
	Name       string     `json:"name"`
	Role       string     `json:"role,omitempty"` // narrows the token to one of the principal's roles
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	RevokedBy  string     `json:"revoked_by,omitempty"`
}

// ErrDisabled means the principal exists but is disabled.
var ErrDisabled = errors.New("principal is disabled")

const principalCols = `name, kind, display_name, email, coalesce(oidc_issuer, ''), coalesce(oidc_subject, ''),
	disabled, revision, created_at, updated_at`

func scanPrincipal(row pgx.Row) (Principal, error) {
	var p Principal
	err := row.Scan(&p.Name, &p.Kind, &p.DisplayName, &p.Email, &p.OIDCIssuer, &p.OIDCSubject, &p.Disabled,
		&p.Revision, &p.CreatedAt, &p.UpdatedAt)
	return p, err
}

// querier is what both a pool and a transaction answer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// bindingsOf reads the role bindings of the named principals.
func bindingsOf(ctx context.Context, q querier, names []string) (map[string][]RoleBinding, error) {
	rows, err := q.Query(ctx, `SELECT principal, role, coalesce(tenant, ''), source FROM role_bindings
		WHERE principal = ANY($1) ORDER BY principal, role, tenant, source`, names)
	if err != nil {
		return nil, fmt.Errorf("read role bindings: %w", err)
	}
	defer rows.Close()
	out := make(map[string][]RoleBinding, len(names))
	for rows.Next() {
		var name string
		var b RoleBinding
		if err := rows.Scan(&name, &b.Role, &b.Tenant, &b.Source); err != nil {
			return nil, fmt.Errorf("read role bindings: %w", err)
		}
		out[name] = append(out[name], b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read role bindings: %w", err)
	}
	return out, nil
}

func getPrincipal(ctx context.Context, q querier, name string, lock bool) (Principal, error) {
	sql := `SELECT ` + principalCols + ` FROM principals WHERE name = $1`
	if lock {
		sql += ` FOR UPDATE`
	}
	p, err := scanPrincipal(q.QueryRow(ctx, sql, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, ErrNotFound
	}
	if err != nil {
		return Principal{}, fmt.Errorf("read principal: %w", err)
	}
	b, err := bindingsOf(ctx, q, []string{name})
	if err != nil {
		return Principal{}, err
	}
	p.Roles = orEmpty(b[name])
	return p, nil
}

func orEmpty(b []RoleBinding) []RoleBinding {
	if b == nil {
		return []RoleBinding{}
	}
	return b
}

// Principal returns the principal with name and its role bindings, or ErrNotFound.
func (s *Store) Principal(ctx context.Context, name string) (Principal, error) {
	return getPrincipal(ctx, s.pool, name, false)
}

// Principals returns every principal with its role bindings, by name.
func (s *Store) Principals(ctx context.Context) ([]Principal, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+principalCols+` FROM principals ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list principals: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Principal, error) { return scanPrincipal(r) })
	if err != nil {
		return nil, fmt.Errorf("list principals: %w", err)
	}
	names := make([]string, len(out))
	for i, p := range out {
		names[i] = p.Name
	}
	b, err := bindingsOf(ctx, s.pool, names)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Roles = orEmpty(b[out[i].Name])
	}
	return out, nil
}

// write runs fn in a transaction and records the change it describes, made by the
// actor of ctx, outside the policy (no policy version); a change without an action
// is not recorded (fn changed nothing).
func (s *Store) write(ctx context.Context, fn func(pgx.Tx) (Change, error)) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		ch, err := fn(tx)
		if err != nil || ch.Action == "" {
			return err
		}
		return recordChange(ctx, tx, ch, nil)
	})
}

// CreatePrincipal stores p (its Roles as manual bindings) and returns it as stored.
// It returns a *DuplicateError if the name is taken and a *ReferenceError if a
// binding names a tenant that does not exist.
func (s *Store) CreatePrincipal(ctx context.Context, p Principal) (Principal, error) {
	var out Principal
	err := s.write(ctx, func(tx pgx.Tx) (Change, error) {
		_, err := tx.Exec(ctx, `INSERT INTO principals (name, kind, display_name, email, oidc_issuer, oidc_subject, disabled)
			VALUES ($1, $2, $3, $4, nullif($5, ''), nullif($6, ''), $7)`,
			p.Name, p.Kind, p.DisplayName, p.Email, p.OIDCIssuer, p.OIDCSubject, p.Disabled)
		if err != nil {
			return Change{}, principalError(err)
		}
		if err := setBindings(ctx, tx, p.Name, BindingManual, p.Roles); err != nil {
			return Change{}, err
		}
		if out, err = getPrincipal(ctx, tx, p.Name, false); err != nil {
			return Change{}, err
		}
		return Change{Action: "create", Resource: "principals", Key: p.Name, After: out}, nil
	})
	return out, err
}

// UpdatePrincipal applies fn to the principal with name (its display name, email and
// disabled flag are stored; other fields are ignored) and returns it as stored. If
// revision is not zero the stored revision must equal it, else ErrStale.
func (s *Store) UpdatePrincipal(ctx context.Context, name string, revision int64, fn func(*Principal)) (Principal, error) {
	var out Principal
	err := s.write(ctx, func(tx pgx.Tx) (Change, error) {
		before, err := getPrincipal(ctx, tx, name, true)
		if err != nil {
			return Change{}, err
		}
		if revision != 0 && revision != before.Revision {
			return Change{}, ErrStale
		}
		p := before
		fn(&p)
		if _, err := tx.Exec(ctx, `UPDATE principals SET display_name = $2, email = $3, disabled = $4,
			revision = revision + 1, updated_at = now() WHERE name = $1`, name, p.DisplayName, p.Email, p.Disabled); err != nil {
			return Change{}, principalError(err)
		}
		if out, err = getPrincipal(ctx, tx, name, false); err != nil {
			return Change{}, err
		}
		return Change{Action: "update", Resource: "principals", Key: name, Before: before, After: out}, nil
	})
	return out, err
}

// DeletePrincipal deletes the principal with name, its role bindings and its API
// tokens (which stop working at once).
func (s *Store) DeletePrincipal(ctx context.Context, name string, revision int64) error {
	return s.write(ctx, func(tx pgx.Tx) (Change, error) {
		before, err := getPrincipal(ctx, tx, name, true)
		if err != nil {
			return Change{}, err
		}
		if revision != 0 && revision != before.Revision {
			return Change{}, ErrStale
		}
		if _, err := tx.Exec(ctx, `DELETE FROM principals WHERE name = $1`, name); err != nil {
			return Change{}, fmt.Errorf("delete principal: %w", err)
		}
		return Change{Action: "delete", Resource: "principals", Key: name, Before: before}, nil
	})
}

// SetRoles replaces the principal's role bindings of source with bindings and
// returns the principal as stored. It returns a *ReferenceError if a binding names a
// tenant that does not exist.
func (s *Store) SetRoles(ctx context.Context, name, source string, bindings []RoleBinding) (Principal, error) {
	var out Principal
	err := s.write(ctx, func(tx pgx.Tx) (Change, error) {
		before, err := getPrincipal(ctx, tx, name, true)
		if err != nil {
			return Change{}, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM role_bindings WHERE principal = $1 AND source = $2`, name, source); err != nil {
			return Change{}, fmt.Errorf("replace role bindings: %w", err)
		}
		if err := setBindings(ctx, tx, name, source, bindings); err != nil {
			return Change{}, err
		}
		if _, err := tx.Exec(ctx, `UPDATE principals SET revision = revision + 1, updated_at = now() WHERE name = $1`, name); err != nil {
			return Change{}, fmt.Errorf("replace role bindings: %w", err)
		}
		if out, err = getPrincipal(ctx, tx, name, false); err != nil {
			return Change{}, err
		}
		return Change{Action: "set_roles", Resource: "principals", Key: name, Before: before.Roles, After: out.Roles}, nil
	})
	return out, err
}

func setBindings(ctx context.Context, tx pgx.Tx, name, source string, bindings []RoleBinding) error {
	for _, b := range bindings {
		_, err := tx.Exec(ctx, `INSERT INTO role_bindings (principal, role, tenant, source) VALUES ($1, $2, nullif($3, ''), $4)
			ON CONFLICT DO NOTHING`, name, b.Role, b.Tenant, source)
		if err != nil {
			var pg *pgconn.PgError
			if errors.As(err, &pg) && pg.Code == codeForeignKeyViolation {
				return &ReferenceError{Field: "roles.tenant"}
			}
			if errors.As(err, &pg) && pg.Code == codeCheckViolation {
				return fmt.Errorf("%w: %s", ErrInvalid, pg.Message)
			}
			return fmt.Errorf("store role binding: %w", err)
		}
	}
	return nil
}

func principalError(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch {
		case pg.Code == codeUniqueViolation && pg.ConstraintName == "principals_pkey":
			return &DuplicateError{Fields: []string{"name"}}
		case pg.Code == codeUniqueViolation:
			return &DuplicateError{Fields: []string{"oidc_issuer", "oidc_subject"}}
		case pg.Code == codeCheckViolation:
			return fmt.Errorf("%w: %s", ErrInvalid, pg.Message)
		}
	}
	return fmt.Errorf("store principal: %w", err)
}

const tokenCols = `id, principal, name, coalesce(role, ''), created_by, created_at, expires_at, last_used_at, revoked_at,
	coalesce(revoked_by, '')`

func scanToken(row pgx.Row) (APIToken, error) {
	var t APIToken
	err := row.Scan(&t.ID, &t.Principal, &t.Name, &t.Role, &t.CreatedBy, &t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt,
		&t.RevokedAt, &t.RevokedBy)
	return t, err
}

// CreateAPIToken stores t (its ID, principal, name, role, creator and expiry) with the
// SHA-256 hash of the token, and returns it as stored. It returns ErrNotFound if the
// principal does not exist.
func (s *Store) CreateAPIToken(ctx context.Context, t APIToken, hash []byte) (APIToken, error) {
	var out APIToken
	err := s.write(ctx, func(tx pgx.Tx) (Change, error) {
		var err error
		out, err = scanToken(tx.QueryRow(ctx, `INSERT INTO api_tokens (id, principal, name, role, token_hash, created_by, expires_at)
			VALUES ($1, $2, $3, nullif($4, ''), $5, $6, $7) RETURNING `+tokenCols,
			t.ID, t.Principal, t.Name, t.Role, hash, t.CreatedBy, t.ExpiresAt))
		var pg *pgconn.PgError
		if errors.As(err, &pg) && pg.Code == codeForeignKeyViolation {
			return Change{}, ErrNotFound
		}
		if err != nil {
			return Change{}, fmt.Errorf("store API token: %w", err)
		}
		return Change{Action: "create", Resource: "api-tokens", Key: t.Principal + "/" + t.ID, After: out}, nil
	})
	return out, err
}

// APITokens returns the principal's API tokens, newest first, revoked and expired
// ones included.
func (s *Store) APITokens(ctx context.Context, principal string) ([]APIToken, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenCols+` FROM api_tokens WHERE principal = $1 ORDER BY created_at DESC, id`, principal)
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIToken, error) { return scanToken(r) })
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	return out, nil
}

// RevokeAPIToken revokes the principal's token id, recording who revoked it, and
// returns it. Revoking a revoked token changes nothing. It returns ErrNotFound if the
// principal has no such token.
func (s *Store) RevokeAPIToken(ctx context.Context, principal, id string) (APIToken, error) {
	var out APIToken
	err := s.write(ctx, func(tx pgx.Tx) (Change, error) {
		before, err := scanToken(tx.QueryRow(ctx, `SELECT `+tokenCols+` FROM api_tokens WHERE principal = $1 AND id = $2 FOR UPDATE`, principal, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return Change{}, ErrNotFound
		}
		if err != nil {
			return Change{}, fmt.Errorf("revoke API token: %w", err)
		}
		out, err = scanToken(tx.QueryRow(ctx, `UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()),
			revoked_by = coalesce(revoked_by, $3) WHERE principal = $1 AND id = $2 RETURNING `+tokenCols,
			principal, id, ActorOf(ctx).Principal))
		if err != nil {
			return Change{}, fmt.Errorf("revoke API token: %w", err)
		}
		return Change{Action: "revoke", Resource: "api-tokens", Key: principal + "/" + id, Before: before, After: out}, nil
	})
	return out, err
}

// TokenAuth is what an API token authenticates: the token, its principal and the
// principal's role bindings.
type TokenAuth struct {
	Token     APIToken
	Principal Principal
}

// lastUsedEvery is how stale a token's last_used_at may get before a use updates it:
// a busy token is not written on every request.
const lastUsedEvery = time.Minute

// AuthenticateToken returns the live API token whose SHA-256 is hash, with its
// principal: ErrNotFound if there is none, it was revoked or it has expired (by the
// database clock), ErrDisabled if its principal is disabled. It records the use in
// last_used_at, at most once a minute.
func (s *Store) AuthenticateToken(ctx context.Context, hash []byte) (TokenAuth, error) {
	var a TokenAuth
	row := s.pool.QueryRow(ctx, `SELECT `+tokenCols+` FROM api_tokens
		WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()`, hash)
	t, err := scanToken(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, ErrNotFound
	}
	if err != nil {
		return a, fmt.Errorf("look up API token: %w", err)
	}
	p, err := getPrincipal(ctx, s.pool, t.Principal, false)
	if err != nil {
		return a, err
	}
	if p.Disabled {
		return a, ErrDisabled
	}
	if t.LastUsedAt == nil || time.Since(*t.LastUsedAt) > lastUsedEvery {
		if _, err := s.pool.Exec(ctx, `UPDATE api_tokens SET last_used_at = now() WHERE id = $1`, t.ID); err != nil {
			return a, fmt.Errorf("record API token use: %w", err)
		}
	}
	return TokenAuth{Token: t, Principal: p}, nil
}

// AdminTokenKind returns the kind ("bootstrap" or "break_glass") of the admin token
// whose SHA-256 is hash, or ErrNotFound.
func (s *Store) AdminTokenKind(ctx context.Context, hash []byte) (string, error) {
	var kind string
	err := s.pool.QueryRow(ctx, `SELECT kind FROM admin_tokens WHERE token_hash = $1`, hash).Scan(&kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("look up admin token: %w", err)
	}
	return kind, nil
}

// HasAdministrator reports whether an enabled principal holds the admin role.
func (s *Store) HasAdministrator(ctx context.Context) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM role_bindings b JOIN principals p ON p.name = b.principal
		WHERE b.role = 'admin' AND NOT p.disabled)`).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up administrators: %w", err)
	}
	return ok, nil
}

// ClientPlacementUsed reports whether a client of tenant (within ctx's tenant scope)
// has tier and residency ("" for none).
func (s *Store) ClientPlacementUsed(ctx context.Context, tenant, tier, residency string) (bool, error) {
	args := []any{tenant, tier, residency}
	var ok bool
	q := `SELECT EXISTS (SELECT 1 FROM clients WHERE tenant = $1 AND tier = $2 AND coalesce(residency, '') = $3` +
		clients.scoped(ctx, &args) + `)`
	if err := s.pool.QueryRow(ctx, q, args...).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up client placement: %w", err)
	}
	return ok, nil
}
