#!/usr/bin/env bash
# The dashboard in a real browser: starts `wrapup demo --hold`, drives Debian's chromium (headless) through it with
# playwright-core, and writes the screenshots docs/OPERATING.md shows into docs/screenshots/.
#
# Without node, chromium or playwright-core it says it was skipped and exits 0, unless WRAPUP_REQUIRE_BROWSER=1 (set
# by .ci/run), where a missing piece is a failure. WRAPUP_BIN: the wrapup binary (built with cargo when absent);
# CHROMIUM: the browser (default: chromium on the PATH).
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

missing() {
  if [ "${WRAPUP_REQUIRE_BROWSER:-}" = 1 ]; then
    echo "error: the browser test cannot run: $1" >&2
    exit 1
  fi
  echo "SKIPPED: the browser test of the dashboard: $1"
  exit 0
}

command -v node >/dev/null 2>&1 || missing "node is not installed (apt-get install nodejs npm)"
CHROMIUM="${CHROMIUM:-$(command -v chromium || true)}"
[ -n "$CHROMIUM" ] && [ -x "$CHROMIUM" ] || missing "chromium is not installed (apt-get install chromium)"
if [ ! -d node_modules/playwright-core ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >/dev/null 2>&1 ||
    missing "playwright-core is not installed and npm ci failed (cd tests/browser && npm ci)"
fi
WRAPUP_BIN="${WRAPUP_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/wrapup}"
if [ ! -x "$WRAPUP_BIN" ]; then
  (cd "$root" && cargo build --bin wrapup)
fi
export CHROMIUM WRAPUP_BIN
export SCREENSHOTS="${SCREENSHOTS:-$root/docs/screenshots}"
exec node --test dashboard.test.mjs
