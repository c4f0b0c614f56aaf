# Vault policy "portcullis-controlplane": what the control plane's key rotator may do.
#
# The rotator writes each new key as a new KV v2 version (mount "secret", field
# "api_key", path secret/portcullis/<deployment>), records the rotation overlap and
# revoked versions in the secret's custom metadata, and destroys old versions on an
# emergency revoke. It never deletes a whole secret or its metadata: the version
# history stays for the audit.
#
# Load with: vault policy write portcullis-controlplane controlplane.hcl

# Write a new version (with check-and-set, so two rotations never race).
path "secret/data/portcullis/*" {
  capabilities = ["create", "update"]
}

# Read the version list (the vault_version minter detects an operator's new version
# this way) and patch the custom metadata: the previous version, the end of its
# overlap and the revoked versions. Vault needs "patch" for an HTTP PATCH.
path "secret/metadata/portcullis/*" {
  capabilities = ["read", "update", "patch"]
}

# Emergency revoke: destroy the revoked versions' data for good.
path "secret/destroy/portcullis/*" {
  capabilities = ["update"]
}

# The openai_admin minter's organization admin key, which creates and deletes project
# keys at OpenAI. Data planes have no access to it.
path "secret/data/portcullis-admin/*" {
  capabilities = ["read"]
}

# Emergency revoke of a vault_dynamic deployment: end every lease issued under its
# path at once (sys/leases/revoke-prefix needs sudo).
path "sys/leases/revoke-prefix/llm-provider/*" {
  capabilities = ["update", "sudo"]
}

# Keep the control plane's own token alive and learn its TTL.
path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
