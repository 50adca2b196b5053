#!/usr/bin/env bash
# `sam build` of template.yaml for one architecture (rust-cargolambda: SAM runs
# `cargo lambda build --release [--arm64] --bin quayhook` and copies the bootstrap).
#
#   ARCH=arm64|x86_64 tools/sam/build.sh   → .aws-sam/build/QuayFunction/bootstrap
#
# WorkerFunction (the durable path's SQS worker) is the same binary with Handler worker: SAM
# groups functions with the same CodeUri, runtime, architecture and Metadata into one build
# ("Building codeuri: … functions: QuayFunction, WorkerFunction") and copies it to both.
#
# cargo-lambda and zig come from $VENV (.venv: pip's cargo-lambda + ziglang), which must come
# before $VENV_SAM in PATH: with the SAM venv first, cargo-lambda fails with "Zig is not
# installed in your system".
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ARCH=${ARCH:-arm64}
VENV=${VENV:-.venv}
VENV_SAM=${VENV_SAM:-.venv-sam}
export SAM_CLI_TELEMETRY=0

case "$ARCH" in
  arm64) triple=aarch64-unknown-linux-gnu ;;
  x86_64) triple=x86_64-unknown-linux-gnu ;;
  *) echo "sam-build: ARCH must be arm64 or x86_64, not $ARCH" >&2; exit 2 ;;
esac
[ -x "$VENV/bin/cargo-lambda" ] || { echo "sam-build: no cargo-lambda in $VENV (make venv)" >&2; exit 1; }

missing_target=0
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$triple"; then
  missing_target=1
  cat >&2 <<EOF
sam-build: the Rust target $triple is NOT installed (rustup target list --installed).
sam-build: cargo-lambda will now try 'rustup target add $triple' itself, which needs
sam-build: network access to static.rust-lang.org. If that fails: install the target, or
sam-build: build for this machine with ARCH=x86_64.
EOF
fi

start=$SECONDS
if ! PATH="$ROOT/$VENV/bin:$ROOT/$VENV_SAM/bin:$PATH" sam build --template template.yaml \
  --parameter-overrides "Architecture=$ARCH"; then
  if [ "$missing_target" = 1 ] && ! rustup target list --installed | grep -qx "$triple"; then
    echo "sam-build: FAILED, and the Rust target $triple is still missing: that is the cause." >&2
  fi
  exit 1
fi
out=.aws-sam/build/QuayFunction/bootstrap
want=$([ "$ARCH" = arm64 ] && echo b700 || echo 3e00) # ELF e_machine: aarch64, x86-64
got=$(od -An -tx1 -j18 -N2 "$out" | tr -d ' \n')
[ "$got" = "$want" ] || { echo "sam-build: $out is not an $ARCH binary (e_machine $got)" >&2; exit 1; }
echo "sam-build: $out ($ARCH, $(du -h "$out" | cut -f1)) in $((SECONDS - start)) s"
