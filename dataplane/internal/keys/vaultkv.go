package keys

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/portcullis-gw/portcullis/shared/keyevents"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// retryLoadAfter is how long a source whose key could not be read waits before a
// request may try Vault again, so that a Vault outage costs one read per second, not
// one per request.
const retryLoadAfter = time.Second

// kvSource is a deployment's key in KV v2 (key_source vault): the current version,
// and during a rotation's overlap the previous one until its end. Versions the
// rotator marked revoked are never used. It reads Vault only at startup, on key
// events, when the periodic metadata check finds a new version, and when the
// upstream refuses the current key. Safe for concurrent use.
type kvSource struct {
	m          *Manager
	deployment string
	path       string

	mu       sync.RWMutex // guards the fields below
	cur      kvKey
	prev     kvKey // valid until prev.until
	revoked  map[int]bool
	lastErr  error
	failedAt time.Time
	// dropped is why the key was dropped without a successor yet (a revocation), for
	// the key-access event of the read that finds one.
	dropped string

	load sync.Mutex // serializes reads of Vault
}

type kvKey struct {
	key     string
	version int
	until   time.Time // prev only
}

func newKVSource(m *Manager, d policy.Deployment) *kvSource {
	return &kvSource{m: m, deployment: d.Name, path: d.KeyPath, revoked: map[int]bool{}}
}

// Key returns the current key, reading Vault first if none is held yet.
func (s *kvSource) Key(ctx context.Context) (string, error) {
	s.mu.RLock()
	key, lastErr, failedAt := s.cur.key, s.lastErr, s.failedAt
	s.mu.RUnlock()
	if key != "" {
		return key, nil
	}
	if lastErr != nil && time.Since(failedAt) < retryLoadAfter {
		return "", lastErr
	}
	s.mu.RLock()
	reason := s.dropped
	s.mu.RUnlock()
	if reason == "" {
		reason = keyevents.ReasonStartup
	}
	s.refresh(ctx, reason)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cur.key == "" {
		if s.lastErr == nil {
			return "", fmt.Errorf("deployment %s: %w", s.deployment, ErrRevoked)
		}
		return "", s.lastErr
	}
	return s.cur.key, nil
}

// Other returns the key to retry with when the upstream refused refused: the
// previous key while its overlap lasts, or the current one when the refused key was
// the previous.
func (s *kvSource) Other(refused string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	prevValid := s.prev.key != "" && time.Now().Before(s.prev.until)
	switch {
	case refused == s.cur.key && prevValid:
		return s.prev.key, true
	case refused == s.prev.key && s.cur.key != "" && s.cur.key != refused:
		return s.cur.key, true
	}
	return "", false
}

// Version returns the version of key: the current or the previous one.
func (s *kvSource) Version(key string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch key {
	case s.cur.key:
		return s.cur.version
	case s.prev.key:
		return s.prev.version
	}
	return 0
}

// Refused checks Vault for a newer key, in the background: the upstream refused the
// one in use, so it may have been rotated without this worker hearing of it.
func (s *kvSource) Refused() {
	s.m.async(func(ctx context.Context) { s.refresh(ctx, keyevents.ReasonRetry401) })
}

// onEvent follows a rotation or revocation of this deployment's key. A revocation
// drops the revoked versions at once, before Vault is asked for their successor.
func (s *kvSource) onEvent(ctx context.Context, e keyevents.Event) {
	reason := keyevents.ReasonRotation
	if e.Kind == keyevents.KindRevoked {
		reason = keyevents.ReasonRevocation
		s.mu.Lock()
		if e.PreviousVersion > 0 {
			s.revoked[e.PreviousVersion] = true
		}
		s.prev = kvKey{}
		if e.KeyVersion != s.cur.version {
			s.cur = kvKey{} // never send the revoked key again, even while Vault is asked
			s.dropped = reason
		}
		s.mu.Unlock()
	}
	s.refresh(ctx, reason)
}

// refresh reads the secret's metadata and, if the current version changed, the new
// key; at startup (no key held) it also reads the previous version while its
// overlap lasts, so a worker that starts mid-rotation can retry a refused key.
func (s *kvSource) refresh(ctx context.Context, reason string) {
	s.load.Lock()
	defer s.load.Unlock()
	v := s.m.o.Vault
	meta, err := v.ReadKVMeta(ctx, s.path)
	if err != nil {
		s.fail(err)
		return
	}
	now := time.Now()
	s.mu.RLock()
	cur, prev := s.cur, s.prev
	s.mu.RUnlock()
	revoked := meta.Revoked
	for ver := range s.revokedCopy() {
		revoked[ver] = true
	}
	usable := func(ver int) bool { return ver > 0 && !revoked[ver] && !meta.Gone[ver] }

	next := cur
	if !usable(meta.Current) {
		next = kvKey{}
	} else if cur.version != meta.Current || cur.key == "" {
		k, err := v.ReadKV(ctx, s.path, meta.Current)
		s.m.access(s.deployment, s.path, meta.Current, reason, err)
		if err != nil {
			s.fail(err)
			return
		}
		next = kvKey{key: k.Key, version: k.Version}
	}

	nextPrev := kvKey{}
	if p := meta.Previous; usable(p) && p != next.version && now.Before(meta.PreviousValidUntil) {
		switch {
		case cur.version == p && cur.key != "":
			nextPrev = kvKey{key: cur.key, version: p, until: meta.PreviousValidUntil}
		case prev.version == p && prev.key != "":
			nextPrev = kvKey{key: prev.key, version: p, until: meta.PreviousValidUntil}
		default:
			k, err := v.ReadKV(ctx, s.path, p)
			s.m.access(s.deployment, s.path, p, reason, err)
			if err == nil {
				nextPrev = kvKey{key: k.Key, version: p, until: meta.PreviousValidUntil}
			}
		}
	}

	s.mu.Lock()
	if next.version != s.cur.version && s.cur.key != "" {
		s.m.o.Log.Info("deployment key changed", "deployment", s.deployment, "path", s.path,
			"from_version", s.cur.version, "to_version", next.version, "reason", reason,
			"previous_valid_until", nextPrev.until)
	}
	s.cur, s.prev, s.lastErr = next, nextPrev, nil
	if next.key != "" {
		s.dropped = ""
	}
	for ver := range revoked {
		s.revoked[ver] = true
	}
	if next.key == "" {
		s.lastErr = fmt.Errorf("deployment %s: %w (version %d of %s)", s.deployment, ErrRevoked, meta.Current, s.path)
		s.failedAt = time.Now()
	}
	s.mu.Unlock()
}

func (s *kvSource) revokedCopy() map[int]bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[int]bool, len(s.revoked))
	for k := range s.revoked {
		out[k] = true
	}
	return out
}

// fail records a failed read; a key already held keeps serving.
func (s *kvSource) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr, s.failedAt = fmt.Errorf("deployment %s: %w", s.deployment, err), time.Now()
	s.m.o.Log.Warn("reading the deployment's key from vault failed", "deployment", s.deployment, "path", s.path, "err", err)
}

func (s *kvSource) close() {}
