package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoRole means a person signed in whom neither the identity provider's claims
// nor an administrator gave any role: no principal is made for them.
var ErrNoRole = errors.New("no role")

// ErrNameTaken means a sign-in's principal name belongs to another principal: a
// service account, or a person of another identity-provider subject.
var ErrNameTaken = errors.New("the name belongs to another principal")

// Login is a sign-in in progress (migrations/0015_admin_sessions.sql).
type Login struct {
	State, Nonce, Verifier string
	BrowserHash            []byte // SHA-256 of the cookie of the browser that started it
	ReturnTo               string
	// CLI sign-ins: the loopback port, the CLI's state and PKCE challenge (S256).
	CLIPort                int
	CLIState, CLIChallenge string
	Principal              string // set once the person is authenticated (CLI sign-ins)
	ExpiresAt              time.Time
}

const loginCols = `state, nonce, verifier, browser_hash, return_to, coalesce(cli_port, 0), coalesce(cli_state, ''),
	coalesce(cli_challenge, ''), coalesce(principal, ''), expires_at`

func scanLogin(row pgx.Row) (Login, error) {
	var l Login
	err := row.Scan(&l.State, &l.Nonce, &l.Verifier, &l.BrowserHash, &l.ReturnTo, &l.CLIPort, &l.CLIState, &l.CLIChallenge,
		&l.Principal, &l.ExpiresAt)
	return l, err
}

// CreateLogin stores l, and forgets sign-ins that expired.
func (s *Store) CreateLogin(ctx context.Context, l Login) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM oidc_logins WHERE expires_at < now()`); err != nil {
		return fmt.Errorf("forget expired sign-ins: %w", err)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO oidc_logins (state, nonce, verifier, browser_hash, return_to, cli_port,
		cli_state, cli_challenge, expires_at) VALUES ($1, $2, $3, $4, $5, nullif($6, 0), nullif($7, ''), nullif($8, ''), $9)`,
		l.State, l.Nonce, l.Verifier, l.BrowserHash, l.ReturnTo, l.CLIPort, l.CLIState, l.CLIChallenge, l.ExpiresAt)
	if err != nil {
		return fmt.Errorf("store sign-in: %w", err)
	}
	return nil
}

// TakeLogin returns and forgets the unexpired, not yet authenticated sign-in of
// state: ErrNotFound if there is none (a replayed or forged callback).
func (s *Store) TakeLogin(ctx context.Context, state string) (Login, error) {
	l, err := scanLogin(s.pool.QueryRow(ctx, `DELETE FROM oidc_logins WHERE state = $1 AND principal IS NULL
		AND expires_at > now() RETURNING `+loginCols, state))
	if errors.Is(err, pgx.ErrNoRows) {
		return Login{}, ErrNotFound
	}
	if err != nil {
		return Login{}, fmt.Errorf("take sign-in: %w", err)
	}
	return l, nil
}

