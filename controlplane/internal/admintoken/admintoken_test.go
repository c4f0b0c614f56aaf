package admintoken_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store/storetest"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"
	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/admintoken"
)

func readToken(t *testing.T, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, admintoken.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func storedHashes(t *testing.T, dbURL string) [][]byte {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, `SELECT token_hash FROM admin_tokens`)
	hashes, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	return hashes
}

func TestBootstrapWritesTheTokenOnceAndStoresOnlyItsHash(t *testing.T) {
	ctx := context.Background()
	st, dbURL := storetest.Open(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	dataDir := filepath.Join(t.TempDir(), "data")

	if err := admintoken.Bootstrap(ctx, st, dataDir, log); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	path := filepath.Join(dataDir, admintoken.FileName)
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{{dataDir, 0o700 | os.ModeDir}, {path, 0o600}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s has mode %v, want %v", tc.path, fi.Mode(), tc.mode)
		}
	}
	token := readToken(t, dataDir)
	if !strings.HasPrefix(token, "pca_") || len(token) != len("pca_")+43 {
		t.Fatalf("token %q is not pca_ + 32 bytes of base64url", token[:4])
	}
	want := sha256.Sum256([]byte(token))
	hashes := storedHashes(t, dbURL)
	if len(hashes) != 1 || !bytes.Equal(hashes[0], want[:]) {
		t.Fatalf("stored %d hashes, want exactly the token's SHA-256", len(hashes))
	}
	if bytes.Contains(hashes[0], []byte(token)) {
		t.Fatal("the token itself is stored")
	}
	if strings.Contains(logs.String(), token) {
		t.Fatal("the token was logged")
	}

	before, _ := os.Stat(path)
	if err := admintoken.Bootstrap(ctx, st, dataDir, log); err != nil {
		t.Fatalf("second bootstrap: %v", err)
	}
	after, _ := os.Stat(path)
	if readToken(t, dataDir) != token || !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("second bootstrap rewrote the token file")
	}
	if n := len(storedHashes(t, dbURL)); n != 1 {
		t.Fatalf("%d tokens stored after a second bootstrap, want 1", n)
	}
}

func TestBootstrapRefusesAStaleFile(t *testing.T) {
	st, dbURL := storetest.Open(t)
	dataDir := t.TempDir()
	path := filepath.Join(dataDir, admintoken.FileName)
	if err := os.WriteFile(path, []byte("pca_from-another-database\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := admintoken.Bootstrap(context.Background(), st, dataDir, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "admin-token reset") {
		t.Fatalf("got %v, want an error pointing at admin-token reset", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "pca_from-another-database\n" {
		t.Fatal("the existing file was overwritten")
	}
	if n := len(storedHashes(t, dbURL)); n != 0 {
		t.Fatalf("%d tokens stored, want none", n)
	}
}

// TestBootstrapRaceHasOneWinner starts replicas together on one database, each with its
// own data dir: exactly one token is stored and exactly one file holds it.
func TestBootstrapRaceHasOneWinner(t *testing.T) {
	st, dbURL := storetest.Open(t)
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	var wg sync.WaitGroup
	errs := make([]error, len(dirs))
	for i, dir := range dirs {
		wg.Go(func() { errs[i] = admintoken.Bootstrap(context.Background(), st, dir, slog.New(slog.DiscardHandler)) })
	}
	wg.Wait()
	var files []string
	for i, dir := range dirs {
		if errs[i] != nil {
			t.Fatalf("bootstrap %d: %v", i, errs[i])
		}
		if _, err := os.Stat(filepath.Join(dir, admintoken.FileName)); err == nil {
			files = append(files, readToken(t, dir))
		}
	}
	hashes := storedHashes(t, dbURL)
	if len(files) != 1 || len(hashes) != 1 {
		t.Fatalf("%d files and %d stored tokens, want one of each", len(files), len(hashes))
	}
	if want := sha256.Sum256([]byte(files[0])); !bytes.Equal(hashes[0], want[:]) {
		t.Fatal("the surviving file does not hold the stored token")
	}
}

func TestMiddlewareAndReset(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.Open(t)
	dataDir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	if err := admintoken.Bootstrap(ctx, st, dataDir, log); err != nil {
		t.Fatal(err)
	}
	oldToken := readToken(t, dataDir)

	e := echo.New()
	e.HTTPErrorHandler = adminapi.ErrorHandler(log)
	e.GET("/admin/v1/ping", func(c echo.Context) error { return c.String(http.StatusOK, "pong") }, adminauth.Authenticate(st))
	srv := httptest.NewServer(e)
	defer srv.Close()
	call := func(auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/admin/v1/ping", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	tests := []struct {
		name string
		auth string
		want int
	}{
		{"valid", "Bearer " + oldToken, http.StatusOK},
		{"scheme is case-insensitive", "bearer " + oldToken, http.StatusOK},
		{"missing", "", http.StatusUnauthorized},
		{"wrong token", "Bearer pca_" + strings.Repeat("A", 43), http.StatusUnauthorized},
		{"not a bearer", "Basic " + oldToken, http.StatusUnauthorized},
		{"token without prefix", "Bearer " + strings.TrimPrefix(oldToken, "pca_"), http.StatusUnauthorized},
		{"oversized", "Bearer " + oldToken + strings.Repeat("x", 1024), http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := call(tc.auth)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, body)
			}
			if tc.want == http.StatusUnauthorized && !strings.Contains(body, `"code":"unauthorized"`) {
				t.Fatalf("401 body %s lacks code unauthorized", body)
			}
		})
	}

	t.Run("reset replaces the token", func(t *testing.T) {
		if err := admintoken.Reset(ctx, st, dataDir, log); err != nil {
			t.Fatalf("reset: %v", err)
		}
		newToken := readToken(t, dataDir)
		if newToken == oldToken {
			t.Fatal("reset kept the token")
		}
		if fi, _ := os.Stat(filepath.Join(dataDir, admintoken.FileName)); fi.Mode() != 0o600 {
			t.Fatalf("reset token file has mode %v", fi.Mode())
		}
		if status, _ := call("Bearer " + oldToken); status != http.StatusUnauthorized {
			t.Fatalf("old token after reset: %d", status)
		}
		if status, _ := call("Bearer " + newToken); status != http.StatusOK {
			t.Fatalf("new token after reset: %d", status)
		}
	})
}

// TestBootstrapIsMadeOnlyAtFirstStart: once a principal exists, a disabled
// bootstrap token is not made again at the next start.
func TestBootstrapIsMadeOnlyAtFirstStart(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.Open(t)
	dataDir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	if err := admintoken.Bootstrap(ctx, st, dataDir, log); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreatePrincipal(ctx, store.Principal{Name: "alice", Kind: store.PrincipalPerson,
		Roles: []store.RoleBinding{{Role: "admin"}}}); err != nil {
		t.Fatal(err)
	}
	if n, err := admintoken.Disable(ctx, st, dataDir, log); err != nil || n != 1 {
		t.Fatalf("disable: %d, %v", n, err)
	}
	if err := admintoken.Bootstrap(ctx, st, dataDir, log); err != nil {
		t.Fatal(err)
	}
	if has, err := st.HasAdminToken(ctx); err != nil || has {
		t.Fatalf("a bootstrap token was made again next to a principal: %v, %v", has, err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, admintoken.FileName)); !os.IsNotExist(err) {
		t.Fatalf("token file: %v", err)
	}
}
