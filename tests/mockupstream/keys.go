package mockupstream

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"time"
)

// keySet is the set of keys the mock accepts, each until a moment or for good. It is
// safe for concurrent use.
//
// Checking is off until the first key is accepted: then every request must carry an
// accepted key, and stays so even when every key has been revoked or has expired (a
// revoked key must keep failing; it never reopens the mock to any key).
type keySet struct {
	mu    sync.Mutex           // guards the fields below
	on    bool                 // a key was accepted once: requests must carry one
	until map[string]time.Time // accepted keys; the zero time means for good
}

// accept accepts key until the moment until, or for good when until is zero. It
// replaces the key's earlier end.
func (k *keySet) accept(key string, until time.Time) {
	if key == "" {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.until == nil {
		k.until = make(map[string]time.Time)
	}
	k.until[key] = until
	k.on = true
}

// revoke stops accepting key; checking stays on.
func (k *keySet) revoke(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.until, key)
}

// allows reports whether a request with key may pass at now: always while checking
// is off, else only with a key accepted until after now.
func (k *keySet) allows(key string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.on {
		return true
	}
	until, ok := k.until[key]
	if ok && !until.IsZero() && !now.Before(until) {
		delete(k.until, key)
		return false
	}
	return ok
}

// count returns the number of keys accepted at now.
func (k *keySet) count(now time.Time) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, until := range k.until {
		if !until.IsZero() && !now.Before(until) {
			delete(k.until, key)
		}
	}
	return len(k.until)
}

// AcceptKey makes the mock accept key from now on, for good (replacing an end set by
// AcceptKeyUntil). Once a key has been accepted, every model request must carry an
// accepted key: "Authorization: Bearer <key>" on the OpenAI endpoints, "x-api-key:
// <key>" on /v1/messages. That stays so after the last key is revoked or expires: the
// mock then refuses every request rather than reopening to any key. An empty key is
// ignored. Options.RequireKey is the first accepted key.
func (s *Server) AcceptKey(key string) {
	s.keys.accept(key, time.Time{})
}

// AcceptKeyUntil makes the mock accept key until t, and refuse it from t on, as a
// provider honours an old key only during a rotation's overlap. It replaces the key's
// earlier end; a t already past refuses the key at once. Otherwise it is AcceptKey.
func (s *Server) AcceptKeyUntil(key string, t time.Time) {
	if t.IsZero() { // the zero time would mean "for good" inside the set
		t = time.Unix(0, 1)
	}
	s.keys.accept(key, t)
}

// RevokeKey makes the mock refuse key from now on, as a provider does with a deleted
// key. Key checking stays on even when no key is left.
func (s *Server) RevokeKey(key string) {
	s.keys.revoke(key)
}

// AcceptedKeys returns the number of keys accepted now. It never reveals the keys.
func (s *Server) AcceptedKeys() int {
	return s.keys.count(time.Now())
}

// Fingerprint returns a short fingerprint of key, safe to record, log and compare: the
// first 8 hex digits of its SHA-256, or "" for no key. Request.KeyFingerprint is
// Fingerprint of the key a request carried.
func Fingerprint(key string) string {
	if key == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}

// requestKey returns the key a request carried in dialect d: the x-api-key header on
// /v1/messages, else the Bearer token of the Authorization header. ok is false when
// the request carried none (no header, or an Authorization header that is not Bearer).
func requestKey(h http.Header, d dialect) (key string, ok bool) {
	if d == anthropicDialect {
		key = h.Get("X-Api-Key")
		return key, key != ""
	}
	key, ok = strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	if !ok || key == "" {
		return "", false
	}
	return key, true
}

// maskKey renders key the way OpenAI's 401 does, with all but its last 4 characters
// masked; a key shorter than 8 characters is masked whole, so that no key is ever
// echoed in full. The mask is at most 40 characters long.
func maskKey(key string) string {
	const shown, minLen, maxMask = 4, 8, 40
	if len(key) < minLen {
		return strings.Repeat("*", len(key))
	}
	return strings.Repeat("*", min(len(key)-shown, maxMask)) + key[len(key)-shown:]
}
