package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// AuditSigningKeyName is the audit signing key's file in the data directory, unless
// audit-signing-key-file names another.
const AuditSigningKeyName = "audit-signing-key.pem"

// checkSigningKeyFile returns what is wrong with path as the name of a signing key
// file, or "" (also for "", the default).
func checkSigningKeyFile(path string) string {
	if path == "" {
		return ""
	}
	if strings.TrimSpace(path) != path {
		return "must not start or end with white space"
	}
	if strings.HasSuffix(path, string(filepath.Separator)) {
		return "must name a file, not a directory"
	}
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		return "is a directory: it must name the key file"
	}
	return ""
}

// loadAuditSigner loads the audit signing key, generating it (and its public key
// beside it) the first time. It logs the key id and where the public key is, never
// the key.
func (a *App) loadAuditSigner(cfg Config) error {
	path := cfg.AuditSigningKeyFile
	if path == "" {
		path = filepath.Join(cfg.DataDir, AuditSigningKeyName)
	}
	s, created, err := signing.LoadOrCreate(path)
	if err != nil {
		return fmt.Errorf("audit-signing-key-file: %w", err)
	}
	a.auditSigner, a.auditKeyFile = s, path
	pub := signing.PublicPath(path)
	if created {
		a.log.Info("generated the audit signing key; verify audit exports with its public key (portcullis audit verify --pubkey)",
			"key_id", s.KeyID(), "public_key_file", pub)
		return nil
	}
	data, err := os.ReadFile(pub)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.WriteFile(pub, s.PublicPEM(), 0o644); err != nil {
			a.log.Warn("could not write the audit signing key's public key; GET /admin/v1/audit/signing-key serves it",
				"key_id", s.KeyID(), "public_key_file", pub, "err", err)
		}
	case err != nil:
		a.log.Warn("could not read the audit signing key's public key file", "public_key_file", pub, "err", err)
	default:
		if v, err := signing.ParsePublicKeys(data); err != nil || !slices.Contains(v.KeyIDs(), s.KeyID()) {
			a.log.Warn("the audit public key file does not hold the signing key's public key; GET /admin/v1/audit/signing-key serves the right one",
				"key_id", s.KeyID(), "public_key_file", pub)
		}
	}
	a.log.Info("audit signing key loaded", "key_id", s.KeyID(), "public_key_file", pub)
	return nil
}

// startCheckpoints loads the audit signing key, which signs every export, and
// starts (in the App's group) the signing of each region's chain head every
// cfg.AuditCheckpointInterval, unless it is 0. Replicas may all run it: a head is
// kept and published once.
func (a *App) startCheckpoints(cfg Config, reg prometheus.Registerer) error {
	if err := a.loadAuditSigner(cfg); err != nil {
		return err
	}
	if cfg.AuditCheckpointInterval == 0 {
		a.log.Info("audit checkpoints at intervals are off on this replica; exports are still signed")
		return nil
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	c := auditarchive.NewCheckpointer(auditarchive.CheckpointerOptions{Store: a.st, JetStream: js, Signer: a.auditSigner,
		Interval: cfg.AuditCheckpointInterval, Log: a.log})
	reg.MustRegister(c.Collectors()...)
	a.group.Go("audit checkpointer", c.Run)
	return nil
}

// AuditPublicKeyFile is the file holding the public key of the audit signing key,
// for `portcullis audit verify --pubkey`.
func (a *App) AuditPublicKeyFile() string { return signing.PublicPath(a.auditKeyFile) }
