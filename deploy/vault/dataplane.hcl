# Vault policy "portcullis-dataplane": what a data-plane worker may do.
#
# A data plane only ever READS provider keys. It never writes, patches, deletes or
# destroys a secret: a compromised worker can use the keys it already sees, but it
# cannot plant a key of its own, hide a rotation or destroy the history.
#
# Keys are KV v2 secrets (mount "secret", field "api_key") at
# secret/portcullis/<deployment>. KV v2 puts the values under secret/data/ and the
# version list and custom metadata (rotation overlap, revoked versions) under
# secret/metadata/. The operator-only admin keys at secret/portcullis-admin/ are NOT
# covered: "portcullis/*" ends at a slash, so it never matches "portcullis-admin/".
#
# Load with: vault policy write portcullis-dataplane dataplane.hcl

# Read the current key or a named version (?version=N) of a deployment.
path "secret/data/portcullis/*" {
  capabilities = ["read"]
}

# Read a key's versions and its rotation metadata: the periodic check that catches a
# rotation whose event was missed.
path "secret/metadata/portcullis/*" {
  capabilities = ["read"]
}

# key_source "vault_dynamic": read a leased key from a dynamic secrets engine mounted
# at llm-provider/ ("+" is one path segment: the provider, e.g. openai).
path "llm-provider/+/creds/*" {
  capabilities = ["read"]
}

# Renew the leases of those dynamic keys before their TTL ends.
path "sys/leases/renew" {
  capabilities = ["update"]
}

# Keep the worker's own token alive and learn its TTL.
path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
