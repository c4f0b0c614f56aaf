package vaultclient

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// Custom metadata the rotator keeps on a key's KV v2 secret, so that any worker,
// including one that starts during an overlap, knows which versions are valid.
const (
	// MetaPreviousVersion is the version the current one replaced.
	MetaPreviousVersion = "portcullis_previous_version"
	// MetaPreviousValidUntil is when the previous version stops being valid (RFC 3339).
	MetaPreviousValidUntil = "portcullis_previous_valid_until"
	// MetaRevokedVersions lists revoked versions, comma-separated: never to be used.
	MetaRevokedVersions = "portcullis_revoked_versions"
)

// maxRevokedListed bounds MetaRevokedVersions: Vault takes at most 512 bytes per value.
const maxRevokedListed = 40

// ErrNoKey reports a secret without a usable "api_key" field.
var ErrNoKey = errors.New(`secret has no "api_key" field`)

// SplitKVPath splits a KV v2 key path into its mount and the secret's path within it:
// "secret/portcullis/openai-eu" and "secret/data/portcullis/openai-eu" both give
// ("secret", "portcullis/openai-eu"). The mount is the first path segment.
func SplitKVPath(keyPath string) (mount, path string, err error) {
	p := strings.Trim(keyPath, "/")
	mount, path, ok := strings.Cut(p, "/")
	if !ok || mount == "" || path == "" {
		return "", "", fmt.Errorf("vault path %q: want <mount>/<path>, e.g. secret/portcullis/openai-eu", keyPath)
	}
	path = strings.TrimPrefix(path, "data/")
	if path == "" || path == "data" {
		return "", "", fmt.Errorf("vault path %q: no secret path after the mount", keyPath)
	}
	return mount, path, nil
}

// KVKey is one version of a key read from KV v2.
type KVKey struct {
	Key     string
	Version int
}

