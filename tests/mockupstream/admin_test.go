package mockupstream_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

const (
	adminKey    = "sk-admin-test-0123456789abcdef"
	projectPath = "/v1/organization/projects/proj_test/service_accounts"
)

var adminAuth = http.Header{"Authorization": {"Bearer " + adminKey}}

type createdAccount struct {
	Object    string `json:"object"`
	ID        string `json:"id"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	CreatedAt int64  `json:"created_at"`
	APIKey    *struct {
		Object    string `json:"object"`
		Value     string `json:"value"`
		Name      string `json:"name"`
		CreatedAt int64  `json:"created_at"`
		ID        string `json:"id"`
		ExpiresAt *int64 `json:"expires_at"`
	} `json:"api_key"`
}

type accountList struct {
	Object string `json:"object"`
	Data   []struct {
		Object string `json:"object"`
		ID     string `json:"id"`
		Name   string `json:"name"`
		Role   string `json:"role"`
	} `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// create creates a service account through the admin API at base and returns it.
func create(t *testing.T, base, body string) createdAccount {
	t.Helper()
	resp, b := call(t, http.MethodPost, base+projectPath, body, adminAuth)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create %s: status %d: %s", body, resp.StatusCode, b)
	}
	return decodeJSON[createdAccount](t, b)
}

// TestAdminMintsAndDeletesKeys walks the openai_admin minter's path: create a service
// account, use its key, list, delete, and see the key refused.
func TestAdminMintsAndDeletesKeys(t *testing.T) {
	for _, prefix := range []string{"", "/d/openai-eu"} {
		t.Run("prefix "+prefix, func(t *testing.T) {
			m, url := start(t, mockupstream.Options{RequireKey: oldKey, AdminKey: adminKey})
			base := url + prefix
			before := time.Now().Unix()
			got := create(t, base, `{"name":"portcullis-openai-eu-v2"}`)
			if got.Object != "organization.project.service_account" || !strings.HasPrefix(got.ID, "svc_acct_") ||
				got.Name != "portcullis-openai-eu-v2" || got.Role != "member" || got.CreatedAt < before {
				t.Fatalf("created %+v", got)
			}
			k := got.APIKey
			if k == nil || k.Object != "organization.project.service_account.api_key" || !strings.HasPrefix(k.Value, "sk-svcacct-") ||
				len(k.Value) < 40 || k.Name != "Secret Key" || !strings.HasPrefix(k.ID, "key_") || k.ExpiresAt != nil {
				t.Fatalf("api_key %+v", k)
			}
			if other := create(t, base, `{"name":"other"}`); other.APIKey.Value == k.Value || other.ID == got.ID {
				t.Fatal("two accounts got the same key or id")
			}
			if n := m.AcceptedKeys(); n != 3 {
				t.Fatalf("AcceptedKeys %d after two creates, want 3", n)
			}
			if s := chatStatus(t, base, k.Value); s != 200 {
				t.Fatalf("chat with the minted key: status %d", s)
			}
			if s := chatStatus(t, base, oldKey); s != 200 {
				t.Fatalf("chat with the old key: status %d", s)
			}

			resp, b := call(t, http.MethodGet, base+projectPath, "", adminAuth)
			list := decodeJSON[accountList](t, b)
			if resp.StatusCode != 200 || list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != got.ID ||
				list.Data[0].Object != "organization.project.service_account" || list.HasMore ||
				list.FirstID == nil || *list.FirstID != got.ID {
				t.Fatalf("list: status %d: %s", resp.StatusCode, b)
			}
			if strings.Contains(string(b), k.Value) || strings.Contains(string(b), "api_key") {
				t.Fatalf("the list shows a key: %s", b)
			}
			resp, b = call(t, http.MethodGet, base+projectPath+"/"+got.ID, "", adminAuth)
			if resp.StatusCode != 200 || strings.Contains(string(b), k.Value) || decodeJSON[createdAccount](t, b).Name != got.Name {
				t.Fatalf("get: status %d: %s", resp.StatusCode, b)
			}
			accounts := m.ServiceAccounts()
			if len(accounts) != 2 || accounts[0].ID != got.ID || accounts[0].Project != "proj_test" ||
				accounts[0].KeyFingerprint != mockupstream.Fingerprint(k.Value) {
				t.Fatalf("ServiceAccounts %+v", accounts)
			}

			resp, b = call(t, http.MethodDelete, base+projectPath+"/"+got.ID, "", adminAuth)
			if resp.StatusCode != 200 || strings.TrimSpace(string(b)) !=
				`{"object":"organization.project.service_account.deleted","id":"`+got.ID+`","deleted":true}` {
				t.Fatalf("delete: status %d: %s", resp.StatusCode, b)
			}
			if s := chatStatus(t, base, k.Value); s != 401 {
				t.Errorf("chat with the deleted account's key: status %d, want 401", s)
			}
			if s := chatStatus(t, base, oldKey); s != 200 {
				t.Errorf("chat with the old key after the delete: status %d", s)
			}
			if n := m.AcceptedKeys(); n != 2 {
				t.Errorf("AcceptedKeys %d after the delete, want 2", n)
			}
			for _, method := range []string{http.MethodDelete, http.MethodGet} {
				resp, b = call(t, method, base+projectPath+"/"+got.ID, "", adminAuth)
				if e := decodeJSON[openAIError](t, b); resp.StatusCode != 404 || e.Error == nil || e.Error.Type != "invalid_request_error" {
					t.Errorf("%s of a deleted account: status %d: %s", method, resp.StatusCode, b)
				}
			}

			// Admin calls are not model requests: none was recorded.
			for _, r := range m.Requests() {
				if strings.HasPrefix(r.Path, "/v1/organization/") {
					t.Errorf("admin call recorded: %s %s", r.Method, r.Path)
				}
			}
		})
	}
}

