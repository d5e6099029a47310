#!/usr/bin/env bash
# Kill `wrapup catalog apply` part-way, on both platforms, against hostile sandbox orgs; see docs/RELIABILITY.md.
#
# Each round starts an org B (its own seed, a catalog variant, 409s on a quarter of catalog writes, 5xx, writes that
# land but time out, 429 storms, changes visible only 1.5 s late), applies org A's exported catalog to it, SIGKILLs the
# apply after a random 1.5-4.5 s, and runs it again until it exits 0 (at most five times). Then `plan` must exit 0 and the
# sandbox's catalog truth must show no duplicate name. One line per round and platform.
#
# Usage: tests/catalog/kill-apply.sh [ROUNDS]   (needs `cargo build -p wrapup` first, or WRAPUP_BIN; ports 18200-18205)
set -u
W="${WRAPUP_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/debug/wrapup}"
work="$(mktemp -d)"; cd "$work"; echo "working in $work" >&2
rounds=${1:-10}
cat > a.toml <<EOT
seed = 3
traffic_autostart = false
EOT
pkill -f "wrapup sandbox --listen 127.0.0.1:1820" 2>/dev/null; sleep 0.3
$W sandbox --listen 127.0.0.1:18200 --config a.toml > a.log 2>&1 &
sleep 1.5
mk() { log=$1; name=$2; grep '^{"base_url"' $log | python3 -c "
import json,sys
c=json.load(sys.stdin); x=c['cxone']
print(f'''data_dir = \"data-$name\"
[[connections]]
name = \"genesys\"
kind = \"genesys\"
base_url = \"{c['base_url']}\"
client_id = \"{c['client_id']}\"
client_secret = \"literal:{c['client_secret']}\"
request_timeout_ms = 1000
[connections.intake]
api_key = \"literal:k\"

[[connections]]
name = \"cxone\"
kind = \"cxone\"
base_url = \"{c['base_url']}\"
client_id = \"{x['client_id']}\"
client_secret = \"literal:{x['client_secret']}\"
access_key_id = \"{x['access_key_id']}\"
access_key_secret = \"literal:{x['access_key_secret']}\"
request_timeout_ms = 1000
''')" > $name.toml; }
mk a.log ca
$W catalog export --config ca.toml --connection genesys --out g.toml 2>/dev/null
$W catalog export --config ca.toml --connection cxone --out c.toml 2>/dev/null
for i in $(seq 1 $rounds); do
  port=$((18201 + i % 5))
  pkill -f "wrapup sandbox --listen 127.0.0.1:$port" 2>/dev/null; sleep 0.2
  cat > b$i.toml <<EOT
seed = $((100 + i))
traffic_autostart = false
[catalog]
variant = $((1 + i % 3))
[faults]
name = "catalog-hostile"
catalog_conflict_rate = 0.25
catalog_propagation_ms = 1500
http_5xx_rate = 0.05
timeout_rate = 0.05
hang_ms = 1500
storm_rate = 0.01
storm_secs = 1
EOT
  $W sandbox --listen 127.0.0.1:$port --config b$i.toml > b$i.log 2>&1 &
  sleep 1.2
  rm -rf data-cb$i; mk b$i.log cb$i
  for conn in genesys cxone; do
    file=g.toml; [ $conn = cxone ] && file=c.toml
    delay=$(python3 -c "import random; print(round(random.uniform(1.5, 4.5), 2))")
    $W catalog apply --config cb$i.toml --connection $conn --catalog $file --yes --settle-secs 10 > /dev/null 2>&1 &
    pid=$!; sleep $delay; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    killed_writes=$(curl -s 127.0.0.1:$port/sandbox/v1/catalog/changes | python3 -c "import json,sys; d=json.load(sys.stdin); print(sum(1 for c in d if c['platform']=='$conn'))")
    runs=0; ok=0
    while [ $runs -lt 5 ]; do
      runs=$((runs+1))
      if $W catalog apply --config cb$i.toml --connection $conn --catalog $file --yes --settle-secs 10 --report-json > rep$i$conn.json 2>/dev/null; then ok=1; break; fi
    done
    $W catalog plan --config cb$i.toml --connection $conn --catalog $file > /dev/null 2>&1; plan=$?
    dups=$(curl -s 127.0.0.1:$port/sandbox/v1/catalog/$conn | python3 -c "import json,sys; print(json.load(sys.stdin)['duplicate_names'])")
    writes=$(curl -s 127.0.0.1:$port/sandbox/v1/catalog/changes | python3 -c "import json,sys; d=json.load(sys.stdin); print(sum(1 for c in d if c['platform']=='$conn'))")
    echo "round=$i conn=$conn kill_after=${delay}s writes_before_kill=$killed_writes reruns=$runs converged=$ok plan_exit=$plan duplicates=$dups writes_total=$writes report=$(cat rep$i$conn.json 2>/dev/null)"
  done
  pkill -f "wrapup sandbox --listen 127.0.0.1:$port" 2>/dev/null
done
pkill -f "wrapup sandbox --listen 127.0.0.1:1820" 2>/dev/null
