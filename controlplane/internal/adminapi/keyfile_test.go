package adminapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"
)

// TestFileKeysOnlyUnderTheKeyDirectory: a deployment with key_source "file" whose
// key_path is not under the control plane's PORTCULLIS_KEY_DIR is refused with 422
// naming key_path, unless the dev flag PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE is on;
// without a key directory every file key is refused.
func TestFileKeysOnlyUnderTheKeyDirectory(t *testing.T) {
	const keyDir = "/etc/portcullis/keys"
	deployment := func(name, path string) string {
		return `{"name":"` + name + `","provider":"openai","region":"eu","base_url":"https://api.example.com",` +
			`"key_source":"file","key_path":"` + path + `"}`
	}
	refused := func(t *testing.T, h *harness, name, path, want string) {
		t.Helper()
		r := h.do(http.MethodPost, "/admin/v1/deployments", deployment(name, path))
		if r.status != http.StatusUnprocessableEntity || r.errorCode(t) != "validation_failed" {
			t.Fatalf("key_path %q: %d %s, want 422 validation_failed", path, r.status, r.body)
		}
		if fields := r.errorFields(t); !slices.Equal(fields, []string{"key_path"}) {
			t.Fatalf("key_path %q: fields %v, want [key_path]", path, fields)
		}
		if !strings.Contains(string(r.body), want) {
			t.Fatalf("key_path %q: %s does not say %q", path, r.body, want)
		}
	}
	accepted := func(t *testing.T, h *harness, name, path string) {
		t.Helper()
		if r := h.do(http.MethodPost, "/admin/v1/deployments", deployment(name, path)); r.status != http.StatusCreated {
			t.Fatalf("key_path %q: %d %s, want 201", path, r.status, r.body)
		}
	}

	t.Run("under the key directory", func(t *testing.T) {
		h := newHarness(t, func(a *adminapi.API) { a.KeyFiles(keyDir, false) })
		h.fixture()
		accepted(t, h, "inside", keyDir+"/openai-eu")
		for i, path := range []string{
			"/var/lib/portcullis/vault-token",            // another secret of the worker
			keyDir + "/../../../run/secrets/vault-token", // an escape
			keyDir + "-old/openai-eu",                    // a sibling sharing the prefix
			keyDir,                                       // the directory itself
			"keys/openai-eu",                             // relative
			keyDir + "/./openai-eu",
		} {
			refused(t, h, "outside-"+string(rune('a'+i)), path, "PORTCULLIS_KEY_DIR")
		}
		// An update that moves the key out is refused too.
		r := h.do(http.MethodPatch, "/admin/v1/deployments/inside", `{"key_path":"/etc/shadow"}`, "If-Match", `"1"`)
		if r.status != http.StatusUnprocessableEntity || !slices.Equal(r.errorFields(t), []string{"key_path"}) {
			t.Fatalf("update out of the directory: %d %s", r.status, r.body)
		}
	})
	t.Run("without a key directory", func(t *testing.T) {
		h := newHarness(t, func(a *adminapi.API) { a.KeyFiles("", false) })
		h.fixture()
		refused(t, h, "nodir", keyDir+"/openai-eu", "PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE")
	})
	t.Run("dev flag", func(t *testing.T) {
		h := newHarness(t, func(a *adminapi.API) { a.KeyFiles(keyDir, true) })
		h.fixture()
		accepted(t, h, "anywhere", "/tmp/dev-keys/openai.key")
	})
}
