#!/usr/bin/env bash
# Index and latency test at ~1M rows: every seed endpoint query, run through
# the proxy as one tenant, must use an index leading with organization_id
# (no Seq Scan on a tenant table) and answer with p95 < 50 ms.
#
#   tests/isolation/perf/run.sh [--iterations N] [--max-p95-ms MS]
#   tests/isolation/perf/run.sh --compare-context ROUNDS [--iterations N]
#
# Starts a throwaway PostgreSQL (tests/support/pg.sh), applies sql/, loads
# perf/load.sql (~1.15M rows over 100 organizations), starts pg-tenant-proxy,
# mints a token for organization 42 and runs perf/bench.py with plain psql.
# Prints p50/p95/max per endpoint and the index each plan uses; exits non-zero
# on a Seq Scan or a p95 over the limit. Takes about a minute.
# Context verification is on, as shipped: context key 1 is installed and given
# to the proxy. --compare-context ROUNDS measures its cost instead: a second
# proxy runs with --context-verification off, and ROUNDS rounds alternate
# (verification on in the database + the proxy with the key, then off + the
# proxy without), each a full bench.py pass; then per endpoint the median over
# rounds of p50 and p95, on and off.
# Environment: PROXY_BIN (default target/debug/pg-tenant-proxy, built when
# missing or older than src/), PERF_DIRECT=1 to bypass the proxy (connect as
# proxy_login over the Unix socket with the proxy's startup parameters and a
# proof minted for a Unix-socket connection; for diagnosing the proxy).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
HERE="$ROOT/tests/isolation/perf"
cd "$ROOT"
START=$(date +%s)

export LC_ALL=C LANG=C PGTZ=UTC
unset PGOPTIONS PGPASSWORD PGSERVICE PGSERVICEFILE || true
# shellcheck source=../../support/pg.sh
source "$ROOT/tests/support/pg.sh"

COMPARE=0
if [ "${1:-}" = --compare-context ]; then
  COMPARE=${2:?--compare-context needs a number of rounds}; shift 2
fi

