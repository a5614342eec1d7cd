#!/usr/bin/env bash
# Every test of the project, in one command (what CI runs):
#   1. cargo test: unit tests, the proxy against a throwaway PostgreSQL
#      (tests/core.rs, tests/tls.rs, tests/guard_proxy.rs, the mutation-based
#      soundness test tests/guard_soundness.rs), the guard corpora, and the
#      fuzz corpora replayed on stable through the fuzz oracles
#      (tests/fuzz_corpus.rs);
#   2. a short run of the fuzz targets on their committed corpora
#      (tests/fuzz-regression.sh, about two minutes) when `cargo +nightly` and
#      cargo-fuzz are installed; without them, step 1's stable replay is the
#      only corpus check, and this script says so;
#   3. the psql isolation suite (tests/isolation/run.sh);
#   4. the 1M-row index and latency check (tests/isolation/perf/run.sh);
#   5. real client drivers through the proxy (tests/drivers/run.sh: psql, pgbench,
#      psycopg 3, asyncpg, node-postgres, postgres.js, pgjdbc, pgx, lib/pq), in
#      session mode and again in transaction pool mode, in both pin forms.
# Needs PostgreSQL 15 server binaries, psql, libclang for the SQL parser and the
# drivers (.ci/run installs them; tests/drivers/install.sh for the drivers).
# Every part runs even when an earlier one failed; the last line is
# "total: N passed, M failed" over the parts. Exits non-zero if anything fails.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# Totals over every part: each part's own "N passed, M failed" (cargo test: its
# test results; the perf check counts as one), plus one failure for a part that
# failed without counting.
TOTAL_PASSED=0
TOTAL_FAILED=0
part() { # name command...
  local name=$1; shift
  local log rc=0 counts
  log=$(mktemp /tmp/pgtp-part.XXXXXX)
  echo "== $name"
  "$@" 2>&1 | tee "$log" || rc=$?
  counts=$(grep -aE '^(cargo test: )?[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1 | sed 's/^cargo test: //' || true)
  rm -f "$log"
  if [ -n "$counts" ]; then
    TOTAL_PASSED=$((TOTAL_PASSED + ${counts%% passed*}))
    counts=${counts#*, }; TOTAL_FAILED=$((TOTAL_FAILED + ${counts%% failed}))
  elif [ "$rc" = 0 ]; then TOTAL_PASSED=$((TOTAL_PASSED + 1))
  fi
  if [ "$rc" = 0 ]; then echo "-- $name: ok"
  else echo "-- $name: FAILED"; [ -n "$counts" ] && [ "${counts%% failed}" != 0 ] || TOTAL_FAILED=$((TOTAL_FAILED + 1)); fi
}

cargo_tests() {
  cargo test --all-targets --no-fail-fast 2>&1 | tee /tmp/pgtp-cargo-test.log | grep -E '^(test result|running|error|failures:|    [a-z_:]+$)|panicked' || true
  if grep -qE '^test result: FAILED|^error' /tmp/pgtp-cargo-test.log || ! grep -q '^test result: ok' /tmp/pgtp-cargo-test.log; then
    echo "cargo test failed; full log: /tmp/pgtp-cargo-test.log"
    tail -60 /tmp/pgtp-cargo-test.log
    echo "cargo test: $(awk '/^test result:/ {p += $4; f += $6} END {print p+0 " passed, " f+0 " failed"}' /tmp/pgtp-cargo-test.log)"
    return 1
  fi
  # The corpus replay and the soundness test must have run, not been skipped.
  local t
  for t in every_committed_corpus_input_agrees_with_postgresql mutated_corpus_statements_never_move_the_tenant; do
    grep -q "^test $t \.\.\. ok" /tmp/pgtp-cargo-test.log || {
      echo "cargo test did not run $t"
      return 1
    }
  done
  echo "cargo test: $(awk '/^test result:/ {p += $4; f += $6} END {print p+0 " passed, " f+0 " failed"}' /tmp/pgtp-cargo-test.log)"
}

fuzz_regression() {
  if cargo +nightly --version >/dev/null 2>&1 && cargo +nightly fuzz --version >/dev/null 2>&1; then
    tests/fuzz-regression.sh
  else
    echo "fuzz: cargo +nightly or cargo-fuzz missing: the corpora were replayed on stable only (tests/fuzz_corpus.rs, in cargo test); install both for the libFuzzer run"
  fi
}

part "cargo test" cargo_tests
part "fuzz targets on their committed corpora" fuzz_regression
part "isolation suite (psql through the proxy)" tests/isolation/run.sh
part "1M-row index and latency check" tests/isolation/perf/run.sh
part "client drivers through the proxy" tests/drivers/run.sh
part "client drivers through the proxy in transaction pool mode" env POOL_MODE=transaction tests/drivers/run.sh
part "client drivers through the proxy in transaction pool mode, pin form set_local" \
  env POOL_MODE=transaction PIN_FORM=set_local tests/drivers/run.sh

echo "total: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" = 0 ]