// CompleteCLILogin stores that the CLI sign-in l authenticated principal, to be
// exchanged once, before expires, for an API token with the code whose SHA-256 is
// exchangeHash.
func (s *Store) CompleteCLILogin(ctx context.Context, l Login, principal string, exchangeHash []byte, expires time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO oidc_logins (state, nonce, verifier, browser_hash, return_to, cli_port,
		cli_state, cli_challenge, principal, exchange_hash, expires_at)
		VALUES ($1, '', '', $2, '', $3, $4, $5, $6, $7, $8)`,
		l.State, l.BrowserHash, l.CLIPort, l.CLIState, l.CLIChallenge, principal, exchangeHash, expires)
	if err != nil {
		return fmt.Errorf("store CLI sign-in: %w", err)
	}
	return nil
}

// TakeCLIExchange returns and forgets the authenticated CLI sign-in whose exchange
// code has the SHA-256 hash: ErrNotFound if there is none or it expired.
func (s *Store) TakeCLIExchange(ctx context.Context, hash []byte) (Login, error) {
	l, err := scanLogin(s.pool.QueryRow(ctx, `DELETE FROM oidc_logins WHERE exchange_hash = $1 AND principal IS NOT NULL
		AND expires_at > now() RETURNING `+loginCols, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return Login{}, ErrNotFound
	}
	if err != nil {
		return Login{}, fmt.Errorf("take CLI sign-in: %w", err)
	}
	return l, nil
}

// OIDCIdentity is who the identity provider says signed in.
type OIDCIdentity struct {
	Issuer, Subject string
	Name            string // the principal name the claims give
	// MayLink lets the sign-in claim a person principal of Name that no subject
	// has yet (made by an administrator ahead of the first sign-in): only when Name
	// came from the configured, trusted name claim.
	MayLink     bool
	Email       string
	DisplayName string
}

// SignIn finds or makes the person principal of id and replaces its role bindings
// from the identity provider with bindings: the principal with the same issuer and
// subject; else a person of that name that no subject has claimed yet (made by an
// administrator ahead of the first sign-in), now linked; else a new person, if
// bindings give a role (else ErrNoRole). It returns ErrNameTaken when the name is
// another principal's, ErrDisabled when the principal is disabled, and records a new principal or changed roles in the change
// history.
func (s *Store) SignIn(ctx context.Context, id OIDCIdentity, bindings []RoleBinding) (Principal, error) {
	var out Principal
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var name string
		err := tx.QueryRow(ctx, `SELECT name FROM principals WHERE oidc_issuer = $1 AND oidc_subject = $2 FOR UPDATE`,
			id.Issuer, id.Subject).Scan(&name)
		created := false
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			cur, err := getPrincipal(ctx, tx, id.Name, true)
			switch {
			case errors.Is(err, ErrNotFound) && len(bindings) == 0:
				return ErrNoRole
			case errors.Is(err, ErrNotFound):
				_, err := tx.Exec(ctx, `INSERT INTO principals (name, kind, display_name, email, oidc_issuer, oidc_subject)
					VALUES ($1, 'person', $2, $3, $4, $5)`, id.Name, id.DisplayName, id.Email, id.Issuer, id.Subject)
				if err != nil {
					var pg *pgconn.PgError
					if errors.As(err, &pg) && pg.Code == codeUniqueViolation {
						return ErrNameTaken
					}
					return fmt.Errorf("make principal: %w", err)
				}
				created = true
			case err != nil:
				return err
			case cur.Kind != PrincipalPerson || cur.OIDCSubject != "" || !id.MayLink:
				return ErrNameTaken
			default:
				if _, err := tx.Exec(ctx, `UPDATE principals SET oidc_issuer = $2, oidc_subject = $3, revision = revision + 1,
					updated_at = now() WHERE name = $1`, id.Name, id.Issuer, id.Subject); err != nil {
					return fmt.Errorf("link principal: %w", err)
				}
				linked, err := getPrincipal(ctx, tx, id.Name, false)
				if err != nil {
					return err
				}
				if err := recordChange(ctx, tx, Change{Action: "link", Resource: "principals", Key: id.Name,
					Before: cur, After: linked}, nil); err != nil {
					return err
				}
			}
			name = id.Name
		case err != nil:
			return fmt.Errorf("find principal: %w", err)
		}
		before, err := getPrincipal(ctx, tx, name, true)
		if err != nil {
			return err
		}
		if before.Disabled {
			return ErrDisabled
		}
		if _, err := tx.Exec(ctx, `UPDATE principals SET email = CASE WHEN $2 = '' THEN email ELSE $2 END,
			display_name = CASE WHEN $3 = '' THEN display_name ELSE $3 END WHERE name = $1`,
			name, id.Email, id.DisplayName); err != nil {
			return fmt.Errorf("update principal: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM role_bindings WHERE principal = $1 AND source = $2`, name, BindingOIDC); err != nil {
			return fmt.Errorf("replace role bindings: %w", err)
		}
		if err := setBindings(ctx, tx, name, BindingOIDC, bindings); err != nil {
			return err
		}
		if out, err = getPrincipal(ctx, tx, name, false); err != nil {
			return err
		}
		switch {
		case created:
			return recordChange(ctx, tx, Change{Action: "create", Resource: "principals", Key: name, After: out}, nil)
		case !slices.Equal(before.Roles, out.Roles):
			return recordChange(ctx, tx, Change{Action: "set_roles", Resource: "principals", Key: name,
				Before: before.Roles, After: out.Roles}, nil)
		}
		return nil
	})
	return out, err
}

// Session is a console session; its cookie is never stored, only its SHA-256.
type Session struct {
	ID          string        `json:"id"`
	Principal   string        `json:"principal"`
	CSRFToken   string        `json:"-"`
	Source      string        `json:"source"`
	CreatedAt   time.Time     `json:"created_at"`
	LastSeenAt  time.Time     `json:"last_seen_at"`
	IdleTimeout time.Duration `json:"-"`
	ExpiresAt   time.Time     `json:"expires_at"`
}