// ReadKV reads version (0: the current one) of the key at keyPath.
func (c *Client) ReadKV(ctx context.Context, keyPath string, version int) (KVKey, error) {
	mount, path, err := SplitKVPath(keyPath)
	if err != nil {
		return KVKey{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	kv := c.api.KVv2(mount)
	var s *api.KVSecret
	err = c.withLogin(ctx, func() (err error) {
		if version > 0 {
			s, err = kv.GetVersion(ctx, path, version)
		} else {
			s, err = kv.Get(ctx, path)
		}
		return err
	})
	if err != nil {
		return KVKey{}, fmt.Errorf("vault read %s version %d: %w", keyPath, version, err)
	}
	key, _ := s.Data[KeyField].(string)
	key = strings.TrimSpace(key) // a key written from a file often ends in a newline
	if key == "" {
		return KVKey{}, fmt.Errorf("vault read %s: %w", keyPath, ErrNoKey)
	}
	v := version
	if s.VersionMetadata != nil {
		v = s.VersionMetadata.Version
	}
	return KVKey{Key: key, Version: v}, nil
}

// KVMeta is what the metadata of a key's secret says about its versions.
type KVMeta struct {
	Current int
	// Previous and PreviousValidUntil: the version the current one replaced and when
	// it stops being valid (zero: not valid any more).
	Previous           int
	PreviousValidUntil time.Time
	// Revoked versions must never be used.
	Revoked map[int]bool
	// Gone versions were deleted or destroyed in Vault.
	Gone map[int]bool
	// UpdatedAt is when the current version was written.
	UpdatedAt time.Time
}

// ReadKVMeta reads the metadata of the key at keyPath.
func (c *Client) ReadKVMeta(ctx context.Context, keyPath string) (KVMeta, error) {
	mount, path, err := SplitKVPath(keyPath)
	if err != nil {
		return KVMeta{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var md *api.KVMetadata
	err = c.withLogin(ctx, func() (err error) {
		md, err = c.api.KVv2(mount).GetMetadata(ctx, path)
		return err
	})
	if err != nil {
		return KVMeta{}, fmt.Errorf("vault metadata %s: %w", keyPath, err)
	}
	m := KVMeta{Current: md.CurrentVersion, UpdatedAt: md.UpdatedTime, Revoked: map[int]bool{}, Gone: map[int]bool{}}
	str := func(k string) string { s, _ := md.CustomMetadata[k].(string); return s }
	m.Previous, _ = strconv.Atoi(str(MetaPreviousVersion))
	if t, err := time.Parse(time.RFC3339, str(MetaPreviousValidUntil)); err == nil {
		m.PreviousValidUntil = t
	}
	for _, s := range strings.Split(str(MetaRevokedVersions), ",") {
		if v, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			m.Revoked[v] = true
		}
	}
	for k, vm := range md.Versions {
		v, err := strconv.Atoi(k)
		if err == nil && (vm.Destroyed || !vm.DeletionTime.IsZero()) {
			m.Gone[v] = true
		}
		if v == md.CurrentVersion && !vm.CreatedTime.IsZero() {
			m.UpdatedAt = vm.CreatedTime
		}
	}
	return m, nil
}

// WriteKV writes key as a new version of keyPath, only if the current version is cas
// (0: only if the secret does not exist yet; -1: unconditionally). It returns the new
// version.
func (c *Client) WriteKV(ctx context.Context, keyPath, key string, cas int) (int, error) {
	mount, path, err := SplitKVPath(keyPath)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var opts []api.KVOption
	if cas >= 0 {
		opts = append(opts, api.WithCheckAndSet(cas))
	}
	s, err := c.api.KVv2(mount).Put(ctx, path, map[string]any{KeyField: key}, opts...)
	if err != nil {
		return 0, fmt.Errorf("vault write %s: %w", keyPath, err)
	}
	if s.VersionMetadata == nil {
		return 0, fmt.Errorf("vault write %s: no version in the answer", keyPath)
	}
	return s.VersionMetadata.Version, nil
}

// SetRotationMeta records on keyPath's metadata which version the current one
// replaced and until when it stays valid, and the revoked versions.
func (c *Client) SetRotationMeta(ctx context.Context, keyPath string, previous int, validUntil time.Time, revoked map[int]bool) error {
	mount, path, err := SplitKVPath(keyPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	versions := make([]int, 0, len(revoked))
	for v := range revoked {
		versions = append(versions, v)
	}
	sort.Ints(versions)
	if len(versions) > maxRevokedListed {
		versions = versions[len(versions)-maxRevokedListed:] // older ones are destroyed anyway
	}
	list := make([]string, len(versions))
	for i, v := range versions {
		list[i] = strconv.Itoa(v)
	}
	// Vault refuses empty values; a null removes the key (a JSON merge patch).
	custom := map[string]any{MetaPreviousVersion: nil, MetaPreviousValidUntil: nil, MetaRevokedVersions: nil}
	if previous > 0 {
		custom[MetaPreviousVersion] = strconv.Itoa(previous)
	}
	if !validUntil.IsZero() {
		custom[MetaPreviousValidUntil] = validUntil.UTC().Format(time.RFC3339)
	}
	if len(list) > 0 {
		custom[MetaRevokedVersions] = strings.Join(list, ",")
	}
	err = c.api.KVv2(mount).PatchMetadata(ctx, path, api.KVMetadataPatchInput{CustomMetadata: custom})
	if err != nil {
		return fmt.Errorf("vault metadata %s: %w", keyPath, err)
	}
	return nil
}

// DestroyKV permanently destroys versions of keyPath, so they cannot be read again.
func (c *Client) DestroyKV(ctx context.Context, keyPath string, versions ...int) error {
	mount, path, err := SplitKVPath(keyPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if err := c.api.KVv2(mount).Destroy(ctx, path, versions); err != nil {
		return fmt.Errorf("vault destroy %s versions %v: %w", keyPath, versions, err)
	}
	return nil
}

// Leased is a key read from a path that leases it (a dynamic secret, or a KV v1
// secret with a ttl).
type Leased struct {
	Key       string
	Secret    *api.Secret // for a LifetimeWatcher; its Data holds the key: never log it
	LeaseID   string
	Renewable bool
	// Expires is when the lease ends; zero for a secret without a lease.
	Expires time.Time
}

// ReadLeased reads the key at path, a logical path as given (e.g.
// "llm-provider/openai/creds/moltbot-agent").
func (c *Client) ReadLeased(ctx context.Context, path string) (Leased, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var s *api.Secret
	err := c.withLogin(ctx, func() (err error) {
		s, err = c.api.Logical().ReadWithContext(ctx, strings.Trim(path, "/"))
		return err
	})
	if err != nil {
		return Leased{}, fmt.Errorf("vault read %s: %w", path, err)
	}
	if s == nil {
		return Leased{}, fmt.Errorf("vault read %s: no secret there", path)
	}
	key, _ := s.Data[KeyField].(string)
	key = strings.TrimSpace(key)
	if key == "" {
		return Leased{}, fmt.Errorf("vault read %s: %w", path, ErrNoKey)
	}
	l := Leased{Key: key, Secret: s, LeaseID: s.LeaseID, Renewable: s.Renewable}
	if s.LeaseDuration > 0 {
		l.Expires = time.Now().Add(time.Duration(s.LeaseDuration) * time.Second)
	}
	return l, nil
}

// NewLifetimeWatcher watches a leased secret, renewing it while Vault allows.
func (c *Client) NewLifetimeWatcher(s *api.Secret) (*api.LifetimeWatcher, error) {
	return c.api.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: s})
}

// RevokeLeases revokes every lease issued under path (sys/leases/revoke-prefix),
// ending the keys of a dynamic secret engine at once. It needs sudo on that path.
func (c *Client) RevokeLeases(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if err := c.api.Sys().RevokePrefixWithContext(ctx, strings.Trim(path, "/")); err != nil {
		return fmt.Errorf("vault revoke leases under %s: %w", path, err)
	}
	return nil
}
