// Package devissuer is Portcullis's development JWT issuer. It lets a dev stack run
// without an external identity provider: it keeps one ES256 signing key under the data
// directory, serves the OpenID discovery document and the public JWKS, and mints client
// tokens carrying the claims the data plane requires (see shared/identity).
//
// In production the data plane's JWKS URL points at a real IdP and this issuer stays off.
// Minted tokens are never logged.
package devissuer
