package vaulttest

import (
	"net/http"
	"testing"
)

// These tests drive a real Vault over its HTTP API through what issue 5's key sources
// need: KV v2 versions and CAS, AppRole login with a read-only policy, a renewable token
// lease and a non-renewable KV v1 TTL lease. The values are fake keys.

func TestKVv2VersionsAndCAS(t *testing.T) {
	t.Parallel()
	v := Start(t)
	name := "portcullis/" + v.Unique("openai-eu")
	data, metadata := "secret/data/"+name, "secret/metadata/"+name

	status, resp := v.Do(t, http.MethodPost, data, map[string]any{
		"options": map[string]any{"cas": 0},
		"data":    map[string]any{"api_key": "sk-fake-one"},
	})
	wantStatus(t, "write version 1", status, http.StatusOK, resp)
	if got := path(resp, "data", "version"); got != float64(1) {
		t.Fatalf("first write: version %v, want 1", got)
	}

	status, resp = v.Do(t, http.MethodPost, data, map[string]any{
		"options": map[string]any{"cas": 1},
		"data":    map[string]any{"api_key": "sk-fake-two"},
	})
	wantStatus(t, "write version 2 with cas 1", status, http.StatusOK, resp)
	if got := path(resp, "data", "version"); got != float64(2) {
		t.Fatalf("second write: version %v, want 2", got)
	}

	status, resp = v.Do(t, http.MethodPost, data, map[string]any{
		"options": map[string]any{"cas": 1},
		"data":    map[string]any{"api_key": "sk-fake-stale"},
	})
	wantStatus(t, "write with stale cas 1", status, http.StatusBadRequest, resp)

	for _, tc := range []struct {
		name    string
		query   string
		version float64
		key     string
	}{
		{name: "version 1", query: "?version=1", version: 1, key: "sk-fake-one"},
		{name: "version 2", query: "?version=2", version: 2, key: "sk-fake-two"},
		{name: "latest", query: "", version: 2, key: "sk-fake-two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := v.Do(t, http.MethodGet, data+tc.query, nil)
			wantStatus(t, "read", status, http.StatusOK, resp)
			if got := path(resp, "data", "metadata", "version"); got != tc.version {
				t.Errorf("metadata.version %v, want %v", got, tc.version)
			}
			if got := path(resp, "data", "data", "api_key"); got != tc.key {
				t.Errorf("api_key is not the one written as %s", tc.name)
			}
		})
	}

	status, resp = v.Do(t, http.MethodGet, metadata, nil)
	wantStatus(t, "read metadata", status, http.StatusOK, resp)
	if got := path(resp, "data", "current_version"); got != float64(2) {
		t.Errorf("metadata current_version %v, want 2", got)
	}
	versions, _ := path(resp, "data", "versions").(map[string]any)
	if len(versions) != 2 || versions["1"] == nil || versions["2"] == nil {
		t.Errorf("metadata versions %v, want 1 and 2", versions)
	}
}

