#!/usr/bin/env bash
# Invokes the functions locally with recorded events through `sam local invoke`, against the
# local stand-ins for AWS and the cluster (tools/local-stack.sh: moto + a local Kubernetes API
# server with the demo Warehouses, plus the durable path's queues in moto).
#
#   tools/sam/invoke.sh [--build sam|lambda|host] EVENT[=EXPECT]...
#
# An API Gateway event goes to QuayFunction, where =EXPECT is the statusCode the response must
# have; an SQS event (Records from aws:sqs) goes to WorkerFunction, where =EXPECT is how many
# batchItemFailures it must report (=0: every message done); an EventBridge event (with
# "source" and "detail-type", e.g. an ECR push from aws.ecr) goes to QuayFunction, as the rule
# delivers it without the durable path, where =EXPECT is the response's "result" (done,
# ignored), optionally with the number of refreshed Warehouses (done:1), or "error" when the
# function failed. Each EVENT is invoked in its own (cold) container; a mismatch fails the
# script. Responses go to stdout, the rest to stderr.
#
# --build chooses the x86_64 bootstrap (this machine cannot run arm64 containers):
#   sam     `sam build --parameter-overrides Architecture=x86_64` (cargo lambda build --release,
#           zig-linked for old glibc: the artifact Lambda would run). Default.
#   lambda  `cargo lambda build --release --bin quayhook` (the same artifact without SAM).
#   host    the debug binary `make test` already built (target/debug/quayhook): linked
#           against this host's glibc, which is exactly what the local base image contains.
#
# The function runs in quayhook-provided-al2023:local (tools/sam/base-image.sh) under the
# runtime interface emulator shipped in the SAM CLI wheel, with --docker-network host so it
# reaches moto and the API server on 127.0.0.1 (through tools/sam/sam.py, which makes SAM
# 1.170.0 honour that option).
#
# Where no Docker engine answers (or QUAYHOOK_INVOKE_NO_DOCKER=1), it says so loudly and runs
# that same emulator binary as a plain process around the same bootstrap, with the same
# environment, posting each event to it. (Not `cargo lambda watch`: cargo-lambda 1.9.2 sends
# `Lambda-Runtime-Deadline-Ms: 600000`, a duration rather than an epoch time, so the function
# sees its deadline long past and every cluster call times out at once.)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RUN_DIR=${RUN_DIR:-$ROOT/target/run}
VENV=${VENV:-.venv}
VENV_SAM=${VENV_SAM:-.venv-sam}
CARGO=${CARGO:-cargo}
IMAGE=${QUAYHOOK_BASE_IMAGE:-quayhook-provided-al2023:local}
export RUN_DIR VENV CARGO SAM_CLI_TELEMETRY=0

usage() { sed -n '6,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
build=sam
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=${2:-}; shift 2 ;;
    --build=*) build=${1#--build=}; shift ;;
    -h | --help) usage ;;
    -*) echo "invoke: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || usage
for spec in "$@"; do
  [ -f "${spec%%=*}" ] || { echo "invoke: no event file ${spec%%=*}" >&2; exit 2; }
done
mkdir -p "$RUN_DIR"
say() { echo "invoke: $*" >&2; }
py() { "$VENV_SAM/bin/python" "$@"; }
[ -x "$VENV_SAM/bin/sam" ] || { say "no SAM CLI in $VENV_SAM (make sam-venv)"; exit 1; }
[ -x "$VENV/bin/moto_server" ] || { say "no moto_server in $VENV (make venv)"; exit 1; }

use_docker=1
if [ -n "${QUAYHOOK_INVOKE_NO_DOCKER:-}" ] || ! docker info >/dev/null 2>&1; then
  use_docker=0
  cat >&2 <<'EOF'
#######################################################################################
# invoke: NO DOCKER ENGINE ANSWERS (`docker info` failed or QUAYHOOK_INVOKE_NO_DOCKER), #
# so this is NOT `sam local invoke`. Falling back to SAM's runtime interface emulator   #
# (aws-lambda-rie) as a plain process around the same bootstrap, events and             #
# environment: no container, no base image, no memory limit, not the Lambda OS.         #
#######################################################################################
EOF
fi

