package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// scopeList is a repeatable --scope flag; each value may itself hold several
// space-separated scopes.
type scopeList []string

func (s *scopeList) String() string { return strings.Join(*s, " ") }

func (s *scopeList) Set(v string) error {
	*s = append(*s, strings.Fields(v)...)
	return nil
}

// mint asks the control plane's dev issuer for a token and prints only the token.
func (cmd *command) mint(ctx context.Context, args []string) error {
	fs := cmd.newFlags("tokens mint", "tokens mint --client ID [--scope S]... [--ttl 1h] [--audience AUD]")
	clientID := fs.String("client", "", "client_id the token is for (required)")
	var scopes scopeList
	fs.Var(&scopes, "scope", "scope to grant; repeatable (default llm:access)")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime (at most 24h)")
	audience := fs.String("audience", "", "aud claim (default portcullis-gateway)")
	if _, err := cmd.parse(fs, args, 0); err != nil {
		return err
	}
	if *clientID == "" {
		fs.Usage()
		return fmt.Errorf("%w: --client is required", ErrUsage)
	}
	if *ttl < time.Second || *ttl%time.Second != 0 {
		return fmt.Errorf("%w: --ttl %v: must be a whole number of seconds, at least 1s", ErrUsage, *ttl)
	}
	body, err := json.Marshal(map[string]any{
		"client_id":   *clientID,
		"scope":       scopes.String(),
		"ttl_seconds": int64(*ttl / time.Second),
		"audience":    *audience,
	})
	if err != nil {
		return err
	}
	c, err := cmd.client()
	if err != nil {
		return err
	}
	resp, err := c.call(ctx, http.MethodPost, "/tokens", body, nil)
	if err != nil {
		return err
	}
	var minted struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(resp.body, &minted); err != nil || minted.Token == "" {
		return fmt.Errorf("tokens mint: the response holds no token")
	}
	_, err = fmt.Fprintln(cmd.io.Stdout, minted.Token)
	return err
}

// revoke adds a JWT id to the revocation list until it expires.
func (cmd *command) revoke(ctx context.Context, args []string) error {
	fs := cmd.newFlags("tokens revoke", "tokens revoke --jti JTI --expires-at RFC3339 [--reason TEXT]")
	jti := fs.String("jti", "", "the token's jti claim (required)")
	expires := fs.String("expires-at", "", "when the token expires, RFC 3339 (required); the entry is dropped after it")
	reason := fs.String("reason", "", "why it was revoked")
	if _, err := cmd.parse(fs, args, 0); err != nil {
		return err
	}
	if *jti == "" || *expires == "" {
		fs.Usage()
		return fmt.Errorf("%w: --jti and --expires-at are required", ErrUsage)
	}
	at, err := time.Parse(time.RFC3339, *expires)
	if err != nil {
		return fmt.Errorf("%w: --expires-at %q: not RFC 3339 (e.g. 2026-04-14T20:00:00Z)", ErrUsage, *expires)
	}
	body, err := json.Marshal(map[string]any{"jti": *jti, "expires_at": at, "reason": *reason})
	if err != nil {
		return err
	}
	return cmd.show(ctx, http.MethodPost, "/revoked-tokens", body, nil)
}
