#!/usr/bin/env bash
# Every test of the project, in one command (what CI runs):
#   1. cargo test: unit tests, the proxy against a throwaway PostgreSQL
#      (tests/core.rs, tests/tls.rs, tests/guard_proxy.rs, the mutation-based
#      soundness test tests/guard_soundness.rs), the guard corpora, and the
#      fuzz corpora replayed on stable through the fuzz oracles
#      (tests/fuzz_corpus.rs);
#   2. a short run of the fuzz targets on their committed corpora
#      (tests/fuzz-regression.sh, about a minute) when `cargo +nightly` and
#      cargo-fuzz are installed; without them, step 1's stable replay is the
#      only corpus check, and this script says so;
#   3. the psql isolation suite (tests/isolation/run.sh);
#   4. the 1M-row index and latency check (tests/isolation/perf/run.sh).
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
# The corpus replay and the soundness test must have run, not been skipped.
for t in every_committed_corpus_input_agrees_with_postgresql mutated_corpus_statements_never_move_the_tenant; do
  grep -q "^test $t \.\.\. ok" /tmp/pgtp-cargo-test.log || {
    echo "cargo test did not run $t" >&2
    exit 1
  }
done

echo "== fuzz targets on their committed corpora"
if cargo +nightly --version >/dev/null 2>&1 && cargo +nightly fuzz --version >/dev/null 2>&1; then
  tests/fuzz-regression.sh
else
  echo "fuzz: cargo +nightly or cargo-fuzz missing: the corpora were replayed on stable only (tests/fuzz_corpus.rs, above); install both for the libFuzzer run" >&2
fi

echo "== isolation suite (psql through the proxy)"
tests/isolation/run.sh

echo "== 1M-row index and latency check"
tests/isolation/perf/run.sh
