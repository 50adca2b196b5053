#!/usr/bin/env bash
# Issues a token for the quayhook ServiceAccount (deploy/rbac.sh) and stores a self-contained
# kubeconfig with it (server, CA data, bearer token) in AWS Secrets Manager. Run with your own
# cluster credentials; prints no secret material unless --print.
#
#   deploy/kubeconfig-secret.sh --secret-id quayhook/kubeconfig [--expiry 7d] [--grace 0]
#       [--context CTX] [--namespace quayhook] [--service-account quayhook] [--server URL]
#       [--kms-key-id KEY] [--print] [--rotate]
#       [--token-from bound|secret]
#
# Every run is a rotation, make-before-break:
#   1. a new binding Secret <sa>-token-binding-<generation> (type Opaque, no data) is created;
#   2. a TokenRequest token is minted, bound to that Secret (boundObjectRef) and valid for
#      --expiry (default 7d; at least 10m; the API server may shorten it);
#   3. the kubeconfig is stored in --secret-id (a new version of the secret), and only then
#   4. after --grace (default 0), the binding Secrets of earlier runs for the same --secret-id
#      are deleted, which revokes the tokens bound to them.
# If a step fails, the new binding is deleted and the stored kubeconfig and old token stay.
# The function re-reads the kubeconfig secret when its token is rejected (401), so a revoked
# token costs one retry. Re-run (or --rotate, the same) well before the token expires, e.g.
# daily from CI for the 7-day default; `quayhook check` shows how long the stored token has.
# Revoke every token at once: kubectl -n quayhook delete secret -l quayhook.io/token-for=quayhook
#
# --expiry       7d, 24h, 90m, 3600s or plain seconds (--expiration-seconds N: the same)
# --grace        wait this long (same units) between storing the new token and revoking the
#                old ones, for a function that should never see a 401
# --kms-key-id   create the secret encrypted with this KMS key (needs the aws CLI)
# --token-from secret  NOT recommended: the non-expiring token of the <sa>-token Secret
#                (deploy/rbac.sh --legacy-token-secret); no expiry, no rotation, revoked only
#                by deleting that Secret
#
# Needs kubectl, and the quayhook CLI (set QUAYHOOK=path; `cargo install --path . --locked`).
# Your credentials need, in the ServiceAccount's namespace: create on serviceaccounts/token,
# and get, list, create, patch (an expiry annotation) and delete on secrets.
set -euo pipefail
KUBECTL=${KUBECTL:-kubectl}
QUAYHOOK=${QUAYHOOK:-quayhook}
# shellcheck source=deploy/lib.sh
. "$(dirname "$0")/lib.sh"
SECRET_ID= CONTEXT= NAMESPACE=quayhook SA=quayhook SERVER= TOKEN_FROM=bound EXPIRY=7d GRACE=0
KMS_KEY= PRINT=false
usage() { sed -n '2,34p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --secret-id | --context | --namespace | --service-account | --server | --token-from | \
    --expiry | --expiration-seconds | --grace | --kms-key-id)
      [ $# -ge 2 ] || usage
      case "$1" in
        --secret-id) SECRET_ID=$2 ;;
        --context) CONTEXT=$2 ;;
        --namespace) NAMESPACE=$2 ;;
        --service-account) SA=$2 ;;
        --server) SERVER=$2 ;;
        --token-from) TOKEN_FROM=$2 ;;
        --expiry | --expiration-seconds) EXPIRY=$2 ;;
        --grace) GRACE=$2 ;;
        --kms-key-id) KMS_KEY=$2 ;;
      esac
      shift 2 ;;
    --print) PRINT=true; shift ;;
    --rotate) shift ;; # every run rotates; accepted for readability in CI jobs
    *) usage ;;
  esac
done
[ -n "$SECRET_ID" ] || usage
case "$TOKEN_FROM" in bound | request | secret) ;; *) usage ;; esac

