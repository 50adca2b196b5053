#!/usr/bin/env bash
# `make demo`: the whole flow on this machine. Starts moto and the local API server (seeded
# with tools/demo/warehouses.json), runs `quayhook serve` with the same configuration a Lambda
# gets, computes the receiver URL the way Kargo would, POSTs the recorded Quay push from
# events/push.json, prints the answer and the Warehouses' refresh annotations, and stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUN_DIR=${RUN_DIR:-$PWD/target/run} VENV=${VENV:-.venv} CARGO=${CARGO:-cargo}
SERVE_PID=
cleanup() {
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  tools/local-stack.sh stop
}
trap cleanup EXIT

echo "==> building quayhook"
"$CARGO" build --quiet --locked --bin quayhook
echo "==> starting moto (Secrets Manager) and the local Kubernetes API server"
tools/local-stack.sh start
# shellcheck disable=SC1091
source "$RUN_DIR/env.sh"
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "==> quayhook serve on 127.0.0.1:$PORT"
target/debug/quayhook serve --listen "127.0.0.1:$PORT" 2>"$RUN_DIR/serve.log" &
SERVE_PID=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

echo "==> receiver URL (quayhook url --base-url http://127.0.0.1:$PORT)"
URL=$(target/debug/quayhook url --base-url "http://127.0.0.1:$PORT" | awk -F'\t' '$1=="kargo-demo" && $2=="q-wh-receiver" {print $3}')
echo "    $URL"
BODY=$("$VENV/bin/python" -c 'import json,sys; print(json.load(open("events/push.json"))["body"])')
echo "==> POST the recorded Quay push (events/push.json):"
echo "$BODY" | sed 's/^/    /'
echo "==> response:"
curl -sS -X POST -H 'Content-Type: application/json' --data-binary "$BODY" "$URL" -w '\n    HTTP %{http_code}\n' \
  | "$VENV/bin/python" -c 'import json,sys
text=sys.stdin.read(); body,_,status=text.rpartition("\n    HTTP ")
print("    HTTP", status.strip()); print("\n".join("    "+l for l in json.dumps(json.loads(body), indent=2).splitlines()))'
echo "==> quayhook's log of the delivery:"
sed 's/^/    /' "$RUN_DIR/serve.log" | grep -E "push handled|push rejected|push not handled|partly" || true
