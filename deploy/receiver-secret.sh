#!/usr/bin/env bash
# Creates a receiver secret in AWS Secrets Manager: step 1 of Kargo's Quay guide ("configure
# a secret"), adapted to AWS. Idempotent: an existing secret for the same receiver is kept
# unless --rotate is given; rotating keeps the old secret as previousSecret, so the URL in
# Quay keeps working until you paste the new one. Prints no secret material unless --print.
#
#   deploy/receiver-secret.sh --project kargo-demo --receiver quay --secret-id quayhook/receivers/kargo-demo-quay
#       [--rotate] [--print] [--kms-key-id KEY]
#   (--project "" makes a cluster-level receiver: Warehouses of every namespace)
#
# A new secret is written only when Secrets Manager says the secret does not exist
# (ResourceNotFoundException). Any other answer (access denied, a KMS failure, a secret marked
# for deletion, a secret holding something else or another receiver, an unreachable endpoint)
# stops the script with that cause and leaves the secret as it is.
# --kms-key-id   create the secret encrypted with this KMS key (needs the aws CLI)
#
# Then print the URL for Quay:  quayhook url --base-url <ApiBaseUrl> --secret-id <id>
set -euo pipefail
QUAYHOOK=${QUAYHOOK:-quayhook}
# shellcheck source=deploy/lib.sh
. "$(dirname "$0")/lib.sh"
PROJECT= PROJECT_SET=false RECEIVER= SECRET_ID= ROTATE=false PRINT=() KMS_KEY=
usage() { sed -n '2,17p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --project) [ $# -ge 2 ] || usage; PROJECT=$2; PROJECT_SET=true; shift 2 ;;
    --receiver) [ $# -ge 2 ] || usage; RECEIVER=$2; shift 2 ;;
    --secret-id) [ $# -ge 2 ] || usage; SECRET_ID=$2; shift 2 ;;
    --kms-key-id) [ $# -ge 2 ] || usage; KMS_KEY=$2; shift 2 ;;
    --rotate) ROTATE=true; shift ;;
    --print) PRINT=(--print); shift ;;
    *) usage ;;
  esac
done
[ -n "$RECEIVER" ] && [ -n "$SECRET_ID" ] && [ "$PROJECT_SET" = true ] || usage

# What the secret holds now, read as the function reads it. `quayhook url` prints
# "project<TAB>receiver<TAB>url" for a receiver, and "skipped: secret ID not found" when
# Secrets Manager answered ResourceNotFoundException for it (and only then: src/secrets.rs);
# a secret that exists with no value yet (created with --kms-key-id by a run that stopped)
# fails the whole read with ResourceNotFoundException, which is named in the cause.
ERR=$(mktemp)
trap 'rm -f "$ERR"' EXIT
if CURRENT=$("$QUAYHOOK" url --base-url https://unused.invalid --secret-id "$SECRET_ID" 2>"$ERR"); then
  IFS=$'\t' read -r held_project held_receiver _ <<<"$CURRENT"
  if [ "$held_project" = "(cluster)" ]; then held_project=; fi
  if [ "$held_project" != "$PROJECT" ] || [ "$held_receiver" != "$RECEIVER" ]; then
    echo "$SECRET_ID holds receiver \"$held_receiver\" of project \"$held_project\", not \"$RECEIVER\" of \"$PROJECT\": left as it is (pick another --secret-id)" >&2
    exit 1
  fi
  if [ "$ROTATE" = false ]; then
    echo "$SECRET_ID already holds a receiver: kept (use --rotate to replace its secret)" >&2
    exit 0
  fi
elif ! grep -qE '^skipped: secret .+ not found$|ResourceNotFoundException' "$ERR"; then
  echo "cannot tell whether $SECRET_ID holds a receiver, so it is left as it is:" >&2
  cat "$ERR" >&2
  exit 1
fi
if [ -n "$KMS_KEY" ]; then ensure_kms_secret "$SECRET_ID" "$KMS_KEY"; fi
"$QUAYHOOK" secret new --project "$PROJECT" --receiver "$RECEIVER" --store "$SECRET_ID" "${PRINT[@]}"
