// Package rotator is the control plane's key rotator (docs/design.md §6). It rotates each
// deployment's provider key on its schedule or on demand, through the deployment's
// minter, with an overlap during which the previous key stays valid; revokes keys in
// an emergency with no overlap; retires old keys when their overlap ends; announces
// all of it on PC_KEYS; and records the history in Postgres, never key material.
//
// The state every worker needs lives in Vault itself: the KV v2 secret's current
// version, and custom metadata naming the previous version, when it stops being
// valid, and the revoked versions (see vaultclient.SetRotationMeta). A worker that
// misses an event, or starts in the middle of an overlap, reads it there.
package rotator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/internal/alerting"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/alerts"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/keyevents"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// DefaultCheckInterval is how often the rotator looks for due rotations, new Vault
// versions and ended overlaps.
const DefaultCheckInterval = 30 * time.Second

// Vault is what the rotator needs of Vault: the KV v2 keys, their versions and
// rotation metadata, and the leases of dynamic paths. *vaultclient.Client is one.
type Vault interface {
	ReadKVMeta(ctx context.Context, keyPath string) (vaultclient.KVMeta, error)
	ReadKV(ctx context.Context, keyPath string, version int) (vaultclient.KVKey, error)
	WriteKV(ctx context.Context, keyPath, key string, cas int) (int, error)
	SetRotationMeta(ctx context.Context, keyPath string, previous int, validUntil time.Time, revoked map[int]bool) error
	DestroyKV(ctx context.Context, keyPath string, versions ...int) error
	RevokeLeases(ctx context.Context, path string) error
}

var _ Vault = (*vaultclient.Client)(nil)

// Options configure a Rotator.
type Options struct {
	Store *store.Store
	// Vault is the control plane's Vault; nil means no Vault, and rotation requests
	// fail with a clear error.
	Vault     Vault
	JetStream jetstream.JetStream
	// Actor names this control plane in key-access events and history rows.
	Actor         string
	CheckInterval time.Duration
	// OpenAIAdminURL is the base URL of OpenAI's organization admin API, the only
	// place the openai_admin minter sends the admin key: never a deployment's
	// base_url. "" is DefaultOpenAIAdminURL.
	OpenAIAdminURL string
	// Alerts raises key_revoked and key_rotation_due (alerts table, PC_ALERTS,
	// webhook); nil records and publishes them, with no webhook.
	Alerts Alerter
	Log    *slog.Logger
	Now    func() time.Time
}

// DefaultOpenAIAdminURL is OpenAI's API, which serves its organization admin API.
const DefaultOpenAIAdminURL = "https://api.openai.com"

// Alerter raises an alert; *alerting.Alerter is one.
type Alerter interface {
	Raise(ctx context.Context, a alerting.Alert) (store.Alert, bool, error)
}

var _ Alerter = (*alerting.Alerter)(nil)

// Rotator rotates, revokes and retires deployment keys. Safe for concurrent use; one
// operation runs at a time.
type Rotator struct {
	o   Options
	mu  sync.Mutex // serializes rotations, revocations and the periodic check
	seq atomic.Uint64
	// adminURL is Options.OpenAIAdminURL parsed, nil when it does not parse (every
	// openai_admin call then fails, saying so).
	adminURL *url.URL

	dueAlerted map[string]time.Time // deployment → when its rotation_due alert was raised
	nudge      chan struct{}
}

// New returns a rotator; Run starts its periodic check.
func New(o Options) *Rotator {
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.OpenAIAdminURL == "" {
		o.OpenAIAdminURL = DefaultOpenAIAdminURL
	}
	if o.Alerts == nil {
		o.Alerts = alerting.New(alerting.Options{Store: o.Store, JetStream: o.JetStream, Log: o.Log})
	}
	r := &Rotator{o: o, dueAlerted: map[string]time.Time{}, nudge: make(chan struct{}, 1)}
	if u, err := parseAdminURL(o.OpenAIAdminURL); err == nil {
		r.adminURL = u
	} else {
		o.Log.Error("the OpenAI admin URL is not usable: openai_admin rotations will fail", "err", err)
	}
	return r
}

