package signin

import (
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

func TestParseRoleMap(t *testing.T) {
	m, err := ParseRoleMap("admins=admin, ops=operator,ops=auditor,acme=tenant_admin:acme,")
	if err != nil {
		t.Fatal(err)
	}
	got := m.Bindings([]any{"ops", "acme", "unknown", 7})
	want := []store.RoleBinding{{Role: "operator", Source: "oidc"}, {Role: "auditor", Source: "oidc"},
		{Role: "tenant_admin", Tenant: "acme", Source: "oidc"}}
	if len(got) != len(want) {
		t.Fatalf("bindings %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("bindings %v, want %v", got, want)
		}
	}
	if b := m.Bindings("admins"); len(b) != 1 || b[0].Role != "admin" {
		t.Fatalf("a string claim: %v", b)
	}
	if b := m.Bindings(nil); len(b) != 0 {
		t.Fatalf("no claim: %v", b)
	}
	_, err = ParseRoleMap("x=root,y=tenant_admin,z=admin:acme,novalue")
	for _, want := range []string{`"root" is not a role`, "tenant_admin needs a tenant", "only tenant_admin names a tenant", "not value=role"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad map: %v, want it to say %q", err, want)
		}
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/": "/", "/clients?x=1": "/clients?x=1", "": "/", "//evil.example/": "/", "https://evil.example/": "/",
		`/\evil.example`: "/", "/a\r\nSet-Cookie: x": "/", "relative": "/", "/\t/evil.example/x": "/", "/\n/evil.example": "/",
		"/%09/evil.example": "/%09/evil.example", "/ /evil.example": "/", "/\u00a0/evil.example": "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}