const sessionCols = `id, principal, csrf_token, source, created_at, last_seen_at, idle_seconds, expires_at`

func scanSession(row pgx.Row) (Session, error) {
	var s Session
	var idle int64
	err := row.Scan(&s.ID, &s.Principal, &s.CSRFToken, &s.Source, &s.CreatedAt, &s.LastSeenAt, &idle, &s.ExpiresAt)
	s.IdleTimeout = time.Duration(idle) * time.Second
	return s, err
}

// CreateSession stores sess with the SHA-256 hash of its cookie, and records the
// sign-in in the change history.
func (s *Store) CreateSession(ctx context.Context, sess Session, hash []byte) error {
	return s.write(ctx, func(tx pgx.Tx) (Change, error) {
		if _, err := tx.Exec(ctx, `DELETE FROM admin_sessions WHERE expires_at < now()`); err != nil {
			return Change{}, fmt.Errorf("forget expired sessions: %w", err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO admin_sessions (id, token_hash, principal, csrf_token, source, idle_seconds, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, sess.ID, hash, sess.Principal, sess.CSRFToken, sess.Source,
			int64(sess.IdleTimeout/time.Second), sess.ExpiresAt)
		if err != nil {
			return Change{}, fmt.Errorf("store session: %w", err)
		}
		return Change{Action: "sign_in", Resource: "sessions", Key: sess.Principal + "/" + sess.ID,
			After: map[string]any{"expires_at": sess.ExpiresAt, "idle_timeout_seconds": int64(sess.IdleTimeout / time.Second)}}, nil
	})
}

// SessionAuth is what a session cookie authenticates.
type SessionAuth struct {
	Session   Session
	Principal Principal
}

// lastSeenEvery is how stale a session's last_seen_at may get before a request
// updates it; the idle timeout is that much less exact.
const lastSeenEvery = 15 * time.Second

// unattendedKey marks a context whose requests a person did not make (WithUnattended).
type unattendedKey struct{}

// WithUnattended marks ctx as a request no person made, such as a console page's
// automatic refresh: AuthenticateSession under it does not record a use, so that an
// open, unattended page does not keep its session from idling out.
func WithUnattended(ctx context.Context) context.Context {
	return context.WithValue(ctx, unattendedKey{}, true)
}

// AuthenticateSession returns the live session whose cookie has the SHA-256 hash,
// with its principal: ErrNotFound if there is none, it has been idle too long or it
// is past its absolute expiry, ErrDisabled if its principal is disabled. It records
// the use for the idle timeout, unless ctx is WithUnattended.
func (s *Store) AuthenticateSession(ctx context.Context, hash []byte) (SessionAuth, error) {
	sess, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM admin_sessions
		WHERE token_hash = $1 AND expires_at > now() AND last_seen_at + make_interval(secs => idle_seconds) > now()`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return SessionAuth{}, ErrNotFound
	}
	if err != nil {
		return SessionAuth{}, fmt.Errorf("look up session: %w", err)
	}
	p, err := getPrincipal(ctx, s.pool, sess.Principal, false)
	if err != nil {
		return SessionAuth{}, err
	}
	if p.Disabled {
		return SessionAuth{}, ErrDisabled
	}
	if unattended, _ := ctx.Value(unattendedKey{}).(bool); !unattended && time.Since(sess.LastSeenAt) > lastSeenEvery {
		if _, err := s.pool.Exec(ctx, `UPDATE admin_sessions SET last_seen_at = now() WHERE id = $1`, sess.ID); err != nil {
			return SessionAuth{}, fmt.Errorf("record session use: %w", err)
		}
	}
	return SessionAuth{Session: sess, Principal: p}, nil
}

// DeleteSession ends the session whose cookie has the SHA-256 hash (sign-out); a
// session that is already gone is not an error.
func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	return s.write(ctx, func(tx pgx.Tx) (Change, error) {
		var id, principal string
		err := tx.QueryRow(ctx, `DELETE FROM admin_sessions WHERE token_hash = $1 RETURNING id, principal`, hash).Scan(&id, &principal)
		if errors.Is(err, pgx.ErrNoRows) {
			return Change{}, nil // nothing to sign out of: nothing to record
		}
		if err != nil {
			return Change{}, fmt.Errorf("end session: %w", err)
		}
		return Change{Action: "sign_out", Resource: "sessions", Key: principal + "/" + id}, nil
	})
}
