#!/usr/bin/env bash
# Server CPU per intake request at a fixed rate, for comparing two builds on a shared machine (where throughput
# figures swing with other people's load and CPU time per request much less):
#   tests/edge/intake_cpu.sh BINARY RATE SECS        e.g.  tests/edge/intake_cpu.sh target/release/wrapup 1000 20
# Starts BINARY's sandbox and `BINARY serve` (one Genesys connection, no rule, the reconciler off) on loopback,
# POSTs one `user.end` envelope per request (UUID ids, a new conversation each) from 16 keep-alive connections at
# RATE requests/s for SECS seconds, and prints the 202 count and the server process's CPU seconds and microseconds
# per request (every leg is also decided by a worker, `no_rule`, inside the window). Figures: docs/PERFORMANCE.md.
set -euo pipefail
bin="$(realpath "$1")"; rate="$2"; secs="$3"
here="$(cd "$(dirname "$0")" && pwd)"
dir="$(mktemp -d)"
cd "$dir"
"$bin" sandbox --listen 127.0.0.1:18089 > sandbox.json 2> sandbox.log &
sandbox=$!
trap 'kill "$sandbox" 2> /dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do [ -s sandbox.json ] && break; sleep 0.2; done
python3 - <<'PY'
import json
d = json.load(open("sandbox.json"))
open("wrapup.toml", "w").write(f'''data_dir = "data"
listen = "127.0.0.1:18481"

[[connections]]
name = "gen"
kind = "genesys"
base_url = "{d['base_url']}"
client_id = "{d['client_id']}"
client_secret = "literal:{d['client_secret']}"
reconcile_every_secs = 0

[connections.intake]
api_key = "literal:cpu-key"
''')
PY
"$bin" serve --config wrapup.toml > serve.log 2>&1 &
pid=$!
for _ in $(seq 1 50); do curl -s -m 1 http://127.0.0.1:18481/health > /dev/null && break; sleep 0.2; done
sleep 1
python3 "$here/intake_load.py" 127.0.0.1 18481 "$pid" "$rate" "$secs" 16 cpu-key
kill -INT "$pid"; wait "$pid" 2> /dev/null || true
