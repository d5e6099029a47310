#!/usr/bin/env bash
# The issue-14 connection flood against a release `wrapup serve` with the default [http] limits:
#   tests/edge/flood.sh BINARY OPEN_FILES CONNECTIONS      e.g.  tests/edge/flood.sh target/release/wrapup 4096 6000
# Starts the service under `ulimit -n OPEN_FILES` on 127.0.0.1:18480 (one Genesys connection whose platform is
# unreachable: the edge is what is measured), runs flood.py against it, prints one JSON line and the number of
# accept errors the service logged, and stops it. Figures: docs/RELIABILITY.md, "The HTTP edge".
set -euo pipefail
bin="$(realpath "$1")"; limit="$2"; n="$3"
here="$(cd "$(dirname "$0")" && pwd)"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cat > "$dir/wrapup.toml" <<'TOML'
data_dir = "data"
listen = "127.0.0.1:18480"

[[connections]]
name = "gen"
kind = "genesys"
base_url = "http://127.0.0.1:9"
client_id = "flood"
client_secret = "literal:flood"

[connections.intake]
api_key = "literal:flood-key"
TOML
cd "$dir"
bash -c "ulimit -n $limit && exec \"$bin\" serve --config wrapup.toml" > serve.log 2>&1 &
pid=$!
for _ in $(seq 1 50); do curl -s -m 1 http://127.0.0.1:18480/health > /dev/null && break; sleep 0.2; done
python3 "$here/flood.py" 127.0.0.1 18480 "$n" "$pid"
echo "accept errors logged: $(grep -ci 'accept' serve.log || true)"
kill -INT "$pid"; wait "$pid" 2> /dev/null || true
