-- Console sign-in with OIDC (docs/admin-identity.md "Signing in").

-- A sign-in in progress: the authorization code flow's state, nonce and PKCE
-- verifier, kept here rather than in the replica's memory so that the identity
-- provider's redirect may reach any control-plane replica. A CLI sign-in
-- (`portcullis login`) also holds the loopback port and the CLI's own PKCE
-- challenge; once the person is authenticated, principal and the hash of the
-- one-time exchange code are set, and the CLI trades that code (with its verifier)
-- for an API token. Rows live minutes and are used once.
CREATE TABLE oidc_logins (
    state          text        PRIMARY KEY,
    nonce          text        NOT NULL,
    verifier       text        NOT NULL,
    browser_hash   bytea       NOT NULL,   -- SHA-256 of the pc_login cookie that started it
    return_to      text        NOT NULL DEFAULT '/',
    cli_port       integer,
    cli_state      text,
    cli_challenge  text,
    principal      text REFERENCES principals (name) ON DELETE CASCADE ON UPDATE CASCADE,
    exchange_hash  bytea UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX oidc_logins_expires_idx ON oidc_logins (expires_at);

-- A console session: the cookie's SHA-256, the CSRF token every state-changing
-- request must echo, an idle timeout and an absolute expiry.
CREATE TABLE admin_sessions (
    id            text        PRIMARY KEY,
    token_hash    bytea       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    principal     text        NOT NULL REFERENCES principals (name) ON DELETE CASCADE ON UPDATE CASCADE,
    csrf_token    text        NOT NULL,
    source        text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    idle_seconds  integer     NOT NULL CHECK (idle_seconds > 0),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX admin_sessions_principal_idx ON admin_sessions (principal);
CREATE INDEX admin_sessions_expires_idx ON admin_sessions (expires_at);