func TestAppRoleReadsButCannotWrite(t *testing.T) {
	t.Parallel()
	v := Start(t)
	mount := v.Unique("approle")
	policy := v.Unique("portcullis-dataplane")
	secret := "secret/data/portcullis/" + v.Unique("openai-eu")

	status, resp := v.Do(t, http.MethodPost, secret, map[string]any{"data": map[string]any{"api_key": "sk-fake"}})
	wantStatus(t, "seed secret", status, http.StatusOK, resp)
	status, resp = v.Do(t, http.MethodPost, "sys/auth/"+mount, map[string]any{"type": "approle"})
	wantStatus(t, "enable approle", status, http.StatusNoContent, resp)
	status, resp = v.Do(t, http.MethodPut, "sys/policies/acl/"+policy, map[string]any{
		"policy": `path "secret/data/portcullis/*" { capabilities = ["read"] }`,
	})
	wantStatus(t, "write policy", status, http.StatusNoContent, resp)
	role := "auth/" + mount + "/role/dataplane"
	status, resp = v.Do(t, http.MethodPost, role, map[string]any{
		"token_policies": []string{policy},
		"token_ttl":      "5m",
	})
	wantStatus(t, "create role", status, http.StatusNoContent, resp)

	status, resp = v.Do(t, http.MethodGet, role+"/role-id", nil)
	wantStatus(t, "read role_id", status, http.StatusOK, resp)
	roleID, _ := path(resp, "data", "role_id").(string)
	status, resp = v.Do(t, http.MethodPost, role+"/secret-id", nil)
	wantStatus(t, "create secret_id", status, http.StatusOK, resp)
	secretID, _ := path(resp, "data", "secret_id").(string)
	if roleID == "" || secretID == "" {
		t.Fatal("role_id or secret_id missing from Vault's answers")
	}

	status, resp = v.DoAs(t, "", http.MethodPost, "auth/"+mount+"/login", map[string]any{
		"role_id": roleID, "secret_id": secretID,
	})
	wantStatus(t, "approle login", status, http.StatusOK, resp)
	token, _ := path(resp, "auth", "client_token").(string)
	if token == "" {
		t.Fatal("approle login returned no client_token")
	}

	status, resp = v.DoAs(t, token, http.MethodGet, secret, nil)
	wantStatus(t, "read with approle token", status, http.StatusOK, resp)
	if got := path(resp, "data", "data", "api_key"); got != "sk-fake" {
		t.Error("approle token read a different value than the one seeded")
	}
	status, resp = v.DoAs(t, token, http.MethodPost, secret, map[string]any{"data": map[string]any{"api_key": "sk-fake-new"}})
	wantStatus(t, "write with approle token", status, http.StatusForbidden, resp)
}

func TestTokenLeaseIsRenewable(t *testing.T) {
	t.Parallel()
	v := Start(t)
	status, resp := v.Do(t, http.MethodPost, "auth/token/create", map[string]any{
		"ttl":      "30s",
		"policies": []string{"default"},
	})
	wantStatus(t, "create child token", status, http.StatusOK, resp)
	token, _ := path(resp, "auth", "client_token").(string)
	if token == "" {
		t.Fatal("token create returned no client_token")
	}
	if got := path(resp, "auth", "renewable"); got != true {
		t.Errorf("child token renewable %v, want true", got)
	}
	if got := path(resp, "auth", "lease_duration"); got != float64(30) {
		t.Errorf("child token lease_duration %v, want 30", got)
	}

	status, resp = v.DoAs(t, token, http.MethodPost, "auth/token/renew-self", map[string]any{"increment": "30s"})
	wantStatus(t, "renew-self", status, http.StatusOK, resp)
	if got := path(resp, "auth", "renewable"); got != true {
		t.Errorf("renewed token renewable %v, want true", got)
	}
	if got, _ := path(resp, "auth", "lease_duration").(float64); got <= 0 || got > 30 {
		t.Errorf("renewed token lease_duration %v, want in (0, 30]", got)
	}
}

func TestKVv1TTLLeaseIsNotRenewable(t *testing.T) {
	t.Parallel()
	v := Start(t)
	mount := v.Unique("kv1")
	status, resp := v.Do(t, http.MethodPost, "sys/mounts/"+mount, map[string]any{
		"type":    "kv",
		"options": map[string]any{"version": "1"},
	})
	wantStatus(t, "mount kv v1", status, http.StatusNoContent, resp)

	secret := mount + "/portcullis/openai-eu"
	status, resp = v.Do(t, http.MethodPost, secret, map[string]any{"api_key": "sk-fake", "ttl": "2s"})
	wantStatus(t, "write with ttl", status, http.StatusNoContent, resp)

	status, resp = v.Do(t, http.MethodGet, secret, nil)
	wantStatus(t, "read", status, http.StatusOK, resp)
	if got := path(resp, "lease_duration"); got != float64(2) {
		t.Errorf("lease_duration %v, want 2", got)
	}
	if got := path(resp, "renewable"); got != false {
		t.Errorf("renewable %v, want false", got)
	}
	if got := path(resp, "data", "api_key"); got != "sk-fake" {
		t.Error("read a different value than the one written")
	}
}

// wantStatus fails the test now if status is not want, showing Vault's errors.
func wantStatus(t *testing.T, what string, status, want int, resp map[string]any) {
	t.Helper()
	if status != want {
		t.Fatalf("%s: status %d, want %d; errors: %v", what, status, want, resp["errors"])
	}
}

// path walks nested JSON objects by key and returns the value there, or nil.
func path(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = obj[k]
	}
	return cur
}