WORK=$(mktemp -d /tmp/pgtp-perf.XXXXXX)
PROXY_PID=
PROXY_OFF_PID=
cleanup() {
  local rc=$?
  if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; fi
  if [ -n "$PROXY_OFF_PID" ]; then kill "$PROXY_OFF_PID" 2>/dev/null || true; wait "$PROXY_OFF_PID" 2>/dev/null || true; fi
  pg_stop || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

uuid_of() { # the md5(<text>)::uuid of perf/load.sql
  python3 -c 'import hashlib,sys;h=hashlib.md5(sys.argv[1].encode()).hexdigest();print(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")' "$1"
}
ORG=$(uuid_of org42)
USER_ID=$(uuid_of user42-1)

echo "starting PostgreSQL ..."
pg_start shared_buffers=512MB work_mem=16MB
export PGHOST="$PG_DIR" PGPORT="$PG_PORT" PGUSER="$PG_SUPER"
pg_psql -d postgres -c "CREATE DATABASE app" >/dev/null
for f in "$ROOT"/sql/*.sql; do psql -X -q -v ON_ERROR_STOP=1 -d app -f "$f" >/dev/null; done
LOGIN_PASSWORD="login-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
KEY_FILE="$WORK/context.key"
od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$KEY_FILE"; echo >>"$KEY_FILE"
pg_psql -d app -v pw="$LOGIN_PASSWORD" -v key="$(cat "$KEY_FILE")" >/dev/null <<'SQL'
CREATE ROLE proxy_login LOGIN PASSWORD :'pw' IN ROLE tenant_app;
SELECT tenant.add_context_key('1', :'key');
SQL

echo "loading ~1.15M rows over 100 organizations ..."
t0=$(date +%s)
pg_psql -d app -f "$HERE/load.sql" >/dev/null
pg_psql -d app -At -c "SELECT 'rows loaded: ' || sum(n_live_tup) FROM pg_stat_user_tables WHERE schemaname = 'public'"
echo "load took $(( $(date +%s) - t0 )) s"

if [ -z "${PROXY_BIN:-}" ]; then
  PROXY_BIN=$ROOT/target/debug/pg-tenant-proxy
  if [ ! -x "$PROXY_BIN" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$PROXY_BIN" -print -quit)" ]; then
    echo "building pg-tenant-proxy ..."
    cargo build --quiet --bin pg-tenant-proxy
  fi
fi
# start_proxy LOG FLAGS...: a proxy on a free port; sets STARTED_PID/STARTED_PORT.
start_proxy() {
  local log=$1; shift
  STARTED_PORT=$(pg_free_port)
  # The plan check runs EXPLAIN through the proxy, which refuses it by default
  # (its estimates describe every tenant's rows): this operator check allows it.
  printf '[guard]\nallow_explain = true\n' >"$WORK/proxy.toml"
  "$PROXY_BIN" serve --config "$WORK/proxy.toml" --listen "127.0.0.1:$STARTED_PORT" \
    --upstream "postgresql://proxy_login:$LOGIN_PASSWORD@127.0.0.1:$PG_PORT/app" \
    --jwt-secret-file "$SECRET_FILE" "$@" >"$log" 2>&1 &
  STARTED_PID=$!
  for _ in $(seq 1 100); do
    kill -0 "$STARTED_PID" 2>/dev/null || { echo "pg-tenant-proxy exited:" >&2; cat "$log" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$STARTED_PORT") 2>/dev/null && break
    sleep 0.1
  done
}
BENCH_HOST=127.0.0.1
if [ "${PERF_DIRECT:-0}" = 1 ]; then
  echo "PERF_DIRECT=1: connecting as proxy_login directly over the Unix socket (no proxy)"
  PROOF=$("$PROXY_BIN" context-proof --context-key-file "$KEY_FILE" --org "$ORG" --user "$USER_ID" --ttl 7200 --unix)
  export PGOPTIONS="-c app.current_organization_id=$ORG -c app.current_user_id=$USER_ID -c app.context_proof=$PROOF"
  BENCH_HOST=$PG_DIR BENCH_PORT=$PG_PORT BENCH_USER=proxy_login
else
  SECRET_FILE="$WORK/jwt.secret"
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$SECRET_FILE"
  BENCH_USER=app
  start_proxy "$WORK/proxy.log" --context-key-file "$KEY_FILE"; PROXY_PID=$STARTED_PID BENCH_PORT=$STARTED_PORT
  if [ "$COMPARE" -gt 0 ]; then
    start_proxy "$WORK/proxy-off.log" --context-verification off; PROXY_OFF_PID=$STARTED_PID OFF_PORT=$STARTED_PORT
  fi
  PGPASSWORD=$("$PROXY_BIN" token --jwt-secret-file "$SECRET_FILE" --org "$ORG" --sub "$USER_ID" --ttl 7200)
  export PGPASSWORD
  unset PGOPTIONS
  echo "through pg-tenant-proxy on 127.0.0.1:$BENCH_PORT as organization 42 ($ORG)"
fi

# Page counts for the plan check, read as the DBA: the proxy refuses relpages
# to tenants (it counts every tenant's rows).
TABLE_PAGES=$(pg_psql -d app -Atc "SELECT string_agg(relname || '=' || relpages, ' ') FROM pg_class
  WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'")
if [ "$COMPARE" -gt 0 ]; then
  [ -n "$PROXY_OFF_PID" ] || { echo "--compare-context needs the proxy (not PERF_DIRECT)" >&2; exit 2; }
  rc=0
  for round in $(seq 1 "$COMPARE"); do
    for mode in on off; do
      if [ "$mode" = on ]; then port=$BENCH_PORT verify=true; else port=$OFF_PORT verify=false; fi
      pg_psql -d app -c "SELECT tenant.set_context_verification($verify)" >/dev/null
      echo "== round $round, context verification $mode"
      python3 "$HERE/bench.py" --table-pages "$TABLE_PAGES" --host 127.0.0.1 --port "$port" --user app --dbname app "$@" \
        | tee "$WORK/compare.$mode.$round" || rc=$?
    done
  done
  pg_psql -d app -c "SELECT tenant.set_context_verification(true)" >/dev/null
  python3 - "$WORK" "$COMPARE" <<'PY'
import statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
res = {}
for mode in ("on", "off"):
    for r in range(1, rounds + 1):
        for line in open(f"{work}/compare.{mode}.{r}"):
            f = line.split()
            if len(f) >= 4 and f[0] != "endpoint" and not line.startswith(("ok:", "FAILED", "  ")):
                try:
                    res.setdefault(f[0], {}).setdefault(mode, []).append((float(f[1]), float(f[2])))
                except ValueError:
                    pass
print(f"\nmedian over {rounds} rounds (ms)")
print(f"{'endpoint':<30} {'p50 on':>7} {'p50 off':>7} {'p95 on':>7} {'p95 off':>7}")
for name, m in res.items():
    med = lambda mode, i: statistics.median(v[i] for v in m.get(mode, [(0, 0)]))
    print(f"{name:<30} {med('on',0):7.2f} {med('off',0):7.2f} {med('on',1):7.2f} {med('off',1):7.2f}")
PY
  echo "perf test took $(( $(date +%s) - START )) s"
  exit "$rc"
fi

rc=0
python3 "$HERE/bench.py" --table-pages "$TABLE_PAGES" --host "$BENCH_HOST" --port "$BENCH_PORT" --user "$BENCH_USER" --dbname app \
  --plans "$WORK/plans.txt" "$@" || rc=$?
if [ "$rc" != 0 ] && [ -f "$WORK/plans.txt" ]; then
  echo "--- plans ---"; cat "$WORK/plans.txt"
fi
echo "perf test took $(( $(date +%s) - START )) s"
exit "$rc"