// Nudge asks for a check soon, without waiting: the policy changed, and a new
// Vault-keyed deployment should get its baseline before anyone rotates it.
func (r *Rotator) Nudge() {
	select {
	case r.nudge <- struct{}{}:
	default:
	}
}

// Request names what to rotate or revoke: every Vault-keyed deployment of Provider,
// or only Deployment.
type Request struct {
	Provider   string `json:"provider"`
	Deployment string `json:"deployment,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Actor      string `json:"-"`
}

// Errors of Rotate and Revoke, as *apierr.Error with these codes.
var (
	// ErrNoVault: the control plane has no Vault.
	ErrNoVault = errors.New("the control plane has no Vault configured (PORTCULLIS_VAULT_ADDR)")
	// ErrNoNewVersion: a vault_version deployment has no version newer than the one in use.
	ErrNoNewVersion = errors.New("no new key version to rotate to")
)

// Run checks every CheckInterval until ctx ends.
func (r *Rotator) Run(ctx context.Context) error {
	t := time.NewTicker(r.o.CheckInterval)
	defer t.Stop()
	for {
		r.Check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.nudge:
		}
	}
}

// Check does one round of the periodic work: it records a baseline for deployments
// seen for the first time, rotates to versions written in Vault by an operator,
// runs due scheduled rotations, and retires keys whose overlap ended.
func (r *Rotator) Check(ctx context.Context) {
	if r.o.Vault == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	deps, err := r.deployments(ctx, Request{})
	if err != nil {
		r.o.Log.Error("key rotator: reading deployments failed", "err", err)
		return
	}
	now := r.o.Now()
	for _, d := range deps {
		if err := r.checkOne(ctx, d, now); err != nil {
			r.o.Log.Error("key rotator: check failed", "deployment", d.Name, "err", err)
		}
	}
	if err := r.retire(ctx, now); err != nil {
		r.o.Log.Error("key rotator: retiring old keys failed", "err", err)
	}
}

func (r *Rotator) checkOne(ctx context.Context, d policy.Deployment, now time.Time) error {
	last, ok, err := r.o.Store.LastRotation(ctx, d.Name)
	if err != nil {
		return err
	}
	if d.KeySource == policy.KeySourceVault {
		meta, err := r.o.Vault.ReadKVMeta(ctx, d.KeyPath)
		if err != nil {
			return err
		}
		if !ok {
			// First sight: the current version is the key in use, not a rotation.
			_, err := r.o.Store.AddRotation(ctx, store.Rotation{Deployment: d.Name, Provider: d.Provider,
				Kind: keyevents.KindRotated, Trigger: store.TriggerDetected, Actor: r.o.Actor,
				Reason: "baseline: first seen by the rotator", NewVersion: intp(meta.Current), RetiredAt: &now})
			return err
		}
		if last.NewVersion != nil && meta.Current > *last.NewVersion && !meta.Revoked[meta.Current] {
			_, err := r.rotateOne(ctx, d, store.TriggerDetected, r.o.Actor, "a new version was written in Vault")
			return err
		}
	}
	if d.RotationIntervalDays <= 0 || !ok {
		return nil
	}
	due := last.CreatedAt.Add(time.Duration(d.RotationIntervalDays) * 24 * time.Hour)
	if now.Before(due) {
		return nil
	}
	if minter(d) == policy.MinterVaultVersion {
		// Only an operator or pipeline can write the new key: say so, once a day (once
		// across replicas: the alert is de-duplicated per deployment, due date and day).
		if t, seen := r.dueAlerted[d.Name]; seen && now.Sub(t) < 24*time.Hour {
			return nil
		}
		if r.alert(ctx, alerting.Alert{Kind: alerts.KindKeyRotationDue, Severity: alerts.SeverityWarning, Subject: d.Provider,
			Message:  fmt.Sprintf("deployment %s is due for key rotation: write a new version at %s", d.Name, d.KeyPath),
			Details:  map[string]any{"deployment": d.Name, "provider": d.Provider, "path": d.KeyPath, "due": due.UTC()},
			DedupKey: alerts.KindKeyRotationDue + ":" + d.Name + ":" + due.UTC().Format(time.RFC3339) + ":" + now.UTC().Format(time.DateOnly),
		}) {
			r.dueAlerted[d.Name] = now
		}
		return nil
	}
	_, err = r.rotateOne(ctx, d, store.TriggerSchedule, r.o.Actor, fmt.Sprintf("every %d days", d.RotationIntervalDays))
	return err
}

// Rotate rotates the keys req names, now, with each deployment's overlap.
func (r *Rotator) Rotate(ctx context.Context, req Request) ([]store.Rotation, error) {
	if r.o.Vault == nil {
		return nil, apierr.Wrap(apierr.VaultUnavailable, ErrNoVault, "key rotation needs a Vault: set PORTCULLIS_VAULT_ADDR on the control plane")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	deps, err := r.deployments(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []store.Rotation
	for _, d := range deps {
		rot, err := r.rotateOne(ctx, d, store.TriggerManual, req.Actor, req.Reason)
		if err != nil {
			return out, err
		}
		out = append(out, rot)
	}
	return out, nil
}

// rotateOne rotates d's key: it obtains the new key from d's minter, records the
// previous version's overlap in Vault, stores the history row and announces it.
func (r *Rotator) rotateOne(ctx context.Context, d policy.Deployment, trigger, actor, reason string) (store.Rotation, error) {
	now := r.o.Now()
	overlap := time.Duration(d.RotationOverlapHours * float64(time.Hour)).Round(time.Second)
	rot := store.Rotation{Deployment: d.Name, Provider: d.Provider, Kind: keyevents.KindRotated, Trigger: trigger,
		Actor: actor, Reason: reason}
	if overlap > 0 {
		until := now.Add(overlap)
		rot.OverlapUntil = &until
	}
	if d.KeySource == policy.KeySourceVault {
		meta, inUse, err := r.versions(ctx, d)
		if err != nil {
			return store.Rotation{}, err
		}
		next := meta.Current
		switch minter(d) {
		case policy.MinterOpenAIAdmin:
			key, accountID, err := r.mintOpenAI(ctx, d)
			if err != nil {
				return store.Rotation{}, err
			}
			if next, err = r.o.Vault.WriteKV(ctx, d.KeyPath, key, meta.Current); err != nil {
				return store.Rotation{}, apierr.Wrap(apierr.VaultUnavailable, err, "writing the new key to Vault failed")
			}
			rot.ProviderKeyID = accountID
		default: // vault_version: an operator wrote the new version
			if next <= inUse || meta.Revoked[next] {
				return store.Rotation{}, apierr.Wrap(apierr.NoNewKeyVersion, ErrNoNewVersion,
					"deployment %s has no key version newer than %d in use; write one first (vault kv put %s api_key=…), then rotate",
					d.Name, inUse, d.KeyPath)
			}
		}
		rot.OldVersion, rot.NewVersion = intp(inUse), intp(next)
		until := time.Time{}
		if rot.OverlapUntil != nil {
			until = *rot.OverlapUntil
		}
		if err := r.o.Vault.SetRotationMeta(ctx, d.KeyPath, inUse, until, meta.Revoked); err != nil {
			return store.Rotation{}, apierr.Wrap(apierr.VaultUnavailable, err, "recording the overlap in Vault failed")
		}
		if rot.OverlapUntil == nil {
			rot.RetiredAt = &now
		}
	}
	saved, err := r.o.Store.AddRotation(ctx, rot)
	if err != nil {
		return store.Rotation{}, err
	}
	r.announce(ctx, saved, natsnames.KeysRotatedSubject(d.Provider), d)
	r.o.Log.Info("deployment key rotated", "deployment", d.Name, "provider", d.Provider, "trigger", trigger,
		"actor", actor, "old_version", deref(saved.OldVersion), "new_version", deref(saved.NewVersion), "overlap_until", saved.OverlapUntil)
	return saved, nil
}

// versions reads d's key metadata from Vault and the version workers use now.
func (r *Rotator) versions(ctx context.Context, d policy.Deployment) (vaultclient.KVMeta, int, error) {
	meta, err := r.o.Vault.ReadKVMeta(ctx, d.KeyPath)
	if err != nil {
		return vaultclient.KVMeta{}, 0, apierr.Wrap(apierr.VaultUnavailable, err, "reading the key's metadata from Vault failed")
	}
	inUse, err := r.inUse(ctx, d, meta)
	return meta, inUse, err
}

// inUse is the version workers were last told to use: the last rotation's new
// version. Before any (the rotator has not recorded its baseline yet), it is the
// newest version older than the current one that a worker fetched, if any: the
// current one was written since; else the current one.
func (r *Rotator) inUse(ctx context.Context, d policy.Deployment, meta vaultclient.KVMeta) (int, error) {
	last, ok, err := r.o.Store.LastRotation(ctx, d.Name)
	if err != nil {
		return 0, err
	}
	if ok && last.NewVersion != nil {
		return *last.NewVersion, nil
	}
	fetched, err := r.o.Store.LatestFetchedVersionBelow(ctx, d.Name, d.KeyPath, meta.Current)
	if err != nil {
		return 0, err
	}
	if fetched > 0 {
		return fetched, nil
	}
	return meta.Current, nil
}

// Revoke revokes the keys req names at once: each deployment gets a new key where
// its minter can make one (or one an operator already wrote), its old versions are
// marked revoked and destroyed in Vault (or its leases revoked), workers are told to
// drop them, the revocation is recorded and an alert raised.
func (r *Rotator) Revoke(ctx context.Context, req Request) ([]store.Rotation, error) {
	if r.o.Vault == nil {
		return nil, apierr.Wrap(apierr.VaultUnavailable, ErrNoVault, "key revocation needs a Vault: set PORTCULLIS_VAULT_ADDR on the control plane")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	deps, err := r.deployments(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []store.Rotation
	var errs []error
	for _, d := range deps {
		rot, err := r.revokeOne(ctx, d, req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, rot)
	}
	names := make([]string, 0, len(out))
	ids := make([]string, 0, len(out))
	for _, rot := range out {
		names = append(names, rot.Deployment)
		ids = append(ids, strconv.FormatInt(rot.ID, 10))
	}
	if len(ids) == 0 { // nothing recorded: this revocation is still one alert of its own
		ids = append(ids, r.o.Actor+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)+"-"+strconv.FormatUint(r.seq.Add(1), 10))
	}
	r.alert(ctx, alerting.Alert{Kind: alerts.KindKeyRevoked, Severity: alerts.SeverityCritical, Subject: req.Provider,
		Message:  fmt.Sprintf("provider %s keys revoked by %s: %s", req.Provider, req.Actor, req.Reason),
		Details:  map[string]any{"provider": req.Provider, "deployments": names, "reason": req.Reason, "actor": req.Actor},
		DedupKey: alerts.KindKeyRevoked + ":" + req.Provider + ":" + strings.Join(ids, ",")})
	r.o.Log.Error("provider keys revoked", "alert", alerts.KindKeyRevoked, "provider", req.Provider,
		"deployments", names, "actor", req.Actor, "reason", req.Reason)
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	return out, nil
}

func (r *Rotator) revokeOne(ctx context.Context, d policy.Deployment, req Request) (store.Rotation, error) {
	now := r.o.Now()
	rot := store.Rotation{Deployment: d.Name, Provider: d.Provider, Kind: keyevents.KindRevoked, Trigger: store.TriggerRevoke,
		Actor: req.Actor, Reason: req.Reason, RetiredAt: &now}
	switch d.KeySource {
	case policy.KeySourceVault:
		meta, inUse, err := r.versions(ctx, d)
		if err != nil {
			return store.Rotation{}, err
		}
		next := 0
		if minter(d) == policy.MinterOpenAIAdmin {
			key, accountID, err := r.mintOpenAI(ctx, d)
			if err != nil {
				r.o.Log.Error("revocation: minting a successor key failed; the deployment has no key until one is written",
					"deployment", d.Name, "err", err)
			} else if next, err = r.o.Vault.WriteKV(ctx, d.KeyPath, key, meta.Current); err != nil {
				return store.Rotation{}, apierr.Wrap(apierr.VaultUnavailable, err, "writing the new key to Vault failed")
			}
			rot.ProviderKeyID = accountID
		} else if meta.Current > inUse && !meta.Revoked[meta.Current] {
			next = meta.Current // an operator already wrote the successor
		}
		revoked := map[int]bool{}
		for v := range meta.Revoked {
			revoked[v] = true
		}
		var destroy []int
		for v := 1; v <= max(inUse, meta.Current); v++ {
			if v != next {
				revoked[v] = true
				if !meta.Gone[v] {
					destroy = append(destroy, v)
				}
			}
		}
		if err := r.o.Vault.SetRotationMeta(ctx, d.KeyPath, 0, time.Time{}, revoked); err != nil {
			return store.Rotation{}, apierr.Wrap(apierr.VaultUnavailable, err, "recording the revocation in Vault failed")
		}
		if len(destroy) > 0 {
			if err := r.o.Vault.DestroyKV(ctx, d.KeyPath, destroy...); err != nil {
				r.o.Log.Error("revocation: destroying old key versions failed", "deployment", d.Name, "err", err)
			}
		}
		rot.OldVersion = intp(inUse)
		if next > 0 {
			rot.NewVersion = intp(next)
		}
		r.deleteOldAccounts(ctx, d, rot.ProviderKeyID, 0)
	case policy.KeySourceVaultDynamic:
		if err := r.o.Vault.RevokeLeases(ctx, d.KeyPath); err != nil {
			r.o.Log.Error("revocation: revoking the path's leases failed", "deployment", d.Name, "err", err)
		}
	}
	saved, err := r.o.Store.AddRotation(ctx, rot)
	if err != nil {
		return store.Rotation{}, err
	}
	r.announce(ctx, saved, natsnames.KeysRevokedSubject(d.Provider), d)
	return saved, nil
}

// retire ends the overlaps that are over: the previous version stops being valid
// in Vault's metadata, and an openai_admin deployment's old key is deleted at the
// provider.
func (r *Rotator) retire(ctx context.Context, now time.Time) error {
	due, err := r.o.Store.DueRetirements(ctx, now)
	if err != nil {
		return err
	}
	deps, err := r.deployments(ctx, Request{})
	if err != nil {
		return err
	}
	byName := map[string]policy.Deployment{}
	for _, d := range deps {
		byName[d.Name] = d
	}
	for _, rot := range due {
		if d, ok := byName[rot.Deployment]; ok && d.KeySource == policy.KeySourceVault {
			meta, err := r.o.Vault.ReadKVMeta(ctx, d.KeyPath)
			if err != nil {
				return err
			}
			// A later rotation may have replaced this one's overlap in the metadata.
			if rot.OldVersion != nil && meta.Previous == *rot.OldVersion {
				if err := r.o.Vault.SetRotationMeta(ctx, d.KeyPath, 0, time.Time{}, meta.Revoked); err != nil {
					return err
				}
			}
			if minter(d) == policy.MinterOpenAIAdmin {
				r.deleteOldAccounts(ctx, d, rot.ProviderKeyID, rot.ID)
			}
		}
		if err := r.o.Store.MarkRetired(ctx, rot.ID, now); err != nil {
			return err
		}
		r.o.Log.Info("previous deployment key retired", "deployment", rot.Deployment, "version", deref(rot.OldVersion))
	}
	return nil
}

// deployments returns the Vault-keyed deployments req names; a request naming
// nothing, an unknown deployment, or a provider without any is an error.
func (r *Rotator) deployments(ctx context.Context, req Request) ([]policy.Deployment, error) {
	s, err := r.o.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	var out []policy.Deployment
	for _, d := range s.Deployments {
		if d.KeySource != policy.KeySourceVault && d.KeySource != policy.KeySourceVaultDynamic {
			continue
		}
		if (req.Provider == "" || d.Provider == req.Provider) && (req.Deployment == "" || d.Name == req.Deployment) {
			out = append(out, d)
		}
	}
	if len(out) == 0 && (req.Provider != "" || req.Deployment != "") {
		return nil, apierr.New(apierr.NotFound, "no deployment with a Vault key matches provider %q deployment %q", req.Provider, req.Deployment)
	}
	return out, nil
}

// announce publishes a rotation or revocation on PC_KEYS. A failure is logged: the
// workers' periodic metadata check picks the change up from Vault anyway.
func (r *Rotator) announce(ctx context.Context, rot store.Rotation, subject string, d policy.Deployment) {
	e := keyevents.Event{ID: strconv.FormatInt(rot.ID, 10), Kind: rot.Kind, Provider: d.Provider, Deployment: d.Name,
		Path: d.KeyPath, KeyVersion: deref(rot.NewVersion), PreviousVersion: deref(rot.OldVersion), Reason: rot.Reason, At: rot.CreatedAt}
	if rot.OverlapUntil != nil && rot.Kind == keyevents.KindRotated {
		e.OverlapUntil = *rot.OverlapUntil
	}
	data, err := keyevents.Encode(e)
	if err == nil {
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, "rotation-"+e.ID)
		_, err = r.o.JetStream.PublishMsg(ctx, msg)
	}
	if err != nil {
		r.o.Log.Error("announcing a key change failed; workers will find it in Vault within their refresh interval",
			"deployment", d.Name, "err", err)
	}
}

// alert raises a through Options.Alerts (alerts table, PC_ALERTS, webhook); a
// failure is logged. It reports whether a was recorded (now or before).
func (r *Rotator) alert(ctx context.Context, a alerting.Alert) bool {
	a.IDPrefix = "key"
	// A revocation asked for over HTTP must raise its alert even if the caller leaves.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	row, _, err := r.o.Alerts.Raise(ctx, a)
	if err != nil {
		r.o.Log.Error("raising an alert failed", "kind", a.Kind, "alert_id", row.ID, "err", err)
	}
	return row.ID != 0 || err == nil
}

// access records the control plane's own read of a key from Vault, in Postgres and
// on PC_KEYS.
func (r *Rotator) access(ctx context.Context, d policy.Deployment, path string, version int, reason string, readErr error) {
	a := keyevents.Access{ID: r.o.Actor + "-" + strconv.FormatInt(r.o.Now().UnixNano(), 36) + "-" + strconv.FormatUint(r.seq.Add(1), 10),
		At: r.o.Now().UTC(), ActorKind: keyevents.ActorControlPlane, ActorID: r.o.Actor, Deployment: d.Name, Path: path,
		KeyVersion: version, Reason: reason, OK: readErr == nil}
	if readErr != nil {
		a.Error = readErr.Error()
	}
	if _, err := r.o.Store.AddKeyAccess(ctx, a); err != nil {
		r.o.Log.Error("recording a key access failed", "err", err)
	}
	if data, err := keyevents.Encode(a); err == nil {
		if _, err := r.o.JetStream.Publish(ctx, natsnames.KeysAccessSubject(natsnames.ControlPlaneScope, r.o.Actor), data); err != nil {
			r.o.Log.Warn("publishing a key access failed", "err", err)
		}
	}
}

// minter is d's minter, defaulting to its key source's own.
func minter(d policy.Deployment) string {
	if d.Minter != "" {
		return d.Minter
	}
	if d.KeySource == policy.KeySourceVaultDynamic {
		return policy.MinterVaultDynamic
	}
	return policy.MinterVaultVersion
}

func intp(v int) *int { return &v }

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
