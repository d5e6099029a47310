#!/usr/bin/env bash
# Contract tests: the official Genesys Cloud Python SDK (requirements.txt) against `wrapup sandbox`, and the Standard
# Webhooks reference library against its CRM receiver (`--crm`).
#
# Builds the binary (if missing or stale), starts the sandbox on a free loopback port, reads the JSON object it prints as
# its first stdout line, exports its fields as SANDBOX_* variables (base_url -> SANDBOX_BASE_URL, ...), runs the
# Python test, always stops the sandbox, and exits with the test's status.
#
#   python3 -m pip install -r tests/contract/requirements.txt
#   bash tests/contract/run.sh [extra pytest args]
#
# WRAPUP_BIN overrides the binary (default target/debug/wrapup, built with `cargo build -p wrapup --locked`).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE/../.."

if [ -n "${WRAPUP_BIN:-}" ]; then
  BIN="$WRAPUP_BIN"
else
  BIN=target/debug/wrapup
  # Builds it when missing, and rebuilds a stale one (a no-op when it is up to date).
  cargo build -p wrapup --locked --quiet
fi
[ -x "$BIN" ] || { echo "run.sh: $BIN is not an executable" >&2; exit 1; }

WORK="$(mktemp -d)"
SANDBOX_PID=""
cleanup() {
  if [ -n "$SANDBOX_PID" ] && kill -0 "$SANDBOX_PID" 2>/dev/null; then
    kill -INT "$SANDBOX_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SANDBOX_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SANDBOX_PID" 2>/dev/null || true
    wait "$SANDBOX_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkfifo "$WORK/out"
"$BIN" sandbox --listen 127.0.0.1:0 --seed 7 --preload 50 --rate-limit 300 --crm >"$WORK/out" 2>"$WORK/sandbox.log" &
SANDBOX_PID=$!
# Keep the FIFO open for the sandbox's whole life (it may print more later), read only the first line.
exec 3<"$WORK/out"
if ! IFS= read -r -t 60 FIRST <&3; then
  echo "run.sh: the sandbox printed no first line within 60 s; its log:" >&2
  cat "$WORK/sandbox.log" >&2 || true
  exit 1
fi

# Export every scalar field of the first line as SANDBOX_<FIELD>, arrays/objects as JSON.
EXPORTS="$(python3 - "$FIRST" <<'EOF'
import json, shlex, sys
info = json.loads(sys.argv[1])
for key in ("base_url", "client_id", "client_secret"):
    if not info.get(key):
        sys.exit(f"run.sh: the sandbox's first line has no {key}: {sys.argv[1]}")
for key, value in info.items():
    if not isinstance(value, str):
        value = json.dumps(value)
    print(f"export SANDBOX_{key.upper()}={shlex.quote(value)}")
EOF
)"
eval "$EXPORTS"
echo "run.sh: sandbox pid $SANDBOX_PID at $SANDBOX_BASE_URL" >&2

status=0
python3 -m pytest -p no:cacheprovider -q "$HERE/test_genesys_sdk.py" "$HERE/test_crm_receiver.py" "$HERE/test_openapi.py" "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "run.sh: the contract test failed ($status); last lines of the sandbox log:" >&2
  tail -n 40 "$WORK/sandbox.log" >&2 || true
fi
exit "$status"