func TestAdminRefusals(t *testing.T) {
	tests := []struct {
		name       string
		adminOff   bool // the mock has no admin key
		method     string
		path       string
		body       string
		header     http.Header
		wantStatus int
		wantParam  string
		wantCode   string
		secret     string // must not appear in the answer
	}{
		{name: "no admin key configured", adminOff: true, method: "POST", path: projectPath,
			body: `{"name":"x"}`, header: adminAuth, wantStatus: 404},
		{name: "no auth", method: "POST", path: projectPath, body: `{"name":"x"}`,
			wantStatus: 401, wantCode: "invalid_api_key"},
		{name: "wrong admin key", method: "POST", path: projectPath, body: `{"name":"x"}`,
			header:     http.Header{"Authorization": {"Bearer sk-admin-wrong-0123456789"}},
			wantStatus: 401, wantCode: "invalid_api_key", secret: "sk-admin-wrong-0123456789"},
		{name: "a model key is not an admin key", method: "GET", path: projectPath,
			header:     http.Header{"Authorization": {"Bearer " + oldKey}},
			wantStatus: 401, wantCode: "invalid_api_key", secret: oldKey},
		{name: "missing name", method: "POST", path: projectPath, body: `{}`, header: adminAuth,
			wantStatus: 400, wantParam: "name"},
		{name: "bad JSON", method: "POST", path: projectPath, body: `{"name":`, header: adminAuth, wantStatus: 400},
		{name: "expiry out of range", method: "POST", path: projectPath, body: `{"name":"x","expires_in_seconds":0}`,
			header: adminAuth, wantStatus: 400, wantParam: "expires_in_seconds"},
		{name: "expiry without a key", method: "POST", path: projectPath,
			body:   `{"name":"x","create_service_account_only":true,"expires_in_seconds":60}`,
			header: adminAuth, wantStatus: 400, wantParam: "expires_in_seconds"},
		{name: "bad limit", method: "GET", path: projectPath + "?limit=101", header: adminAuth, wantStatus: 400, wantParam: "limit"},
		{name: "unknown after", method: "GET", path: projectPath + "?after=svc_acct_nope", header: adminAuth,
			wantStatus: 400, wantParam: "after"},
		{name: "unknown account", method: "DELETE", path: projectPath + "/svc_acct_nope", header: adminAuth, wantStatus: 404},
		{name: "other admin path", method: "GET", path: "/v1/organization/users", header: adminAuth, wantStatus: 404},
		{name: "no project", method: "GET", path: "/v1/organization/projects//service_accounts", header: adminAuth, wantStatus: 404},
		{name: "wrong method", method: "PUT", path: projectPath, header: adminAuth, wantStatus: 405},
		{name: "wrong method on an account", method: "POST", path: projectPath + "/svc_acct_x", header: adminAuth, wantStatus: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := mockupstream.Options{RequireKey: oldKey, AdminKey: adminKey}
			if tc.adminOff {
				opts.AdminKey = ""
			}
			m, url := start(t, opts)
			resp, b := call(t, tc.method, url+tc.path, tc.body, tc.header)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, b)
			}
			e := decodeJSON[openAIError](t, b)
			if e.Error == nil || e.Error.Message == "" || e.Error.Type != "invalid_request_error" {
				t.Fatalf("body %s, want an OpenAI invalid_request_error", b)
			}
			if tc.wantParam != "" && (e.Error.Param == nil || *e.Error.Param != tc.wantParam) {
				t.Errorf("param %v, want %q", e.Error.Param, tc.wantParam)
			}
			if tc.wantCode != "" && (e.Error.Code == nil || *e.Error.Code != tc.wantCode) {
				t.Errorf("code %v, want %q", e.Error.Code, tc.wantCode)
			}
			if strings.Contains(string(b), adminKey) || (tc.secret != "" && strings.Contains(string(b), tc.secret)) {
				t.Errorf("the answer echoes a key: %s", b)
			}
			if n := len(m.ServiceAccounts()); n != 0 {
				t.Errorf("a refused call left %d accounts", n)
			}
		})
	}
}

