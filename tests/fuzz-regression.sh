#!/usr/bin/env bash
# Short regression run of the fuzz targets (fuzz/, cargo-fuzz + libFuzzer):
# each target replays its committed corpus (fuzz/corpus/<target>/) and then
# mutates it for PGTP_FUZZ_SECONDS (default 12) seconds. New inputs go to a
# temporary directory, never into the committed corpus; a disagreement fails
# the run and leaves the input in fuzz/artifacts/<target>/.
# Needs `cargo +nightly` and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECONDS_EACH=${PGTP_FUZZ_SECONDS:-12}
TARGETS=(fast_path first_keyword string_continuation notify_rewrite frame startup options jwt_claims)
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT

echo "fuzz: building the targets (cargo +nightly fuzz build)"
cargo +nightly fuzz build -s none >"$SCRATCH/build.log" 2>&1 || {
  tail -40 "$SCRATCH/build.log" >&2
  exit 1
}
for t in "${TARGETS[@]}"; do
  n=$(find "fuzz/corpus/$t" -type f | wc -l)
  if [ "$n" -lt 200 ]; then
    echo "fuzz: fuzz/corpus/$t has only $n inputs" >&2
    exit 1
  fi
  mkdir -p "$SCRATCH/$t"
  case "$t" in
    frame | startup | options | jwt_claims) dict=fuzz/protocol.dict ;;
    *) dict=fuzz/sql.dict ;;
  esac
  if ! cargo +nightly fuzz run -s none "$t" "$SCRATCH/$t" "fuzz/corpus/$t" -- \
    -dict="$dict" -max_len=512 -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
    >"$SCRATCH/$t.log" 2>&1; then
    echo "fuzz: $t found a disagreement:" >&2
    grep -E "disagreement|panicked" -A3 "$SCRATCH/$t.log" >&2 || tail -40 "$SCRATCH/$t.log" >&2
    exit 1
  fi
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$SCRATCH/$t.log" || true)
  cov=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|INITED)' "$SCRATCH/$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
  if [ -z "$runs" ] || [ "$runs" -lt "$n" ]; then
    echo "fuzz: $t ran $runs inputs, fewer than its $n corpus inputs" >&2
    exit 1
  fi
  echo "fuzz: $t ok: $n corpus inputs replayed, $runs executions in ${SECONDS_EACH}s, $cov"
done
