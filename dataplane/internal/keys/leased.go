package keys

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/portcullis-gw/portcullis/shared/keyevents"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// renewAtFraction is how far into a non-renewable lease the key is read again.
const renewAtFraction = 2.0 / 3

// leasedSource is a deployment's key read from a path that leases it
// (key_source vault_dynamic): Vault's dynamic secrets, or a KV v1 secret with a ttl.
// A renewable lease is renewed with a LifetimeWatcher while Vault allows; when it
// will not (the lease reached its max TTL, or renewal was refused), and for a lease
// that cannot be renewed at two thirds of its life, a fresh key is read before the
// old one expires. The old key stays valid for a refused-key retry until its lease
// ends. Safe for concurrent use.
type leasedSource struct {
	m          *Manager
	deployment string
	path       string

	mu       sync.RWMutex // guards the fields below
	cur      leasedKey
	prev     leasedKey
	lastErr  error
	failedAt time.Time
	gen      int // bumped by every new key; a keeper of an older one stops

	load   sync.Mutex // serializes reads of Vault
	stop   chan struct{}
	closed sync.Once
}

type leasedKey struct {
	key     string
	expires time.Time // zero: no lease
}

func (k leasedKey) valid(now time.Time) bool {
	return k.key != "" && (k.expires.IsZero() || now.Before(k.expires))
}

func newLeasedSource(m *Manager, d policy.Deployment) *leasedSource {
	return &leasedSource{m: m, deployment: d.Name, path: d.KeyPath, stop: make(chan struct{})}
}

// Key returns the current key, reading Vault first if none is held (or it expired).
func (s *leasedSource) Key(ctx context.Context) (string, error) {
	now := time.Now()
	s.mu.RLock()
	cur, lastErr, failedAt := s.cur, s.lastErr, s.failedAt
	s.mu.RUnlock()
	if cur.valid(now) {
		return cur.key, nil
	}
	if lastErr != nil && time.Since(failedAt) < retryLoadAfter {
		return "", lastErr
	}
	if err := s.read(ctx, keyevents.ReasonStartup); err != nil {
		return "", err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur.key, nil
}

// Other returns the previous key while its lease lasts, for one retry of a refused
// current key (or the current one if the previous was refused).
func (s *leasedSource) Other(refused string) (string, bool) {
	now := time.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch {
	case refused == s.cur.key && s.prev.valid(now) && s.prev.key != refused:
		return s.prev.key, true
	case refused == s.prev.key && s.cur.valid(now) && s.cur.key != refused:
		return s.cur.key, true
	}
	return "", false
}

// Refused reads a fresh key in the background.
func (s *leasedSource) Refused() {
	s.m.async(func(ctx context.Context) { _ = s.read(ctx, keyevents.ReasonRetry401) })
}

func (s *leasedSource) refresh(context.Context, string) {} // leases keep themselves

// onEvent reads a fresh key on a rotation, and on a revocation drops the old one
// first.
func (s *leasedSource) onEvent(ctx context.Context, e keyevents.Event) {
	reason := keyevents.ReasonRotation
	if e.Kind == keyevents.KindRevoked {
		reason = keyevents.ReasonRevocation
		s.mu.Lock()
		s.cur, s.prev = leasedKey{}, leasedKey{}
		s.gen++
		s.mu.Unlock()
	}
	_ = s.read(ctx, reason)
}

func (s *leasedSource) close() { s.closed.Do(func() { close(s.stop) }) }

// read reads a fresh key and starts keeping its lease.
func (s *leasedSource) read(ctx context.Context, reason string) error {
	s.load.Lock()
	defer s.load.Unlock()
	l, err := s.m.o.Vault.ReadLeased(ctx, s.path)
	s.m.access(s.deployment, s.path, 0, reason, err)
	if err != nil {
		err = fmt.Errorf("deployment %s: %w", s.deployment, err)
		s.mu.Lock()
		s.lastErr, s.failedAt = err, time.Now()
		s.mu.Unlock()
		s.m.o.Log.Warn("reading the deployment's leased key from vault failed", "deployment", s.deployment, "path", s.path, "err", err)
		return err
	}
	s.mu.Lock()
	if s.cur.valid(time.Now()) && s.cur.key != l.Key {
		s.prev = s.cur
	}
	s.cur, s.lastErr = leasedKey{key: l.Key, expires: l.Expires}, nil
	s.gen++
	gen := s.gen
	s.mu.Unlock()
	if !l.Expires.IsZero() {
		s.m.async(func(ctx context.Context) { s.keep(ctx, l, gen) })
	}
	return nil
}

// renew renews l's lease with a LifetimeWatcher while Vault extends it by its full
// duration. It returns when the lease will end once Vault caps a renewal (the lease
// nears its max TTL) or stops renewing, whether a fresh key should be read at once,
// and false when a newer key replaced l or the source closed.
func (s *leasedSource) renew(l vaultclient.Leased, stale func() bool) (end time.Time, now, ok bool) {
	w, err := s.m.o.Vault.NewLifetimeWatcher(l.Secret)
	if err != nil {
		s.m.o.Log.Warn("deployment key lease cannot be renewed", "deployment", s.deployment, "err", err)
		return l.Expires, false, true
	}
	go w.Start()
	defer w.Stop()
	full := time.Until(l.Expires)
	end = l.Expires
	for {
		select {
		case <-s.stop:
			return time.Time{}, false, false
		case r := <-w.RenewCh():
			if stale() {
				return time.Time{}, false, false
			}
			d := leaseDuration(r.Secret)
			s.m.o.Log.Debug("deployment key lease renewed", "deployment", s.deployment, "lease", d.String())
			end = time.Now().Add(d)
			if d < full*9/10 { // capped by the max TTL: no renewal will go further
				return end, false, true
			}
		case err := <-w.DoneCh():
			if err != nil {
				s.m.o.Log.Warn("deployment key lease renewal stopped", "deployment", s.deployment, "err", err)
			}
			return end, true, true // the watcher gives up close to the end: read now
		}
	}
}

// leaseDuration is how long a renewed secret's lease (or token) now lasts.
func leaseDuration(s *api.Secret) time.Duration {
	if s == nil {
		return 0
	}
	if s.Auth != nil {
		return time.Duration(s.Auth.LeaseDuration) * time.Second
	}
	return time.Duration(s.LeaseDuration) * time.Second
}

// keep renews l's lease while Vault allows, then reads a fresh key before it ends;
// it stops when a newer key replaced l or the source closed.
func (s *leasedSource) keep(ctx context.Context, l vaultclient.Leased, gen int) {
	stale := func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.gen != gen
	}
	readNow := false
	if l.Renewable && l.LeaseID != "" {
		end, now, ok := s.renew(l, stale)
		if !ok {
			return
		}
		l.Expires, readNow = end, now
	}
	// Read a fresh key at two thirds of what is left of the lease (for a renewable
	// one, once Vault stopped extending it).
	if !readNow {
		t := time.NewTimer(time.Duration(float64(time.Until(l.Expires)) * renewAtFraction))
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
	// Read a fresh key before l expires, retrying until it does.
	backoff := 200 * time.Millisecond
	for !stale() {
		select {
		case <-s.stop:
			return
		default:
		}
		if err := s.read(ctx, keyevents.ReasonRenewal); err == nil {
			return
		}
		if time.Now().After(l.Expires) {
			return // Key reads again on the next request
		}
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
