package auth

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// DefaultTokenCacheSize is how many verified tokens a Verifier remembers unless
// Config.TokenCacheSize says otherwise.
const DefaultTokenCacheSize = 10_000

// verifiedToken is what a full verification established about one token, kept so the
// token's next presentation skips the signature check and the claim parsing. It is
// immutable.
type verifiedToken struct {
	id Identity
	// keys is the JWKS the signature was checked against. The verdict holds only
	// while that same fetch of the JWKS is in use: a refresh, which may have dropped
	// the key, sends the token through a full verification again.
	keys jwk.Set
	// validFrom and validUntil are the instants, to the second, between which iat,
	// nbf and exp (with Skew) let the token through, computed as jwt.Validate does:
	// valid while validFrom <= now < validUntil. validFrom is zero when the token
	// has neither iat nor nbf.
	validFrom, validUntil time.Time
	// expect is the Expectations the token was checked against; the verdict holds
	// only while they are the Verifier's.
	expect *Expectations
}

// newVerifiedToken records tok, just verified against keys, as id. It returns false
// for a token without a usable exp, which is never remembered.
func newVerifiedToken(id Identity, keys jwk.Set, tok jwt.Token) (*verifiedToken, bool) {
	exp := tok.Expiration()
	if exp.IsZero() || exp.Unix() == 0 {
		return nil, false
	}
	vt := &verifiedToken{id: id, keys: keys, validUntil: exp.Truncate(time.Second).Add(Skew)}
	for _, t := range []time.Time{tok.IssuedAt(), tok.NotBefore()} {
		if t.IsZero() || t.Unix() == 0 {
			continue // jwt.Validate ignores these too
		}
		if from := t.Truncate(time.Second).Add(-Skew); from.After(vt.validFrom) {
			vt.validFrom = from
		}
	}
	return vt, true
}

// timely reports whether the token's time claims still let it through at now.
func (vt *verifiedToken) timely(now time.Time) bool {
	now = now.Truncate(time.Second)
	return !now.Before(vt.validFrom) && now.Before(vt.validUntil)
}

// identity returns the remembered identity; the caller may keep and modify it.
func (vt *verifiedToken) identity() Identity {
	id := vt.id
	id.Scopes = append([]string(nil), vt.id.Scopes...)
	return id
}

// tokenDigest is the cache key of a token: its SHA-256, so the cache holds no token.
type tokenDigest [sha256.Size]byte

// tokenCache remembers verified tokens by digest. It holds at most its size in two
// generations: entries go into recent; when recent is full it becomes older and the
// previous older generation is dropped; a hit in older moves the entry back to
// recent. Tokens in use stay, tokens no longer presented age out, and a flood of
// distinct valid tokens cannot grow it. A nil *tokenCache remembers nothing. It is
// safe for concurrent use.
type tokenCache struct {
	half int // the most entries one generation holds

	mu            sync.Mutex // guards recent and older
	recent, older map[tokenDigest]*verifiedToken
}

// newTokenCache returns a cache of at most size entries, or nil if size < 2.
func newTokenCache(size int) *tokenCache {
	if size < 2 {
		return nil
	}
	half := size / 2
	return &tokenCache{half: half, recent: make(map[tokenDigest]*verifiedToken, half)}
}

func (c *tokenCache) get(d tokenDigest) (*verifiedToken, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if vt, ok := c.recent[d]; ok {
		return vt, true
	}
	vt, ok := c.older[d]
	if ok {
		delete(c.older, d)
		c.addLocked(d, vt)
	}
	return vt, ok
}

func (c *tokenCache) put(d tokenDigest, vt *verifiedToken) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.older, d)
	c.addLocked(d, vt)
}

func (c *tokenCache) remove(d tokenDigest) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.recent, d)
	delete(c.older, d)
}

// count is the number of entries, for tests.
func (c *tokenCache) count() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recent) + len(c.older)
}

func (c *tokenCache) addLocked(d tokenDigest, vt *verifiedToken) {
	if _, ok := c.recent[d]; !ok && len(c.recent) >= c.half {
		c.older, c.recent = c.recent, make(map[tokenDigest]*verifiedToken, c.half)
	}
	c.recent[d] = vt
}
