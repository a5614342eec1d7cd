#!/usr/bin/env bash
# Every test of the project, in one command (what CI runs):
#   1. cargo test: unit tests, the proxy against a throwaway PostgreSQL
#      (tests/core.rs, tests/tls.rs, tests/guard_proxy.rs) and the guard corpora;
#   2. the psql isolation suite (tests/isolation/run.sh);
#   3. the 1M-row index and latency check (tests/isolation/perf/run.sh).
# Needs PostgreSQL 15 server binaries, psql, and libclang for the SQL parser
# (.ci/run installs them). Exits non-zero if anything fails.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

echo "== cargo test"
cargo test --all-targets --no-fail-fast 2>&1 | tee /tmp/pgtp-cargo-test.log | grep -E '^(test result|running|error|failures:|    [a-z_:]+$)|panicked' || true
if grep -qE '^test result: FAILED|^error' /tmp/pgtp-cargo-test.log || ! grep -q '^test result: ok' /tmp/pgtp-cargo-test.log; then
  echo "cargo test failed; full log: /tmp/pgtp-cargo-test.log" >&2
  tail -60 /tmp/pgtp-cargo-test.log >&2
  exit 1
fi
CARGO_PASSED=$(awk '/^test result:/ {p += $4} END {print p+0}' /tmp/pgtp-cargo-test.log)
echo "cargo test: $CARGO_PASSED passed"

echo "== isolation suite (psql through the proxy)"
tests/isolation/run.sh

echo "== 1M-row index and latency check"
tests/isolation/perf/run.sh