# seconds DURATION: 7d, 24h, 90m, 3600s or 3600 in seconds.
seconds() {
  local n=${1%[dhms]} unit=${1##*[0-9]}
  case "$n" in '' | *[!0-9]*) echo "invalid duration: $1 (use 7d, 24h, 90m, 3600s)" >&2; return 1 ;; esac
  case "$unit" in
    d) echo $((n * 86400)) ;;
    h) echo $((n * 3600)) ;;
    m) echo $((n * 60)) ;;
    s | "") echo "$n" ;;
    *) echo "invalid duration: $1" >&2; return 1 ;;
  esac
}
EXPIRATION=$(seconds "$EXPIRY")
GRACE_SECONDS=$(seconds "$GRACE")
if [ "$EXPIRATION" -lt 600 ]; then
  echo "--expiry must be at least 10m (the TokenRequest minimum)" >&2; exit 2
fi

kc() { if [ -n "$CONTEXT" ]; then "$KUBECTL" --context "$CONTEXT" "$@"; else "$KUBECTL" "$@"; fi; }

if [ -z "$SERVER" ]; then
  SERVER=$(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')
fi
CA_DATA=$(kc config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
if [ -z "$CA_DATA" ]; then
  CA_FILE=$(kc config view --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')
  if [ -n "$CA_FILE" ]; then CA_DATA=$(base64 -w0 <"$CA_FILE"); fi
fi

# kubeconfig TOKEN: the kubeconfig text quayhook stores.
kubeconfig() {
  local cluster="    server: $SERVER"
  if [ -n "$CA_DATA" ]; then cluster="$cluster
    certificate-authority-data: $CA_DATA"; fi
  printf '%s' "apiVersion: v1
kind: Config
current-context: quayhook
clusters:
- name: target
  cluster:
$cluster
users:
- name: quayhook
  user:
    token: $1
contexts:
- name: quayhook
  context:
    cluster: target
    user: quayhook
"
}

# store TOKEN: writes the kubeconfig to Secrets Manager (validated by quayhook first).
store() {
  if [ -n "$KMS_KEY" ]; then ensure_kms_secret "$SECRET_ID" "$KMS_KEY"; fi
  kubeconfig "$1" | "$QUAYHOOK" secret put --secret-id "$SECRET_ID" --kubeconfig
  if [ "$PRINT" = true ]; then kubeconfig "$1"; fi
}

if [ "$TOKEN_FROM" = secret ]; then
  echo "WARNING: --token-from secret stores a token that never expires; prefer the default" >&2
  TOKEN=$(kc -n "$NAMESPACE" get secret "$SA-token" -o jsonpath='{.data.token}' | base64 -d)
  if [ -z "$CA_DATA" ]; then
    CA_DATA=$(kc -n "$NAMESPACE" get secret "$SA-token" -o jsonpath='{.data.ca\.crt}')
  fi
  if [ -z "$TOKEN" ]; then
    echo "secret $NAMESPACE/$SA-token has no token yet (is the token controller running?)" >&2
    exit 1
  fi
  store "$TOKEN"
  echo "kubeconfig for $NAMESPACE/$SA (non-expiring token) on $SERVER stored in $SECRET_ID" >&2
  exit 0
fi

# The binding Secrets of this ServiceAccount, numbered by generation across all of them; the
# ones made for this kubeconfig secret (a label value cannot hold the id's slashes: its
# SHA-256 prefix does) are revoked once the new token is stored.
FOR_SECRET=$(printf '%s' "$SECRET_ID" | sha256sum | cut -c1-40)
LISTED=$(kc -n "$NAMESPACE" get secrets -l "quayhook.io/token-for=$SA" -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.labels.quayhook\.io/generation}{" "}{.metadata.labels.quayhook\.io/kubeconfig-secret}{"\n"}{end}')
OLD_BINDINGS=()
GENERATION=0
while read -r name generation for_secret; do
  [ -n "$name" ] || continue
  if [ "$for_secret" = "$FOR_SECRET" ]; then OLD_BINDINGS+=("$name"); fi
  case "$generation" in
    '' | *[!0-9]*) ;;
    *) if [ "$generation" -gt "$GENERATION" ]; then GENERATION=$generation; fi ;;
  esac
done <<<"$LISTED"
GENERATION=$((GENERATION + 1))
BINDING="$SA-token-binding-$GENERATION"

# 1. The binding Secret. Deleting it revokes the token bound to it.
BINDING_UID=$(kc -n "$NAMESPACE" create --validate=false -o jsonpath='{.metadata.uid}' -f - <<EOF
{
  "apiVersion": "v1",
  "kind": "Secret",
  "type": "Opaque",
  "metadata": {
    "name": "$BINDING",
    "namespace": "$NAMESPACE",
    "labels": {
      "app.kubernetes.io/name": "quayhook",
      "quayhook.io/token-for": "$SA",
      "quayhook.io/kubeconfig-secret": "$FOR_SECRET",
      "quayhook.io/generation": "$GENERATION"
    },
    "annotations": {
      "quayhook.io/kubeconfig-secret-id": "$SECRET_ID",
      "quayhook.io/purpose": "The quayhook token stored in that secret is bound to this Secret: deleting it revokes the token."
    }
  }
}
EOF
)
[ -n "$BINDING_UID" ] || { echo "could not create secret $NAMESPACE/$BINDING" >&2; exit 1; }
STORED=false
cleanup() {
  if [ "$STORED" = false ]; then
    echo "not stored: deleting $NAMESPACE/$BINDING (revokes the new token); $SECRET_ID and the old token are unchanged" >&2
    kc -n "$NAMESPACE" delete secret "$BINDING" --ignore-not-found >/dev/null || true
  fi
}
trap cleanup EXIT

# 2. The token, bound to it. The TokenRequest API through a raw JSON call: works with every
# kubectl and API server.
REQUEST='{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":'"$EXPIRATION"',"boundObjectRef":{"kind":"Secret","apiVersion":"v1","name":"'"$BINDING"'","uid":"'"$BINDING_UID"'"}}}'
RESPONSE=$(printf '%s' "$REQUEST" | kc create --raw "/api/v1/namespaces/$NAMESPACE/serviceaccounts/$SA/token" -f -)
TOKEN=$(printf '%s' "$RESPONSE" | grep -o '"token":"[^"]*"' | head -n 1 | cut -d'"' -f4)
EXPIRES=$(printf '%s' "$RESPONSE" | grep -o '"expirationTimestamp":"[^"]*"' | head -n 1 | cut -d'"' -f4)
unset RESPONSE
[ -n "$TOKEN" ] || { echo "could not obtain a token for $NAMESPACE/$SA" >&2; exit 1; }

# 3. Store it.
store "$TOKEN"
STORED=true
unset TOKEN
kc -n "$NAMESPACE" annotate secret "$BINDING" "quayhook.io/expires=$EXPIRES" >/dev/null || true
echo "kubeconfig for $NAMESPACE/$SA on $SERVER stored in $SECRET_ID: token bound to secret $NAMESPACE/$BINDING, expires $EXPIRES; re-run this script before then" >&2

# 4. Revoke the tokens of earlier runs.
if [ ${#OLD_BINDINGS[@]} -gt 0 ]; then
  if [ "$GRACE_SECONDS" -gt 0 ]; then
    echo "revoking the previous token(s) in ${GRACE_SECONDS}s" >&2
    sleep "$GRACE_SECONDS"
  fi
  kc -n "$NAMESPACE" delete secret --ignore-not-found "${OLD_BINDINGS[@]}" >/dev/null
  echo "revoked the previous token(s): deleted ${OLD_BINDINGS[*]}" >&2
fi
