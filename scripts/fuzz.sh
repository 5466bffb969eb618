#!/bin/sh
# Runs every coverage-guided fuzz target in fuzz/ (cargo-fuzz, libFuzzer)
# for FUZZ_SECONDS each (default 20); FUZZ_TARGETS picks some. Corpora
# grow in fuzz/corpus/, crashes land in fuzz/artifacts/ and fail the run.
# cargo-fuzz needs a nightly toolchain: without one this says so and skips.
set -eu
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
CARGO_FUZZ_VERSION=0.13.2
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: SKIPPED, nothing was fuzzed: no nightly toolchain (cargo-fuzz needs one: rustup toolchain install nightly)" >&2
  exit 0
fi
if ! cargo-fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "fuzz: cargo install cargo-fuzz $CARGO_FUZZ_VERSION (a few minutes, once)"
  cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# The fuzz workspace's crates (fuzz/Cargo.lock, committed) come from
# crates.io once; later runs need no network. Fetched here so a failure
# says what it is instead of surfacing inside the first target's build.
mkdir -p fuzz/logs
if ! cargo +nightly fetch --locked --manifest-path fuzz/Cargo.toml >fuzz/logs/fetch.log 2>&1; then
  echo "fuzz: FAILED to fetch the fuzz workspace's crates (crates.io unreachable, or fuzz/Cargo.lock out of date; see fuzz/logs/fetch.log)" >&2
  exit 1
fi

targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
failed=""
for t in $targets; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/logs/$t.log"
  printf 'fuzz: %-8s %ss ... ' "$t" "$FUZZ_SECONDS"
  if cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    echo "ok (${runs:-?} runs, corpus $(ls "fuzz/corpus/$t" | wc -l) inputs)"
  else
    echo "FAILED (see $log and fuzz/artifacts/$t/)"
    failed="$failed $t"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: crashes or build failures in:$failed" >&2
  exit 1
fi
