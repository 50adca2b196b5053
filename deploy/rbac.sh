#!/usr/bin/env bash
# Prints (or applies) what quayhook needs in the cluster whose Warehouses it refreshes: its
# Namespace and ServiceAccount, and per Kargo project (namespace) of its receivers a Role and
# RoleBinding allowing exactly the verbs quayhook uses on Warehouses.
#
#   deploy/rbac.sh --project kargo-demo [--project other]... [--apply [--context CTX]
#       [-- KUBECTL-APPLY-FLAGS...]]
#   deploy/rbac.sh --cluster [--apply]        # cluster-level receivers (project "" in the
#                                             # receiver secret): every namespace
#       [--namespace quayhook] [--service-account quayhook]
#       [--admission-policy]      also the ValidatingAdmissionPolicy of
#                                 deploy/admission-policy.yaml (Kubernetes 1.30+) for this
#                                 ServiceAccount: it may change nothing on a Warehouse but the
#                                 kargo.akuity.io/refresh annotation
#       [--legacy-token-secret]   also a non-expiring kubernetes.io/service-account-token
#                                 Secret (NOT recommended: see deploy/kubeconfig-secret.sh)
#
# Verbs, and who needs them (nothing else is granted):
#   list   the Warehouse index: the function, and `quayhook check`
#   patch  the refresh annotation (a JSON merge patch): the function
# `get` is not granted: nothing reads a single Warehouse. `quayhook check` asks the API server
# with SelfSubjectAccessReview (allowed to every authenticated user by the bootstrap role
# system:basic-user) whether list and patch are allowed, and lists. The ServiceAccount gets no
# right on serviceaccounts/token: it can never mint its own tokens; deploy/kubeconfig-secret.sh
# mints them with the operator's credentials.
#
# Without --apply the YAML goes to stdout: review it, or pipe it to `kubectl apply -f -`.
set -euo pipefail
KUBECTL=${KUBECTL:-kubectl}
DEPLOY_DIR=$(cd "$(dirname "$0")" && pwd)
PROJECTS=() CLUSTER=false NAMESPACE=quayhook SA=quayhook POLICY=false LEGACY=false APPLY=false CONTEXT=
usage() { sed -n '2,27p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --project) [ $# -ge 2 ] && [ -n "$2" ] || usage; PROJECTS+=("$2"); shift 2 ;;
    --cluster) CLUSTER=true; shift ;;
    --namespace) [ $# -ge 2 ] || usage; NAMESPACE=$2; shift 2 ;;
    --service-account) [ $# -ge 2 ] || usage; SA=$2; shift 2 ;;
    --admission-policy) POLICY=true; shift ;;
    --legacy-token-secret) LEGACY=true; shift ;;
    --apply) APPLY=true; shift ;;
    --context) [ $# -ge 2 ] || usage; CONTEXT=$2; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
if [ "$CLUSTER" = true ] && [ ${#PROJECTS[@]} -gt 0 ]; then
  echo "--cluster and --project exclude each other" >&2; exit 2
fi
[ "$CLUSTER" = true ] || [ ${#PROJECTS[@]} -gt 0 ] || usage
if [ $# -gt 0 ] && [ "$APPLY" = false ]; then usage; fi

rules() {
  cat <<EOF
rules:
  # list: the Warehouse index (the function and \`quayhook check\`).
  # patch: the kargo.akuity.io/refresh annotation (the function).
  - apiGroups: ["kargo.akuity.io"]
    resources: ["warehouses"]
    verbs: ["list", "patch"]
EOF
}

subjects() {
  cat <<EOF
subjects:
  - kind: ServiceAccount
    name: $SA
    namespace: $NAMESPACE
EOF
}

manifests() {
  cat <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $NAMESPACE
---
# quayhook's identity. No pod runs as it, so no token is mounted anywhere; its tokens are
# minted by deploy/kubeconfig-secret.sh, bound to a Secret and short-lived.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: $SA
  namespace: $NAMESPACE
automountServiceAccountToken: false
EOF
  if [ "$LEGACY" = true ]; then
    cat <<EOF
---
# NOT recommended: a token that never expires and is revoked only by deleting this Secret.
# Use it with deploy/kubeconfig-secret.sh --token-from secret only where bound, expiring
# tokens cannot be rotated.
apiVersion: v1
kind: Secret
metadata:
  name: $SA-token
  namespace: $NAMESPACE
  annotations:
    kubernetes.io/service-account.name: $SA
type: kubernetes.io/service-account-token
EOF
  fi
  if [ "$CLUSTER" = true ]; then
    cat <<EOF
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: $SA
$(rules)
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: $SA
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: $SA
$(subjects)
EOF
  fi
  for project in "${PROJECTS[@]}"; do
    cat <<EOF
---
# Kargo project $project.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: $SA
  namespace: $project
$(rules)
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: $SA
  namespace: $project
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: $SA
$(subjects)
EOF
  done
  if [ "$POLICY" = true ]; then
    local name=quayhook-refresh-only
    if [ "$NAMESPACE" != quayhook ] || [ "$SA" != quayhook ]; then
      name="quayhook-refresh-only-$NAMESPACE-$SA"
    fi
    echo "---"
    # The policy file names the default ServiceAccount and policy; everything else is kept.
    sed -e "s/system:serviceaccount:quayhook:quayhook/system:serviceaccount:$NAMESPACE:$SA/" \
        -e "s/\\(name: *\\)quayhook-refresh-only\$/\\1$name/" \
        -e "s/\\(policyName: *\\)quayhook-refresh-only\$/\\1$name/" \
        "$DEPLOY_DIR/admission-policy.yaml"
  fi
}

if [ "$APPLY" = true ]; then
  ctx=()
  if [ -n "$CONTEXT" ]; then ctx=(--context "$CONTEXT"); fi
  manifests | "$KUBECTL" "${ctx[@]}" apply "$@" -f -
else
  manifests
fi
