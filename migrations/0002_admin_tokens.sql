-- Bootstrap admin tokens. Only the SHA-256 of a token is stored; the token itself is
-- written once to <data dir>/admin-token and never kept anywhere else.
CREATE TABLE admin_tokens (
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
