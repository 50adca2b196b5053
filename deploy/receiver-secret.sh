#!/usr/bin/env bash
# Creates a receiver secret in AWS Secrets Manager: step 1 of Kargo's Quay guide ("configure
# a secret"), adapted to AWS. Idempotent: an existing secret for the same receiver is kept
# unless --rotate is given; rotating keeps the old secret as previousSecret, so the URL in
# Quay keeps working until you paste the new one. Prints no secret material unless --print.
#
#   deploy/receiver-secret.sh --project kargo-demo --receiver quay --secret-id quayhook/receivers/kargo-demo-quay
#       [--rotate] [--print]
#   (--project "" makes a cluster-level receiver: Warehouses of every namespace)
#
# Then print the URL for Quay:  quayhook url --base-url <ApiBaseUrl> --secret-id <id>
set -euo pipefail
QUAYHOOK=${QUAYHOOK:-quayhook}
PROJECT= PROJECT_SET=false RECEIVER= SECRET_ID= ROTATE=false PRINT=()
usage() { sed -n '2,12p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --project) PROJECT=$2; PROJECT_SET=true; shift 2 ;;
    --receiver) RECEIVER=$2; shift 2 ;;
    --secret-id) SECRET_ID=$2; shift 2 ;;
    --rotate) ROTATE=true; shift ;;
    --print) PRINT=(--print); shift ;;
    *) usage ;;
  esac
done
[ -n "$RECEIVER" ] && [ -n "$SECRET_ID" ] && [ "$PROJECT_SET" = true ] || usage
if [ "$ROTATE" = false ] && "$QUAYHOOK" url --base-url https://unused.invalid --secret-id "$SECRET_ID" >/dev/null 2>&1; then
  echo "$SECRET_ID already holds a receiver: kept (use --rotate to replace its secret)" >&2
  exit 0
fi
"$QUAYHOOK" secret new --project "$PROJECT" --receiver "$RECEIVER" --store "$SECRET_ID" "${PRINT[@]}"
