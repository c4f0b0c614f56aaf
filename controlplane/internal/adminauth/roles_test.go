package adminauth

import (
	"os"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// TestDocsRoleTable: docs/admin-identity.md shows the roles as the code has them.
func TestDocsRoleTable(t *testing.T) {
	raw, err := os.ReadFile("../../../docs/admin-identity.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "-->\n")
	table, _, ok2 := strings.Cut(rest, "<!-- end of role table -->")
	if !ok || !ok2 {
		t.Fatal("docs/admin-identity.md lacks the role table markers")
	}
	if table != RoleTable() {
		t.Fatalf("docs/admin-identity.md's role table is stale; it should read:\n%s", RoleTable())
	}
	for _, p := range AllPermissions() {
		if descriptions[p] == "" {
			t.Errorf("permission %s has no description", p)
		}
	}
}

func TestIdentityGrants(t *testing.T) {
	id := NewIdentity("p", "service", CredToken, "tok_1", []store.RoleBinding{
		{Role: "tenant_admin", Tenant: "b"}, {Role: "tenant_admin", Tenant: "a"}, {Role: "auditor"},
	}, "")
	if all, tenants, ok := id.Allows(ClientsWrite); !ok || all || strings.Join(tenants, ",") != "a,b" {
		t.Fatalf("clients:write = %v %v %v, want tenants a and b", all, tenants, ok)
	}
	if !id.Can(ClientsRead) || !id.Can(ChangesRead) || id.Can(TenantsWrite) {
		t.Fatal("auditor's reads are global; its writes none")
	}
	if got := id.RolesString(); got != "auditor,tenant_admin:a,tenant_admin:b" {
		t.Fatalf("roles %q", got)
	}
	narrow := NewIdentity("p", "service", CredToken, "tok_1", []store.RoleBinding{{Role: "admin"}, {Role: "auditor"}}, "auditor")
	if narrow.Can(TenantsWrite) || !narrow.Can(AuditExport) || narrow.HasRole(Admin) {
		t.Fatal("a token narrowed to auditor keeps admin rights")
	}
	if b := BootstrapIdentity(); b.Can(TenantsRead) || !b.Can(PrincipalsWrite) {
		t.Fatal("the bootstrap token may only manage principals")
	}
	if g := BreakGlassIdentity(); !g.Can(SecretsRevoke) || !g.Can(PrincipalsWrite) {
		t.Fatal("the break-glass token may do everything")
	}
}