// TestAdminKeyOptions covers the create options a minter may use: a key that expires,
// and an account without a key.
func TestAdminKeyOptions(t *testing.T) {
	m, url := start(t, mockupstream.Options{RequireKey: oldKey, AdminKey: adminKey})
	before := time.Now().Unix()
	expiring := create(t, url, `{"name":"short","expires_in_seconds":3600}`)
	if e := expiring.APIKey; e == nil || e.ExpiresAt == nil || *e.ExpiresAt < before+3600 || *e.ExpiresAt > time.Now().Unix()+3600 {
		t.Fatalf("api_key %+v, want expires_at an hour from now", e)
	}
	if s := chatStatus(t, url, expiring.APIKey.Value); s != 200 {
		t.Errorf("chat with the expiring key: status %d", s)
	}
	bare := create(t, url, `{"name":"bare","create_service_account_only":true}`)
	if bare.APIKey != nil || bare.Role != "none" {
		t.Errorf("account only: %+v, want no key and role none", bare)
	}
	if n := m.AcceptedKeys(); n != 2 {
		t.Errorf("AcceptedKeys %d, want 2", n)
	}
	if resp, b := call(t, http.MethodDelete, url+projectPath+"/"+bare.ID, "", adminAuth); resp.StatusCode != 200 {
		t.Errorf("delete the keyless account: status %d: %s", resp.StatusCode, b)
	}
	if n := m.AcceptedKeys(); n != 2 {
		t.Errorf("AcceptedKeys %d after deleting a keyless account, want 2", n)
	}
}

func TestAdminListPages(t *testing.T) {
	m, url := start(t, mockupstream.Options{AdminKey: adminKey})
	var ids []string
	for _, name := range []string{"a", "b", "c"} {
		ids = append(ids, create(t, url, `{"name":"`+name+`"}`).ID)
	}
	// An account of another project is neither listed nor deletable from this one.
	other := "/v1/organization/projects/proj_other/service_accounts"
	resp, b := call(t, http.MethodPost, url+other, `{"name":"elsewhere"}`, adminAuth)
	if resp.StatusCode != 200 {
		t.Fatalf("create in another project: status %d: %s", resp.StatusCode, b)
	}
	elsewhere := decodeJSON[createdAccount](t, b)
	if resp, _ := call(t, http.MethodDelete, url+projectPath+"/"+elsewhere.ID, "", adminAuth); resp.StatusCode != 404 {
		t.Errorf("delete another project's account: status %d, want 404", resp.StatusCode)
	}

	tests := []struct {
		name    string
		query   string
		wantIDs []string
		more    bool
	}{
		{name: "all", query: "", wantIDs: ids},
		{name: "first page", query: "?limit=2", wantIDs: ids[:2], more: true},
		{name: "second page", query: "?limit=2&after=" + ids[1], wantIDs: ids[2:]},
		{name: "past the end", query: "?after=" + ids[2], wantIDs: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := call(t, http.MethodGet, url+projectPath+tc.query, "", adminAuth)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			list := decodeJSON[accountList](t, b)
			var got []string
			for _, a := range list.Data {
				got = append(got, a.ID)
			}
			if strings.Join(got, ",") != strings.Join(tc.wantIDs, ",") || list.HasMore != tc.more {
				t.Errorf("listed %v (has_more %v), want %v (has_more %v)", got, list.HasMore, tc.wantIDs, tc.more)
			}
			if len(tc.wantIDs) == 0 && (list.FirstID != nil || list.LastID != nil || list.Data == nil) {
				t.Errorf("empty page %s, want data [] and null ids", b)
			}
		})
	}
	if n := len(m.ServiceAccounts()); n != 4 {
		t.Errorf("ServiceAccounts has %d, want 4", n)
	}
}

// TestAdminIgnoresFailuresAndSetAdminKey checks that injected failures leave the admin
// API alone, and that SetAdminKey replaces the admin key or turns the API off.
func TestAdminIgnoresFailuresAndSetAdminKey(t *testing.T) {
	m, url := start(t, mockupstream.Options{})
	if resp, _ := call(t, http.MethodGet, url+projectPath, "", adminAuth); resp.StatusCode != 404 {
		t.Fatalf("no admin key: status %d, want 404", resp.StatusCode)
	}
	m.SetAdminKey(adminKey)
	m.SetFailure(mockupstream.Fail500)
	m.SetDeploymentFailure("openai-eu", mockupstream.Fail429, time.Now().Add(time.Hour))
	for _, prefix := range []string{"", "/d/openai-eu"} {
		if resp, b := call(t, http.MethodGet, url+prefix+projectPath, "", adminAuth); resp.StatusCode != 200 {
			t.Errorf("admin list under %q with failures injected: status %d: %s", prefix, resp.StatusCode, b)
		}
	}
	m.SetAdminKey("sk-admin-second-0123456789")
	if resp, _ := call(t, http.MethodGet, url+projectPath, "", adminAuth); resp.StatusCode != 401 {
		t.Errorf("replaced admin key: status %d, want 401", resp.StatusCode)
	}
	m.SetAdminKey("")
	if resp, _ := call(t, http.MethodGet, url+projectPath, "", adminAuth); resp.StatusCode != 404 {
		t.Errorf("admin API turned off: status %d, want 404", resp.StatusCode)
	}
}
