#!/usr/bin/env bash
# A short run of every fuzz target: builds the targets, then runs each for FUZZ_SMOKE_SECS seconds (default 20) from
# the committed seeds in seeds/<target>, into a throwaway corpus. A crash, panic, timeout or OOM fails the script; the
# failing input is left in artifacts/<target>/. The seeds alone are replayed by the test suite (crates/fuzz-checks);
# this finds new inputs, at the cost of cargo-fuzz and an instrumented build, so CI runs it only with
# WRAPUP_CI_FUZZ=1. Long runs and their figures: docs/RELIABILITY.md.
#
# `-s none` (no sanitizer): works on stable Rust without RUSTC_BOOTSTRAP, and the code under test is safe Rust, so what
# a fuzzer can find is panics, aborts, unbounded memory and hangs — all of which libFuzzer catches without ASan.
set -euo pipefail
cd "$(dirname "$0")"
secs="${FUZZ_SMOKE_SECS:-20}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz smoke: cargo-fuzz is not installed; installing it (cargo install cargo-fuzz --locked)"
  if ! cargo install cargo-fuzz --locked >/tmp/cargo-fuzz-install.log 2>&1; then
    tail -n 5 /tmp/cargo-fuzz-install.log || true
    echo "fuzz smoke: SKIPPED — cargo-fuzz could not be installed, so the fuzz targets were not run."
    exit 0
  fi
fi

# --dev: the targets compile about twice as fast as in release; a smoke run needs coverage, not speed.
cargo fuzz build -s none --dev
failed=0
for target in $(cargo fuzz list); do
  corpus="$(mktemp -d)"
  log="$(mktemp)"
  if cargo fuzz run -s none --dev "$target" "$corpus" "seeds/$target" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
    echo "fuzz smoke: $target ok ($runs runs in ${secs}s)"
  else
    echo "fuzz smoke: $target FAILED; the input is in fuzz/artifacts/$target/"
    tail -n 40 "$log"
    failed=1
  fi
  rm -rf "$corpus" "$log"
done
exit "$failed"
