package e2e

import (
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFileKeyOutsideTheKeyDirectoryIsRefused is the acceptance test of file keys:
// the admin API of a control plane with PORTCULLIS_KEY_DIR (and without
// PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE) refuses a deployment whose key_source "file"
// names a path outside that directory, with 422 validation_failed naming key_path,
// and accepts one inside it.
func TestFileKeyOutsideTheKeyDirectoryIsRefused(t *testing.T) {
	s := startStack(t)
	s.mustAdmin(t, http.StatusCreated, "POST", "/providers", map[string]any{"name": "openai", "kind": "openai"})
	keyDir := filepath.Dir(s.keyFile)
	for i, path := range []string{
		"/var/run/secrets/kubernetes.io/serviceaccount/token",
		keyDir + "-other/openai.key",
		keyDir + "/../vault-token",
	} {
		var out struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Fields  []struct {
					Field string `json:"field"`
				} `json:"fields"`
			} `json:"error"`
		}
		status, _ := s.admin(t, "POST", "/deployments", map[string]any{
			"name": "outside-" + string(rune('a'+i)), "provider": "openai", "region": "eu", "base_url": s.upURL["eu"],
			"key_source": "file", "key_path": path,
		}, &out)
		var fields []string
		for _, f := range out.Error.Fields {
			fields = append(fields, f.Field)
		}
		if status != http.StatusUnprocessableEntity || out.Error.Code != "validation_failed" || !slices.Equal(fields, []string{"key_path"}) ||
			!strings.Contains(out.Error.Message, "PORTCULLIS_KEY_DIR") {
			t.Fatalf("key_path %q: %d %+v, want 422 validation_failed naming key_path and PORTCULLIS_KEY_DIR", path, status, out.Error)
		}
	}
	s.mustAdmin(t, http.StatusCreated, "POST", "/deployments", map[string]any{
		"name": "inside", "provider": "openai", "region": "eu", "base_url": s.upURL["eu"],
		"key_source": "file", "key_path": s.keyFile,
	})
}
