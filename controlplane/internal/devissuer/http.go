package devissuer

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// Paths the issuer serves. MintPath is relative to the admin group (/admin/v1).
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/.well-known/jwks.json"
	MintPath      = "/tokens"
)

const maxMintBody = 16 << 10

// ClientDirectory tells whether a client exists. The mint endpoint refuses (422) to
// mint for a client_id the policy does not know, so a typo fails loudly instead of
// producing a token every data plane will answer with 403.
// RecordMint records a minted token (its client, id and expiry, never the token) in
// the change history.
type ClientDirectory interface {
	ClientExists(ctx context.Context, clientID string) (bool, error)
	RecordMint(ctx context.Context, clientID, jti string, expiresAt time.Time) error
}

// MintRequest is the body of POST /admin/v1/tokens.
type MintRequest struct {
	ClientID   string `json:"client_id"`
	Scope      string `json:"scope"`       // space-separated; default "llm:access"
	TTLSeconds int64  `json:"ttl_seconds"` // default 3600, at most 86400
	Audience   string `json:"audience"`    // default identity.DefaultAudience
}

// Register mounts the public discovery and JWKS endpoints on e and the mint endpoint
// on admin, which must already require admin authentication.
func (i *Issuer) Register(e *echo.Echo, admin *echo.Group, clients ClientDirectory, log *slog.Logger) {
	e.GET(DiscoveryPath, i.discovery)
	e.GET(JWKSPath, i.jwks)
	admin.POST(MintPath, func(c echo.Context) error { return i.mint(c, clients, log) })
}

func (i *Issuer) discovery(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.JSON(http.StatusOK, map[string]any{
		"issuer":                                i.issuer,
		"jwks_uri":                              i.JWKSURL(),
		"id_token_signing_alg_values_supported": []string{Alg.String()},
		"subject_types_supported":               []string{"public"},
		"response_types_supported":              []string{"token"},
		"claims_supported":                      []string{"iss", "aud", "sub", "client_id", "scope", "iat", "nbf", "exp", "jti"},
	})
}

func (i *Issuer) jwks(c echo.Context) error {
	body, err := json.Marshal(i.public)
	if err != nil {
		return apierr.Wrap(apierr.Internal, err, "internal error")
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.Blob(http.StatusOK, "application/jwk-set+json", body)
}

func (i *Issuer) mint(c echo.Context, clients ClientDirectory, log *slog.Logger) error {
	req, err := decodeMint(c.Request())
	if err != nil {
		return err
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > int64(MaxTTL/time.Second) {
		return &apierr.Error{Code: apierr.ValidationFailed, Message: "invalid token request",
			Fields: []apierr.FieldError{{Field: "ttl_seconds", Message: "must be between 1 and 86400 seconds"}}}
	}
	minted, err := i.Mint(req.ClientID, strings.Fields(req.Scope), time.Duration(req.TTLSeconds)*time.Second, req.Audience)
	if err != nil {
		return err
	}
	ok, err := clients.ClientExists(c.Request().Context(), req.ClientID)
	if err != nil {
		return apierr.Wrap(apierr.Internal, err, "internal error")
	}
	if !ok {
		return &apierr.Error{Code: apierr.ValidationFailed, Message: "invalid token request",
			Fields: []apierr.FieldError{{Field: "client_id", Message: "no such client"}}}
	}
	if err := clients.RecordMint(c.Request().Context(), req.ClientID, minted.JTI, minted.ExpiresAt); err != nil {
		return apierr.Wrap(apierr.Internal, err, "internal error")
	}
	log.Info("dev token minted", "client_id", req.ClientID, "jti", minted.JTI, "expires_at", minted.ExpiresAt)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, minted)
}

func decodeMint(r *http.Request) (MintRequest, error) {
	var req MintRequest
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return req, apierr.New(apierr.UnsupportedMedia, "Content-Type must be application/json")
		}
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxMintBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typ):
			return req, &apierr.Error{Code: apierr.ValidationFailed, Message: "invalid token request",
				Fields: []apierr.FieldError{{Field: typ.Field, Message: "must be a " + typ.Type.String()}}}
		case errors.As(err, &syntax), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return req, apierr.New(apierr.InvalidJSON, "request body is not valid JSON")
		default:
			// Unknown fields and trailing garbage.
			return req, apierr.New(apierr.InvalidJSON, "request body: %s", safeJSONError(err))
		}
	}
	if dec.More() {
		return req, apierr.New(apierr.InvalidJSON, "request body holds more than one JSON value")
	}
	return req, nil
}

// safeJSONError keeps encoding/json's message for unknown fields, which names only the
// field, and hides anything else.
func safeJSONError(err error) string {
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return strings.TrimPrefix(msg, "json: ")
	}
	return "not valid JSON"
}
