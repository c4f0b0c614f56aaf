package auth

import "github.com/portcullis-gw/portcullis/shared/apierr"

// Reason says why a token was rejected. Reasons are logged; clients only ever see
// the generic invalid_token error.
type Reason string

// Reasons a token is rejected.
const (
	ReasonMissing         Reason = "missing_bearer"
	ReasonHeaderTooLarge  Reason = "header_too_large"
	ReasonMalformed       Reason = "malformed"
	ReasonAlgNotAllowed   Reason = "alg_not_allowed"
	ReasonMissingKeyID    Reason = "missing_kid"
	ReasonUnknownKeyID    Reason = "unknown_kid"
	ReasonKeyAlgMismatch  Reason = "key_alg_mismatch"
	ReasonJWKSUnavailable Reason = "jwks_unavailable"
	ReasonBadSignature    Reason = "bad_signature"
	ReasonExpired         Reason = "expired"
	ReasonNotYetValid     Reason = "not_yet_valid"
	ReasonWrongIssuer     Reason = "wrong_issuer"
	ReasonWrongAudience   Reason = "wrong_audience"
	ReasonMissingExpiry   Reason = "missing_exp"
	ReasonMissingClientID Reason = "missing_client_id"
	ReasonMissingScope    Reason = "missing_scope"
	ReasonRevoked         Reason = "revoked"
	ReasonInvalidClaims   Reason = "invalid_claims"
	ReasonMissingJTI      Reason = "missing_jti"       // Config.AllowMissingJTI is off
	ReasonLifetime        Reason = "lifetime_too_long" // exp - iat over Config.MaxLifetime
	ReasonCritical        Reason = "crit_not_supported"
	ReasonWrongType       Reason = "wrong_typ"     // Config.RequiredType
	ReasonMissingClaim    Reason = "missing_claim" // Expectations.RequireClaims
)

// RejectedError is the internal cause of every rejection. Its message carries the
// reason only, never the token or a claim value.
type RejectedError struct {
	Reason Reason
}

func (e *RejectedError) Error() string { return "token rejected: " + string(e.Reason) }

// genericMessage is all a client learns about a rejected token.
const genericMessage = "the bearer token is missing, invalid, expired or revoked"

func reject(r Reason) *apierr.Error {
	return apierr.Wrap(apierr.InvalidToken, &RejectedError{Reason: r}, genericMessage)
}
