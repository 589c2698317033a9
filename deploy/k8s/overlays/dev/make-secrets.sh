#!/usr/bin/env bash
# Creates every Secret the dev overlay references, with random values, in the namespace (default juhe-dev).
#
#   deploy/k8s/overlays/dev/make-secrets.sh [namespace]            create the missing ones (kubectl)
#   deploy/k8s/overlays/dev/make-secrets.sh --print [namespace]    print them as YAML, touch nothing
#
# Idempotent: a Secret that already exists is kept as it is. Replacing one would lose data: a new
# credentials-encryption-key (or the cashier's secrets-encryption-key) cannot open the secrets sealed with the old
# one (rotate through the key ring instead: docs/operations.md, "Sealing keys"), and a new
# database password must go through CloudNativePG (docs/operations.md, "Rotating secrets"). Nothing is committed:
# the values exist only in the cluster. The identity sandbox and both of its callers share one secret: the
# gateway's `identity-secret` (onboarding's KYC) and the ledger's `wallet-identity-secret` (wallet KYC) get the same
# value, and the sandbox reads the gateway's. `juhe-pg-backup` is not needed (the dev overlay takes no backups).
set -euo pipefail

print=false
if [[ "${1:-}" == "--print" ]]; then
  print=true
  shift
fi
namespace="${1:-juhe-dev}"
services=(gateway cashier ledger routing settlement marketing migration)

hex() { openssl rand -hex "$1"; }          # URL-safe: database passwords go into URLs
b64() { openssl rand -base64 "$1"; }       # 32 bytes, base64: the AES-256 keys

# name, type, then key=value pairs
secret() {
  local name="$1" type="$2"
  shift 2
  if ! $print && kubectl -n "$namespace" get secret "$name" >/dev/null 2>&1; then
    echo "kept: secret/$name" >&2
    return
  fi
  local doc
  doc="apiVersion: v1
kind: Secret
metadata:
  name: $name
  namespace: $namespace
type: $type
stringData:"
  local pair
  for pair in "$@"; do
    doc+=$'\n'"  ${pair%%=*}: \"${pair#*=}\""
  done
  if $print; then
    printf -- '---\n%s\n' "$doc"
  else
    printf '%s\n' "$doc" | kubectl apply -f - >/dev/null
    echo "created: secret/$name" >&2
  fi
}

for svc in "${services[@]}"; do
  secret "juhe-pg-$svc" kubernetes.io/basic-auth "username=juhe_$svc" "password=$(hex 24)"
done
identity="$(hex 32)"
web_client_token="$(hex 32)"
secret juhe-internal-token Opaque "secret=$(hex 32)"
# The sealing key rings start with one key, id k1, and no retired key (docs/operations.md, "Sealing keys").
secret juhe-gateway Opaque "credentials-encryption-key=$(b64 32)" "credentials-encryption-key-id=k1" \
  "credentials-retired-keys={}" "identity-secret=$identity"
secret juhe-cashier Opaque "secrets-encryption-key=$(b64 32)" "secrets-encryption-key-id=k1" "secrets-retired-keys={}"
secret juhe-ledger Opaque "wallet-identity-secret=$identity"
secret juhe-settlement Opaque "bank-secret=$(hex 32)"
secret juhe-web Opaque "session-key=$(b64 32)" "gateway-client-token=$web_client_token"
