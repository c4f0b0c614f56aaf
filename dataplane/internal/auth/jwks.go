package auth

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// keySet is the issuer's JWKS, cached and refreshed in the background by jwk.Cache.
// A key id it does not know forces a refresh, but at most one per gap, so a rotated
// key is picked up at once while a flood of made-up key ids cannot hammer the
// issuer. It is safe for concurrent use.
type keySet struct {
	url   string
	cache *jwk.Cache
	gap   time.Duration

	mu       sync.Mutex    // guards inflight and last
	inflight chan struct{} // closed when the running forced refresh ends; nil if none
	last     time.Time     // start of the last forced refresh
}

// newKeySet registers url with a jwk.Cache whose background refresh runs until ctx
// is done.
func newKeySet(ctx context.Context, url string, client jwk.HTTPClient, interval, gap time.Duration) (*keySet, error) {
	cache := jwk.NewCache(ctx, jwk.WithRefreshWindow(interval))
	if err := cache.Register(url, jwk.WithHTTPClient(client), jwk.WithRefreshInterval(interval)); err != nil {
		return nil, fmt.Errorf("register JWKS %s: %w", url, err)
	}
	return &keySet{url: url, cache: cache, gap: gap}, nil
}

// lookup returns the signing key with id kid and the JWKS it was found in. The
// returned reason is set when no key is returned.
func (k *keySet) lookup(ctx context.Context, kid string) (jwk.Key, jwk.Set, Reason) {
	set, err := k.current(ctx)
	if err == nil {
		if key, ok := signingKey(set, kid); ok {
			return key, set, ""
		}
	}
	k.forceRefresh(ctx)
	set, err = k.current(ctx)
	if err != nil {
		return nil, nil, ReasonJWKSUnavailable
	}
	if key, ok := signingKey(set, kid); ok {
		return key, set, ""
	}
	return nil, nil, ReasonUnknownKeyID
}

// current returns the JWKS in use. Each fetch of the JWKS yields a new Set, so two
// results are equal only if no refresh happened in between.
func (k *keySet) current(ctx context.Context) (jwk.Set, error) {
	return k.cache.Get(ctx, k.url)
}

// forceRefresh refetches the JWKS unless another forced refresh ran less than gap
// ago. If one is running, it waits for that one instead.
func (k *keySet) forceRefresh(ctx context.Context) {
	k.mu.Lock()
	if ch := k.inflight; ch != nil {
		k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return
	}
	if !k.last.IsZero() && time.Since(k.last) < k.gap {
		k.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	k.inflight, k.last = ch, time.Now()
	k.mu.Unlock()

	// A failed refresh keeps the keys already cached; the next lookup reports it.
	_, _ = k.cache.Refresh(ctx, k.url)

	k.mu.Lock()
	k.inflight = nil
	k.mu.Unlock()
	close(ch)
}

// signingKey finds kid in set, ignoring keys marked for encryption.
func signingKey(set jwk.Set, kid string) (jwk.Key, bool) {
	key, ok := set.LookupKeyID(kid)
	if !ok {
		return nil, false
	}
	if use := key.KeyUsage(); use != "" && use != string(jwk.ForSignature) {
		return nil, false
	}
	return key, true
}
