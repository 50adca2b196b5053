#!/usr/bin/env bash
# Keyless access to EKS: lets the function's IAM role into the cluster through an EKS access
# entry, and grants it (through a Kubernetes group) only what quayhook needs on Warehouses:
# list and patch, plus get for `quayhook check`. No kubeconfig secret, no token to rotate:
# with QUAYHOOK_EKS_CLUSTER set, quayhook signs a 15-minute token with the role's credentials.
#
#   deploy/eks-access-entry.sh --cluster NAME --role-arn ARN [--namespace NS ...]
#       [--all-namespaces] [--group quayhook:warehouse-refreshers] [--username quayhook]
#       [--region REGION] [--context CTX] [--dry-run]
#
# What it runs, in order (--dry-run prints exactly these commands instead):
#   1. aws eks describe-cluster: the cluster's authentication mode must accept access entries
#      (API or API_AND_CONFIG_MAP; switch with `aws eks update-cluster-config --access-config
#      authenticationMode=API_AND_CONFIG_MAP`);
#   2. aws eks create-access-entry --type STANDARD: the role becomes user --username in group
#      --group (update-access-entry when the entry exists);
#   3. kubectl apply: a Role and RoleBinding per --namespace (each Kargo project quayhook
#      serves), or with --all-namespaces a ClusterRole and ClusterRoleBinding (cluster-level
#      receivers), granting the group get, list and patch on warehouses.kargo.akuity.io.
# No `aws eks associate-access-policy`: EKS's access policies are either read-only
# (AmazonEKSViewPolicy) or far broader than patching one resource (AmazonEKSEditPolicy), so
# the group is bound by RBAC instead.
#
# --role-arn   the function's execution role: arn:aws:iam::ACCOUNT:role/NAME (the role ARN,
#              not an assumed-role session ARN)
# --context    the kubectl context for step 3 (default: the current one)
#
# Needs the aws CLI (eks:DescribeCluster, eks:CreateAccessEntry, eks:UpdateAccessEntry) and
# kubectl with rights to create Roles and RoleBindings in those namespaces.
set -euo pipefail
AWS=${AWS:-aws}
KUBECTL=${KUBECTL:-kubectl}
CLUSTER= ROLE_ARN= REGION= CONTEXT= GROUP=quayhook:warehouse-refreshers USERNAME=quayhook
ALL=false DRY_RUN=false
NAMESPACES=()
usage() { sed -n '2,29p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --cluster | --role-arn | --namespace | --group | --username | --region | --context)
      [ $# -ge 2 ] || usage
      case "$1" in
        --cluster) CLUSTER=$2 ;;
        --role-arn) ROLE_ARN=$2 ;;
        --namespace) NAMESPACES+=("$2") ;;
        --group) GROUP=$2 ;;
        --username) USERNAME=$2 ;;
        --region) REGION=$2 ;;
        --context) CONTEXT=$2 ;;
      esac
      shift 2 ;;
    --all-namespaces) ALL=true; shift ;;
    --dry-run) DRY_RUN=true; shift ;;
    *) usage ;;
  esac
done
[ -n "$CLUSTER" ] && [ -n "$ROLE_ARN" ] || usage
case "$ROLE_ARN" in
  arn:aws*:iam::*:role/*) ;;
  *) echo "--role-arn must be an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME), got $ROLE_ARN" >&2; exit 2 ;;
esac
if [ "$ALL" = true ] && [ ${#NAMESPACES[@]} -gt 0 ]; then
  echo "--all-namespaces and --namespace exclude each other" >&2; exit 2
fi
if [ "$ALL" = false ] && [ ${#NAMESPACES[@]} -eq 0 ]; then
  echo "name the Kargo projects with --namespace (repeatable), or pass --all-namespaces" >&2; exit 2
fi

aws_args=()
[ -n "$REGION" ] && aws_args+=(--region "$REGION")
kubectl_args=()
[ -n "$CONTEXT" ] && kubectl_args+=(--context "$CONTEXT")

# show CMD...: the command as a shell would take it back.
show() { printf '%q ' "$@" | sed 's/ $//'; echo; }

# The RBAC objects of step 3, as one YAML stream.
rbac() {
  local rules='rules:
- apiGroups: ["kargo.akuity.io"]
  resources: ["warehouses"]
  # list and patch: every delivery; get: `quayhook check`.
  verbs: ["get", "list", "patch"]'
  local subject="subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: \"$GROUP\""
  if [ "$ALL" = true ]; then
    cat <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: quayhook-warehouse-refresher
$rules
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: quayhook-warehouse-refresher
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: quayhook-warehouse-refresher
$subject
EOF
    return
  fi
  local ns
  for ns in "${NAMESPACES[@]}"; do
    cat <<EOF
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: quayhook-warehouse-refresher
  namespace: "$ns"
$rules
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: quayhook-warehouse-refresher
  namespace: "$ns"
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: quayhook-warehouse-refresher
$subject
EOF
  done
}

describe=("$AWS" eks describe-cluster "${aws_args[@]}" --name "$CLUSTER"
  --query cluster.accessConfig.authenticationMode --output text)
entry=(--cluster-name "$CLUSTER" --principal-arn "$ROLE_ARN"
  --kubernetes-groups "$GROUP" --username "$USERNAME")
create=("$AWS" eks create-access-entry "${aws_args[@]}" "${entry[@]}" --type STANDARD)
update=("$AWS" eks update-access-entry "${aws_args[@]}" "${entry[@]}")
apply=("$KUBECTL" "${kubectl_args[@]}" apply -f -)

if [ "$DRY_RUN" = true ]; then
  echo "# 1. the authentication mode must be API or API_AND_CONFIG_MAP"
  show "${describe[@]}"
  echo "# 2. the access entry (update-access-entry instead when it exists)"
  show "${create[@]}"
  echo "# 3. what the group may do"
  echo "$(show "${apply[@]}") <<'EOF'"
  rbac
  echo "EOF"
  exit 0
fi

mode=$("${describe[@]}")
case "$mode" in
  API | API_AND_CONFIG_MAP) ;;
  *)
    echo "cluster $CLUSTER authenticates with $mode only: access entries need API or API_AND_CONFIG_MAP" >&2
    echo "  $AWS eks update-cluster-config --name $CLUSTER --access-config authenticationMode=API_AND_CONFIG_MAP" >&2
    exit 1 ;;
esac
err=$(mktemp)
trap 'rm -f "$err"' EXIT
if "${create[@]}" >/dev/null 2>"$err"; then
  echo "created the access entry for $ROLE_ARN (user $USERNAME, group $GROUP)"
elif grep -q ResourceInUseException "$err"; then
  "${update[@]}" >/dev/null
  echo "updated the access entry for $ROLE_ARN (user $USERNAME, group $GROUP)"
else
  cat "$err" >&2
  exit 1
fi
rbac | "${apply[@]}"
echo "done: set QUAYHOOK_EKS_CLUSTER=$CLUSTER on the function (and let its role call eks:DescribeCluster, or set QUAYHOOK_EKS_ENDPOINT and QUAYHOOK_EKS_CA_DATA)"
