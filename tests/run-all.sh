#!/usr/bin/env bash
# Every test of the project, in one command (what CI runs):
#   1. cargo test: unit tests, the proxy against a throwaway PostgreSQL
#      (tests/core.rs, tests/tls.rs, tests/guard_proxy.rs) and the guard corpora;
#   2. the psql isolation suite (tests/isolation/run.sh);
#   3. the 1M-row index and latency check (tests/isolation/perf/run.sh);
#   4. real client drivers through the proxy (tests/drivers/run.sh: psql, pgbench,
#      psycopg 3, asyncpg, node-postgres, postgres.js, pgjdbc, pgx, lib/pq).
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
  echo "cargo test: $(awk '/^test result:/ {p += $4; f += $6} END {print p+0 " passed, " f+0 " failed"}' /tmp/pgtp-cargo-test.log)"
}

part "cargo test" cargo_tests
part "isolation suite (psql through the proxy)" tests/isolation/run.sh
part "1M-row index and latency check" tests/isolation/perf/run.sh
part "client drivers through the proxy" tests/drivers/run.sh

echo "total: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" = 0 ]
