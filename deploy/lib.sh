# Shared by deploy/kubeconfig-secret.sh and deploy/receiver-secret.sh (sourced, not run).
# shellcheck shell=bash

AWS=${AWS:-aws}

# aws_cli ARGS...: the aws CLI, in AWS_REGION when that is set (the SDKs' variable, which the
# quayhook CLI follows; the aws CLI v1 reads only AWS_DEFAULT_REGION).
aws_cli() {
  if ! command -v "$AWS" >/dev/null 2>&1; then
    echo "--kms-key-id needs the aws CLI (set AWS=path): it creates the secret with that key" >&2
    return 1
  fi
  if [ -n "${AWS_REGION:-}" ]; then
    "$AWS" --region "$AWS_REGION" "$@"
  else
    "$AWS" "$@"
  fi
}

# ensure_kms_secret ID KEY: makes sure the Secrets Manager secret ID is encrypted with the KMS
# key KEY before quayhook writes its value. A missing secret is created with that key and no
# value (the value follows with quayhook's PutSecretValue, under the secret's key). An existing
# secret encrypted with the AWS managed key aws/secretsmanager is refused (change its key with
# `aws secretsmanager update-secret --secret-id ID --kms-key-id KEY`); one with another key
# name gets a note. Any error other than ResourceNotFoundException stops here, with its cause.
ensure_kms_secret() {
  local id=$1 key=$2 out
  if out=$(aws_cli secretsmanager describe-secret --secret-id "$id" \
             --query KmsKeyId --output text 2>&1); then
    case "$out" in
      "$key") ;;
      None | "")
        echo "$id exists and is encrypted with the AWS managed key, not $key:" \
             "aws secretsmanager update-secret --secret-id $id --kms-key-id $key" >&2
        return 1 ;;
      *) echo "note: $id exists, encrypted with KMS key $out (asked for $key)" >&2 ;;
    esac
    return 0
  fi
  case "$out" in
    *ResourceNotFoundException*) ;;
    *) echo "cannot describe secret $id: $out" >&2; return 1 ;;
  esac
  aws_cli secretsmanager create-secret --name "$id" --kms-key-id "$key" \
    --description "quayhook (value written by deploy/ scripts)" >/dev/null
  echo "created secret $id encrypted with KMS key $key" >&2
}
