// Package identity names the JWT claims and scopes that Portcullis clients present.
// The control plane's development issuer mints tokens with these names and the data
// plane requires them.
package identity

const (
	// ClaimClientID is the claim naming the calling client; it must match a client_id
	// in the policy snapshot.
	ClaimClientID = "client_id"
	// ClaimScope is the space-separated scope claim.
	ClaimScope = "scope"
	// ScopeLLMAccess is the scope every token must carry to call the gateway.
	ScopeLLMAccess = "llm:access"
	// DefaultAudience is the audience the data plane expects unless configured otherwise.
	DefaultAudience = "portcullis-gateway"
	// MaxClockSkewSeconds is the largest clock skew the data plane tolerates on exp and nbf.
	MaxClockSkewSeconds = 30
)
