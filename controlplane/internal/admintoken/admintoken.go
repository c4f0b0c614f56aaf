// Package admintoken issues the two admin tokens that belong to no principal: the
// bootstrap token, made at first start, which may only manage principals (to create
// the first administrators) and is then best disabled (Disable); and the break-glass
// token, which Reset issues and which may do everything. A token is 32 random bytes,
// shown as "pca_" + base64url. Only its SHA-256 is stored in Postgres; the token
// itself is written once to <data dir>/admin-token with mode 0600 and is never
// logged.
package admintoken

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// FileName is the name of the token file inside the data directory.
const FileName = "admin-token"

// prefix marks Portcullis admin tokens, so that secret scanners can recognise them.
const prefix = "pca_"

// Bootstrap makes sure the first start has a way in. If Postgres holds no admin token
// and no principal, it generates the bootstrap token, writes it to
// <dataDir>/admin-token (mode 0600, never overwriting an existing file) and stores its
// hash. If a token or a principal exists it does nothing, so that a disabled
// bootstrap token stays disabled; it warns while the bootstrap token is still enabled
// next to an administrator.
func Bootstrap(ctx context.Context, st *store.Store, dataDir string, log *slog.Logger) error {
	exists, err := st.HasAdminToken(ctx)
	if err != nil {
		return err
	}
	if !exists {
		principals, err := st.HasPrincipals(ctx)
		if err != nil {
			return err
		}
		if principals {
			log.Info("no bootstrap admin token: principals exist; `controlplane admin-token reset` issues a break-glass token")
			return nil
		}
	}
	path := filepath.Join(dataDir, FileName)
	if exists {
		if _, err := os.Stat(path); err != nil {
			log.Warn("an admin token is set in the database but its file is missing; "+
				"run `controlplane admin-token reset` to issue a new one", "file", path)
		} else {
			log.Info("admin token already set", "file", path)
		}
		if admins, err := st.HasAdministrator(ctx); err == nil && admins {
			if kind, err := st.AdminTokenKind(ctx, fileHash(path)); err == nil && kind == store.AdminTokenBootstrap {
				log.Warn("the bootstrap admin token is still enabled although an administrator exists; " +
					"disable it with `controlplane admin-token disable`")
			}
		}
		return nil
	}
	token, hash := generate()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := writeNew(path, token); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists but the database holds no admin token: "+
				"delete the file, or run `controlplane admin-token reset` to issue a new token", path)
		}
		return err
	}
	added, err := st.AddFirstAdminToken(ctx, hash)
	if err != nil || !added {
		// Either the token never reached the database, or another replica stored its
		// own first; the file we wrote would only mislead.
		_ = os.Remove(path)
		if err != nil {
			return err
		}
		log.Info("another replica created the admin token first")
		return nil
	}
	log.Info("admin token created", "file", path)
	return nil
}

// Reset replaces every admin token with a fresh break-glass token, which may do
// everything, written to <dataDir>/admin-token over any existing file. It is the way
// back in when no administrator can sign in; the change history records it.
func Reset(ctx context.Context, st *store.Store, dataDir string, log *slog.Logger) error {
	token, hash := generate()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dataDir, FileName)
	tmp := path + ".new"
	_ = os.Remove(tmp) // left over from an interrupted reset
	if err := writeNew(tmp, token); err != nil {
		return err
	}
	if err := st.ReplaceAdminTokens(ctx, hash); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace admin token file (the new token is in %s): %w", tmp, err)
	}
	log.Info("admin tokens reset; the new token is in the file", "file", path)
	return nil
}

// Disable deletes the principal-less admin tokens, bootstrap and break-glass, and
// <dataDir>/admin-token if it holds no token that still works. It reports how many
// tokens it disabled. Reset issues a break-glass token again when one is needed.
func Disable(ctx context.Context, st *store.Store, dataDir string, log *slog.Logger) (int64, error) {
	n, err := st.DisableAdminTokens(ctx)
	if err != nil {
		return 0, err
	}
	path := filepath.Join(dataDir, FileName)
	if _, err := st.AdminTokenKind(ctx, fileHash(path)); errors.Is(err, store.ErrNotFound) {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("remove the disabled token's file: %w", err)
		}
	}
	log.Info("admin tokens disabled", "tokens", n)
	return n, nil
}

// fileHash is the stored form of the token in the file at path; nil if unreadable.
func fileHash(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return Hash(strings.TrimSpace(string(b)))
}

// Hash is the stored form of token.
func Hash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

func generate() (token string, hash []byte) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	token = prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, Hash(token)
}

// writeNew creates path with mode 0600, failing if it exists, and syncs it to disk.
func writeNew(path, token string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create admin token file: %w", err)
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("write admin token file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write admin token file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write admin token file: %w", err)
	}
	return nil
}
