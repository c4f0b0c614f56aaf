package vaultclient

import (
	"slices"

	"github.com/portcullis-gw/portcullis/shared/config"
)

// DefaultConfig is the Vault settings' defaults, the flags' among them: no Vault,
// token auth, and the Kubernetes service-account token where Kubernetes mounts it.
func DefaultConfig() Config {
	return Config{Auth: AuthToken, K8sJWTFile: DefaultK8sJWTFile}
}

// Flags registers the Vault settings on l (PORTCULLIS_VAULT_*), for every binary
// that reads keys from Vault, with DefaultConfig's values as the defaults. Vault is
// off while the address is empty.
func Flags(l *config.Loader, c *Config) {
	d := DefaultConfig()
	l.String(&c.Addr, "vault-addr", d.Addr, "Vault address, e.g. https://vault.internal:8200; empty: no Vault (key sources vault and vault_dynamic are unusable)")
	l.String(&c.CAFile, "vault-ca-file", "", "PEM file of the CA certificates that sign Vault's certificate")
	l.String(&c.Auth, "vault-auth", d.Auth, "how to log in to Vault: token, approle or kubernetes")
	l.String(&c.TokenFile, "vault-token-file", "", "token auth: file holding the Vault token (re-read before it expires, e.g. a Vault agent sink)")
	l.String(&c.RoleID, "vault-role-id", "", "approle auth: the role id")
	l.String(&c.SecretIDFile, "vault-secret-id-file", "", "approle auth: file holding the secret id")
	l.String(&c.K8sRole, "vault-k8s-role", "", "kubernetes auth: the Vault role")
	l.String(&c.K8sJWTFile, "vault-k8s-jwt-file", d.K8sJWTFile, "kubernetes auth: the service-account token file")
	l.String(&c.Mount, "vault-auth-mount", "", "mount path of the approle or kubernetes auth method (default: its name)")
}

// Enabled reports whether a Vault is configured.
func (c Config) Enabled() bool { return c.Addr != "" }

// Check adds a problem to p for each Vault setting that cannot work; nothing when
// Vault is off.
func (c Config) Check(p *config.Problems) {
	if !c.Enabled() {
		return
	}
	if !slices.Contains(AuthMethods, c.Auth) {
		p.Add("vault-auth", c.Auth, "must be token, approle or kubernetes")
		return
	}
	switch c.Auth {
	case AuthToken:
		if c.TokenFile == "" && c.Token == "" {
			p.Add("vault-token-file", c.TokenFile, "required with vault-auth token")
		}
	case AuthAppRole:
		if c.RoleID == "" {
			p.Add("vault-role-id", c.RoleID, "required with vault-auth approle")
		}
		if c.SecretIDFile == "" {
			p.Add("vault-secret-id-file", c.SecretIDFile, "required with vault-auth approle")
		}
	case AuthKubernetes:
		if c.K8sRole == "" {
			p.Add("vault-k8s-role", c.K8sRole, "required with vault-auth kubernetes")
		}
	}
}
