#!/usr/bin/env bash
# Turns the quayhook ServiceAccount (deploy/rbac.yaml) into a self-contained kubeconfig
# (server, CA data, bearer token) and stores it in AWS Secrets Manager. Idempotent: re-running
# writes a new version of the same secret. Prints no secret material unless --print is given.
#
#   deploy/kubeconfig-secret.sh --secret-id quayhook/kubeconfig [--context CTX]
#       [--namespace quayhook] [--service-account quayhook] [--server URL]
#       [--token-from auto|secret|request] [--expiration-seconds 31536000] [--print]
#
# --token-from secret   the token of the quayhook-token Secret (filled by the token controller)
# --token-from request  a bound token from the TokenRequest API, valid for
#                       --expiration-seconds (the API server may cap it); rerun before expiry
# --token-from auto     the Secret's token if it is filled in, else a TokenRequest (default)
#
# Needs kubectl, and the quayhook CLI (set QUAYHOOK=path; `cargo install --path . --locked`).
set -euo pipefail
KUBECTL=${KUBECTL:-kubectl}
QUAYHOOK=${QUAYHOOK:-quayhook}
SECRET_ID= CONTEXT= NAMESPACE=quayhook SA=quayhook SERVER= TOKEN_FROM=auto EXPIRATION=31536000 PRINT=false
usage() { sed -n '2,16p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --secret-id) SECRET_ID=$2; shift 2 ;;
    --context) CONTEXT=$2; shift 2 ;;
    --namespace) NAMESPACE=$2; shift 2 ;;
    --service-account) SA=$2; shift 2 ;;
    --server) SERVER=$2; shift 2 ;;
    --token-from) TOKEN_FROM=$2; shift 2 ;;
    --expiration-seconds) EXPIRATION=$2; shift 2 ;;
    --print) PRINT=true; shift ;;
    *) usage ;;
  esac
done
[ -n "$SECRET_ID" ] || usage
kc() { if [ -n "$CONTEXT" ]; then "$KUBECTL" --context "$CONTEXT" "$@"; else "$KUBECTL" "$@"; fi; }

if [ -z "$SERVER" ]; then
  SERVER=$(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')
fi
CA_DATA=$(kc config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
if [ -z "$CA_DATA" ]; then
  CA_FILE=$(kc config view --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')
  [ -n "$CA_FILE" ] && CA_DATA=$(base64 -w0 <"$CA_FILE")
fi

TOKEN=
if [ "$TOKEN_FROM" != request ]; then
  TOKEN=$(kc -n "$NAMESPACE" get secret "$SA-token" -o jsonpath='{.data.token}' 2>/dev/null | base64 -d || true)
  if [ -z "$CA_DATA" ]; then
    CA_DATA=$(kc -n "$NAMESPACE" get secret "$SA-token" -o jsonpath='{.data.ca\.crt}' 2>/dev/null || true)
  fi
  if [ -z "$TOKEN" ] && [ "$TOKEN_FROM" = secret ]; then
    echo "secret $NAMESPACE/$SA-token has no token yet (is the token controller running?)" >&2; exit 1
  fi
fi
if [ -z "$TOKEN" ]; then
  # The TokenRequest API through a raw JSON call: works on every API server, including a bare
  # one with no token controller.
  REQUEST='{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":'"$EXPIRATION"'}}'
  TOKEN=$(printf '%s' "$REQUEST" | kc create --raw "/api/v1/namespaces/$NAMESPACE/serviceaccounts/$SA/token" -f - |
    grep -o '"token":"[^"]*"' | head -n 1 | cut -d'"' -f4)
  echo "using a TokenRequest token valid for up to ${EXPIRATION}s: re-run this script before it expires" >&2
fi
[ -n "$TOKEN" ] || { echo "could not obtain a token for $NAMESPACE/$SA" >&2; exit 1; }

CLUSTER="    server: $SERVER"
[ -n "$CA_DATA" ] && CLUSTER="$CLUSTER
    certificate-authority-data: $CA_DATA"
KUBECONFIG_TEXT="apiVersion: v1
kind: Config
current-context: quayhook
clusters:
- name: target
  cluster:
$CLUSTER
users:
- name: quayhook
  user:
    token: $TOKEN
contexts:
- name: quayhook
  context:
    cluster: target
    user: quayhook
"
printf '%s' "$KUBECONFIG_TEXT" | "$QUAYHOOK" secret put --secret-id "$SECRET_ID" --kubeconfig
if [ "$PRINT" = true ]; then printf '%s' "$KUBECONFIG_TEXT"; fi
echo "kubeconfig for $NAMESPACE/$SA on $SERVER stored in $SECRET_ID" >&2
