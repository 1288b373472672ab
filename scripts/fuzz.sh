#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 30), one after
# the other, and fails on the first crash, leak or timeout.
#
#   scripts/fuzz.sh [SECONDS]
#
# Installs cargo-fuzz first if it is missing. Stable Rust: --sanitizer none.
# Each target grows its corpus in fuzz/corpus/<target> (kept between runs,
# not committed), starting from fuzz/seeds/<target> when there is one, with
# fuzz/<name>.dict when the table below names one. Prints one line per
# target; on a crash, the panic and the path of the input that caused it
# (fuzz/artifacts/<target>/; replay it with
# `cd fuzz && cargo fuzz run --sanitizer none <target> <path>`).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-30}"

# Dictionaries by target (libFuzzer -dict=).
declare -A dicts=([sdp_rewrite]=sdp.dict)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# One build for all targets; only its errors are worth showing.
if ! cargo fuzz build --sanitizer none >"$logs/build" 2>&1; then
  tail -n 40 "$logs/build"
  exit 1
fi

for target in $(cargo fuzz list); do
  corpus=("corpus/$target")
  mkdir -p "${corpus[0]}"
  [ -d "seeds/$target" ] && corpus+=("seeds/$target")
  extra=()
  [ -n "${dicts[$target]:-}" ] && extra+=("-dict=${dicts[$target]}")
  log="$logs/$target"
  if cargo fuzz run --sanitizer none "$target" "${corpus[@]}" -- \
    -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}" >"$log" 2>&1; then
    # The last status line: "#N DONE cov: C ft: F corp: U/S exec/s: E ...".
    status=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
    corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$status")
    printf '%-14s ok  %10s runs  %7s exec/s  cov %5s  ft %6s  corpus %5s\n' \
      "$target" "$runs" "$rate" "$cov" "$ft" "$corp"
  else
    echo "$target FAILED:"
    # The panic or libFuzzer's verdict, and where the input was saved.
    # (Lines cut at 200 characters: the input's Debug dump is one line.)
    verdict='panicked at|ERROR: libFuzzer'
    if grep -q -E "$verdict" "$log"; then
      grep -E -A8 "$verdict" "$log" | head -n 30 | cut -c1-200 || true
    else
      tail -n 30 "$log" | cut -c1-200
    fi
    grep -E 'Test unit written to' "$log" || true
    exit 1
  fi
done