# 1. The bootstrap.
case "$build" in
  sam)
    say "building with sam build (Architecture=x86_64, release)"
    PATH="$ROOT/$VENV/bin:$ROOT/$VENV_SAM/bin:$PATH" sam build --template template.yaml \
      --build-dir .aws-sam/build-x86_64 --parameter-overrides Architecture=x86_64 >&2
    bootstrap=.aws-sam/build-x86_64/QuayFunction/bootstrap ;;
  lambda)
    say "building with cargo lambda build --release (x86_64)"
    PATH="$ROOT/$VENV/bin:$PATH" "$CARGO" lambda build --release --locked --bin quayhook >&2
    bootstrap=target/lambda/quayhook/bootstrap ;;
  host)
    say "building the host debug binary (shared with cargo test and local-stack)"
    # The example in the same command keeps the dev-dependency feature set that `cargo test`
    # and tools/local-stack.sh build with, so nothing is compiled twice.
    "$CARGO" build --quiet --locked --example local-stack --bin quayhook >&2
    bootstrap=target/debug/quayhook ;;
  *) echo "invoke: --build must be sam, lambda or host" >&2; exit 2 ;;
esac
# ELF magic, then e_machine 0x3e (x86-64) at offset 18.
[ "$(od -An -tx1 -N4 "$bootstrap" | tr -d ' \n')$(od -An -tx1 -j18 -N2 "$bootstrap" | tr -d ' \n')" = 7f454c463e00 ] ||
  { say "$bootstrap is not an x86_64 ELF executable"; exit 1; }

# 2. The staged code directory (what `sam build` would produce; one bootstrap for both
# functions, whose Handler tells it its role) and the base image.
stage=$RUN_DIR/sam-local
code=$stage/code
rm -rf "$stage"
mkdir -p "$code"
ln -f "$bootstrap" "$code/bootstrap" 2>/dev/null || cp "$bootstrap" "$code/bootstrap"
if [ "$use_docker" = 1 ]; then
  tools/sam/base-image.sh >&2
fi

# 3. The local stack; always stopped on exit.
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  say "stopping the local stack; refresh annotations the invocations left on the Warehouses:"
  tools/local-stack.sh stop >&2 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
tools/local-stack.sh start >&2
# The local stack's env-vars file has QuayFunction's environment; the durable path's queues
# are created in its moto server, and both functions get QUAYHOOK_QUEUE_URL, as deployed.
env_json=$RUN_DIR/sam-env-durable.json
py tools/sam/local-template.py env-vars "$RUN_DIR/sam-env.json" "$env_json"
field() { py -c 'import json,sys; print(json.load(open(sys.argv[1]))["QuayFunction"].get(sys.argv[2], sys.argv[3]))' "$env_json" "$@"; }
region=$(field AWS_REGION us-east-1)
# Variables in the caller's shell would override the template's for the names it declares.
for v in $(compgen -e | grep '^QUAYHOOK_' || true); do unset "$v"; done

if [ "$use_docker" = 1 ]; then
  py tools/sam/local-template.py template template.yaml "$stage/template.yaml" "$code" "$env_json"
  # SAM hands the function the credentials of the `sam` process, not those of --env-vars.
  sam_env=(AWS_ACCESS_KEY_ID="$(field AWS_ACCESS_KEY_ID testing)"
    AWS_SECRET_ACCESS_KEY="$(field AWS_SECRET_ACCESS_KEY testing)")
  # It also asks STS for the account id before every invoke (4 s of retries offline): moto
  # answers that too.
  endpoint=$(field AWS_ENDPOINT_URL '')
  [ -z "$endpoint" ] || sam_env+=(AWS_ENDPOINT_URL_STS="$endpoint")
  invoke_one() { # function event -> response on stdout
    env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN "${sam_env[@]}" \
      "$VENV_SAM/bin/python" tools/sam/sam.py local invoke "$1" \
      --template "$stage/template.yaml" --event "$2" --env-vars "$env_json" --region "$region" \
      --invoke-image "$IMAGE" --skip-pull-image --docker-network host \
      --parameter-overrides Architecture=x86_64
  }
