#!/usr/bin/env bash
# Index and latency test at ~1M rows: every seed endpoint query, run through
# the proxy as one tenant, must use an index leading with organization_id
# (no Seq Scan on a tenant table) and answer with p95 < 50 ms.
#
#   tests/isolation/perf/run.sh [--iterations N] [--max-p95-ms MS]
#
# Starts a throwaway PostgreSQL (tests/support/pg.sh), applies sql/, loads
# perf/load.sql (~1.15M rows over 100 organizations), starts pg-tenant-proxy,
# mints a token for organization 42 and runs perf/bench.py with plain psql.
# Prints p50/p95/max per endpoint and the index each plan uses; exits non-zero
# on a Seq Scan or a p95 over the limit. Takes about a minute.
# Environment: PROXY_BIN (default target/debug/pg-tenant-proxy, built when
# missing or older than src/), PERF_DIRECT=1 to bypass the proxy (connect as
# proxy_login with the proxy's startup parameters; for diagnosing the proxy).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
HERE="$ROOT/tests/isolation/perf"
cd "$ROOT"
START=$(date +%s)

export LC_ALL=C LANG=C PGTZ=UTC
unset PGOPTIONS PGPASSWORD PGSERVICE PGSERVICEFILE || true
# shellcheck source=../../support/pg.sh
source "$ROOT/tests/support/pg.sh"

WORK=$(mktemp -d /tmp/pgtp-perf.XXXXXX)
PROXY_PID=
cleanup() {
  local rc=$?
  if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; fi
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
pg_psql -d app -v pw="$LOGIN_PASSWORD" >/dev/null <<'SQL'
CREATE ROLE proxy_login LOGIN PASSWORD :'pw' IN ROLE tenant_app;
SQL

echo "loading ~1.15M rows over 100 organizations ..."
t0=$(date +%s)
pg_psql -d app -f "$HERE/load.sql" >/dev/null
pg_psql -d app -At -c "SELECT 'rows loaded: ' || sum(n_live_tup) FROM pg_stat_user_tables WHERE schemaname = 'public'"
echo "load took $(( $(date +%s) - t0 )) s"

if [ "${PERF_DIRECT:-0}" = 1 ]; then
  echo "PERF_DIRECT=1: connecting as proxy_login directly (no proxy)"
  export PGPASSWORD=$LOGIN_PASSWORD PGOPTIONS="-c app.current_organization_id=$ORG -c app.current_user_id=$USER_ID"
  BENCH_PORT=$PG_PORT BENCH_USER=proxy_login
else
  if [ -z "${PROXY_BIN:-}" ]; then
    PROXY_BIN=$ROOT/target/debug/pg-tenant-proxy
    if [ ! -x "$PROXY_BIN" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$PROXY_BIN" -print -quit)" ]; then
      echo "building pg-tenant-proxy ..."
      cargo build --quiet --bin pg-tenant-proxy
    fi
  fi
  SECRET_FILE="$WORK/jwt.secret"
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$SECRET_FILE"
  BENCH_PORT=$(pg_free_port) BENCH_USER=app
  # The plan check runs EXPLAIN through the proxy, which refuses it by default
  # (its estimates describe every tenant's rows): this operator check allows it.
  printf '[guard]\nallow_explain = true\n' >"$WORK/proxy.toml"
  "$PROXY_BIN" serve --config "$WORK/proxy.toml" --listen "127.0.0.1:$BENCH_PORT" \
    --upstream "postgresql://proxy_login:$LOGIN_PASSWORD@127.0.0.1:$PG_PORT/app" \
    --jwt-secret-file "$SECRET_FILE" >"$WORK/proxy.log" 2>&1 &
  PROXY_PID=$!
  for _ in $(seq 1 100); do
    kill -0 "$PROXY_PID" 2>/dev/null || { echo "pg-tenant-proxy exited:" >&2; cat "$WORK/proxy.log" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$BENCH_PORT") 2>/dev/null && break
    sleep 0.1
  done
  PGPASSWORD=$("$PROXY_BIN" token --jwt-secret-file "$SECRET_FILE" --org "$ORG" --sub "$USER_ID" --ttl 3600)
  export PGPASSWORD
  unset PGOPTIONS
  echo "through pg-tenant-proxy on 127.0.0.1:$BENCH_PORT as organization 42 ($ORG)"
fi

TABLE_PAGES=$(pg_psql -d app -Atc "SELECT string_agg(relname || '=' || relpages, ' ') FROM pg_class
  WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'")
rc=0
python3 "$HERE/bench.py" --host 127.0.0.1 --port "$BENCH_PORT" --user "$BENCH_USER" --dbname app \
  --plans "$WORK/plans.txt" --table-pages "$TABLE_PAGES" "$@" || rc=$?
if [ "$rc" != 0 ] && [ -f "$WORK/plans.txt" ]; then
  echo "--- plans ---"; cat "$WORK/plans.txt"
fi
echo "perf test took $(( $(date +%s) - START )) s"
exit "$rc"
