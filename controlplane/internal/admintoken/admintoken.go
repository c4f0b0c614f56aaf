// Package admintoken guards the admin API with bootstrap admin tokens until real
// admin accounts exist. A token is 32 random bytes, shown as "pca_" + base64url. Only
// its SHA-256 is stored in Postgres; the token itself is written once to
// <data dir>/admin-token with mode 0600 and is never logged.
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

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// FileName is the name of the token file inside the data directory.
const FileName = "admin-token"

// prefix marks Portcullis admin tokens, so that secret scanners can recognise them.
const prefix = "pca_"

// Bootstrap makes sure an admin token exists. If Postgres holds none, it generates
// one, writes it to <dataDir>/admin-token (mode 0600, never overwriting an existing
// file) and stores its hash. If a token exists it does nothing.
func Bootstrap(ctx context.Context, st *store.Store, dataDir string, log *slog.Logger) error {
	exists, err := st.HasAdminToken(ctx)
	if err != nil {
		return err
	}
	path := filepath.Join(dataDir, FileName)
	if exists {
		if _, err := os.Stat(path); err != nil {
			log.Warn("an admin token is set in the database but its file is missing; "+
				"run `controlplane admin-token reset` to issue a new one", "file", path)
		} else {
			log.Info("admin token already set", "file", path)
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

// Reset replaces every admin token with a fresh one, written to <dataDir>/admin-token
// over any existing file. It is the way back in after the token was lost.
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