else
  rie=$(py -c 'import samcli, os; print(os.path.join(os.path.dirname(samcli.__file__), "local", "rapid", "aws-lambda-rie-x86_64"))')
  free_port() { py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  declare -A rie_port=()
  start_rie() { # function: one emulator per function, each with that function's environment
    local fn=$1 port api_port timeout
    py tools/sam/local-template.py env template.yaml "$env_json" "$fn" "$stage/$fn.env"
    timeout=$(py -c 'import sys; from samcli.yamlhelper import yaml_parse
print(yaml_parse(open("template.yaml").read())["Resources"][sys.argv[1]]["Properties"]["Timeout"])' "$fn")
    port=$(free_port)
    api_port=$(free_port)
    (
      set -a; . "$stage/$fn.env"; set +a
      export AWS_LAMBDA_FUNCTION_NAME="$fn" AWS_LAMBDA_FUNCTION_VERSION='$LATEST' \
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 AWS_LAMBDA_FUNCTION_TIMEOUT="$timeout" \
        AWS_LAMBDA_LOG_FORMAT=JSON AWS_LAMBDA_LOG_LEVEL=INFO AWS_DEFAULT_REGION="$region" \
        LAMBDA_TASK_ROOT="$code"
      cd "$code"
      exec "$rie" --log-level error --runtime-interface-emulator-address "127.0.0.1:$port" \
        --runtime-api-address "127.0.0.1:$api_port" "$code/bootstrap"
    ) >&2 &
    pids+=($!)
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    rie_port[$fn]=$port
  }
  invoke_one() { # function event -> response on stdout
    [ -n "${rie_port[$1]:-}" ] || start_rie "$1"
    py -c '
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=open(sys.argv[2], "rb").read(), method="POST")
print(urllib.request.urlopen(req, timeout=90).read().decode())' \
      "http://127.0.0.1:${rie_port[$1]}/2015-03-31/functions/function/invocations" "$2"
  }
fi

# 4. The invocations.
# What an event is: "worker" for SQS records (WorkerFunction), "eventbridge" for an EventBridge
# event (QuayFunction, as the ECR rule invokes it), else "http" (QuayFunction).
kind_of() {
  py -c '
import json, sys
e = json.load(open(sys.argv[1]))
records = e.get("Records") if isinstance(e, dict) else None
if isinstance(records, list) and records and all(r.get("eventSource") == "aws:sqs" for r in records):
    print("worker")
elif isinstance(e, dict) and "source" in e and "detail-type" in e:
    print("eventbridge")
else:
    print("http")' "$1"
}
# What the response says: QuayFunction's statusCode, WorkerFunction's number of
# batchItemFailures ("none" when the field is missing, "unparsable" when it is not JSON), an
# EventBridge invocation's status (see the header).
result_of() { # kind response-file
  py -c '
import json, sys
r = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])  # the response is the last line
kind = sys.argv[1]
if kind == "worker":
    failures = r.get("batchItemFailures") if isinstance(r, dict) else None
    print(len(failures) if isinstance(failures, list) else "none")
elif kind == "eventbridge":
    if not isinstance(r, dict) or "errorType" in r:
        print("error")
    else:
        result = r.get("result", "none")
        refreshed = r.get("refreshed")
        print(f"{result}:{len(refreshed)}" if isinstance(refreshed, list) else result)
else:
    print(r.get("statusCode", "none") if isinstance(r, dict) else "none")' "$1" "$2" 2>/dev/null || echo unparsable
}
failed=0
n=0
for spec in "$@"; do
  event=${spec%%=*}
  want=
  [ "$spec" = "$event" ] || want=${spec#*=}
  kind=$(kind_of "$event")
  case "$kind" in
    worker) fn=WorkerFunction what=batchItemFailures ;;
    eventbridge) fn=QuayFunction what=result ;;
    *) fn=QuayFunction what=statusCode ;;
  esac
  n=$((n + 1))
  out=$RUN_DIR/invoke-$n.json
  say "invoking $fn with $event${want:+ (expecting $what $want)}"
  start=$EPOCHREALTIME
  if ! invoke_one "$fn" "$event" >"$out"; then
    say "FAILED: the invocation itself failed for $event"
    failed=1
    continue
  fi
  took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  cat "$out"
  [ -z "$(tail -c1 "$out")" ] || echo
  got=$(result_of "$kind" "$out")
  # =done matches done:N (any number refreshed); =done:1 only that number.
  [ "$kind" != eventbridge ] || [ "${want#*:}" != "$want" ] || got=${got%%:*}
  say "$event -> $fn $what $got in ${took}s"
  if [ -n "$want" ] && [ "$got" != "$want" ]; then
    say "FAILED: $event: $what $got, expected $want (response in $out)"
    failed=1
  fi
done
[ "$failed" = 0 ] || exit 1
if [ "$use_docker" = 1 ]; then
  say "all $n invocation(s) done: sam local invoke in $IMAGE, bootstrap from --build $build"
else
  say "all $n invocation(s) done WITHOUT DOCKER (emulator as a process), bootstrap from --build $build"
fi
