#!/usr/bin/env bash
# Starts or stops the local stand-ins for AWS and the cluster used by `make demo` and
# `make invoke`: moto_server (Secrets Manager) and the local Kubernetes API server with the
# demo Warehouses, secrets stored, environment written to $RUN_DIR/env.sh and
# $RUN_DIR/sam-env.json.
#   tools/local-stack.sh start   # returns once everything is ready
#   tools/local-stack.sh stop    # stops both, printing the Warehouses' refresh annotations
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-$PWD/target/run}
VENV=${VENV:-.venv}
CARGO=${CARGO:-cargo}
mkdir -p "$RUN_DIR"

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() { # file, seconds, what
  for _ in $(seq 1 $(( $2 * 10 ))); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "timed out waiting for $3" >&2; return 1
}

start() {
  stop quiet
  "$CARGO" build --quiet --locked --example local-stack
  local port; port=$(free_port)
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$RUN_DIR/moto.log" 2>&1 &
  echo $! >"$RUN_DIR/moto.pid"
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  rm -f "$RUN_DIR/ready"
  target/debug/examples/local-stack --moto "http://127.0.0.1:$port" --seed tools/demo/warehouses.json \
    --env-file "$RUN_DIR/env.sh" --sam-env-file "$RUN_DIR/sam-env.json" --ready-file "$RUN_DIR/ready" \
    >"$RUN_DIR/stack.out" 2>"$RUN_DIR/stack.log" &
  echo $! >"$RUN_DIR/stack.pid"
  wait_for "$RUN_DIR/ready" 60 "the local API server"
  echo "moto on 127.0.0.1:$port, API server on $(cat "$RUN_DIR/ready")"
}

stop() {
  local pid
  if [ -f "$RUN_DIR/stack.pid" ]; then
    pid=$(cat "$RUN_DIR/stack.pid"); rm -f "$RUN_DIR/stack.pid"
    if kill "$pid" 2>/dev/null; then
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
      [ "${1:-}" = quiet ] || cat "$RUN_DIR/stack.out"
    fi
  fi
  if [ -f "$RUN_DIR/moto.pid" ]; then
    pid=$(cat "$RUN_DIR/moto.pid"); rm -f "$RUN_DIR/moto.pid"
    kill "$pid" 2>/dev/null || true
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
