#!/usr/bin/env bash
# Cross-check of the sandbox throughput with wrk (docs/PERFORMANCE.md): starts the benchmark binary in --serve mode
# (sandbox only, rate limit lifted), then drives the same request mix with wrk from outside the process.
#
#   bash crates/sandbox/benches/wrk.sh [seconds=10] [connections=32] [wrk threads=2] [server cpus, e.g. 0]
#
# With a 4th argument the sandbox is pinned to those CPUs (taskset -c) and wrk to the others.
set -euo pipefail
cd "$(dirname "$0")/../../.."
SECS="${1:-10}"; CONNS="${2:-32}"; THREADS="${3:-2}"; SERVER_CPUS="${4:-}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 2; }
cargo bench -p wrapup-sandbox --bench api_throughput --no-run 2>/dev/null
BIN="$(ls -t target/release/deps/api_throughput-* | grep -v '\.d$' | head -n 1)"
WORK="$(mktemp -d)"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
PIN=(); WRK_PIN=()
if [ -n "$SERVER_CPUS" ]; then
  PIN=(taskset -c "$SERVER_CPUS")
  OTHERS="$(python3 -c "import os,sys; s={int(c) for c in sys.argv[1].split(',')}; print(','.join(str(c) for c in sorted(os.sched_getaffinity(0)) if c not in s))" "$SERVER_CPUS")"
  [ -n "$OTHERS" ] && WRK_PIN=(taskset -c "$OTHERS")
fi
mkfifo "$WORK/out"
"${PIN[@]}" "$BIN" --serve "$((SECS + 30))" >"$WORK/out" 2>"$WORK/log" &
PID=$!
exec 3<"$WORK/out"
IFS= read -r -t 30 FIRST <&3
python3 - "$FIRST" "$WORK" <<'PY'
import json, sys
info = json.loads(sys.argv[1])
open(sys.argv[2] + "/paths", "w").write("\n".join(info["paths"]) + "\n")
open(sys.argv[2] + "/token", "w").write(info["access_token"])
open(sys.argv[2] + "/base", "w").write(info["base_url"])
PY
export WRK_TOKEN="$(cat "$WORK/token")" WRK_PATHS="$WORK/paths"
"${WRK_PIN[@]}" wrk -t "$THREADS" -c "$CONNS" -d "${SECS}s" --latency -s crates/sandbox/benches/wrk_mix.lua "$(cat "$WORK/base")"
