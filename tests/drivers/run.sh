#!/usr/bin/env bash
# Real client drivers through pg-tenant-proxy.
#
#   tests/drivers/run.sh            every driver
#   tests/drivers/run.sh NAME...    only these (psql pgbench-simple pgbench-extended
#                                   pgbench-prepared pgbench-control psycopg asyncpg
#                                   node-pg postgresjs pgjdbc go-pgx go-pq)
#
# Starts a throwaway PostgreSQL with sql/ and the demo seed and the proxy in front
# of it (tests/support/pg.sh, tests/support/proxy.sh: the same stack as
# tests/isolation/run.sh), mints one token per tenant, then runs one small program
# per driver from this folder. Each program connects the way an application
# would, with the token as the password, and asserts what a user sees:
#   - tenant A reads exactly its rows of agent_instances and none of tenant B's,
#     tenant B exactly its own (a bound parameter naming the other organization
#     finds nothing);
#   - the pin: current_setting('app.current_organization_id') and
#     app.current_user_id are the token's, also after RESET ALL and DISCARD ALL;
#   - SET app.current_organization_id is refused with SQLSTATE 42501 and the
#     session goes on, still pinned; a wrong password fails with 28P01;
#   - the driver's pool reset path (what the pool does to a connection handed
#     back dirty) leaves a usable, still-pinned session.
# Programs print "FAIL: ..." lines and exit non-zero on any failed assertion.
#
# Needs: psql, pgbench, /usr/bin/python3 with Debian's python3-psycopg,
# python3-psycopg-pool and python3-asyncpg, node + npm (tests/drivers/node, from
# the npm registry), java with Debian's libpostgresql-jdbc-java and
# libhikaricp-java, go with Debian's golang-github-jackc-pgx-v4-dev and
# golang-github-lib-pq-dev. .ci/run installs them (tests/drivers/install.sh).
# POOL_MODE=transaction runs the same programs against a proxy in transaction
# pool mode with a pool of 2 backends (names are prefixed "txn:"); with
# PIN_FORM=set_local too, the tenant is pinned with BEGIN and SET LOCAL
# (names are prefixed "txn-set-local:").
# Output: one "ok"/"FAILED" line per driver (a failure's output indented below it,
# tokens and passwords redacted; DRIVERS_VERBOSE=1 shows every driver's
# assertions), then "N passed, M failed". Non-zero exit when
# anything failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/drivers"
cd "$ROOT"

ALL=(psql pgbench-simple pgbench-extended pgbench-prepared pgbench-control
     psycopg asyncpg node-pg postgresjs pgjdbc go-pgx go-pq)
ONLY=()
for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
    -*) echo "unknown option: $arg" >&2; exit 2 ;;
    *) printf '%s\n' "${ALL[@]}" | grep -qx "$arg" || { echo "unknown driver: $arg" >&2; exit 2; }
       ONLY+=("$arg") ;;
  esac
done
[ "${#ONLY[@]}" -gt 0 ] || ONLY=("${ALL[@]}")

export LC_ALL=C.UTF-8 LANG=C.UTF-8 PGTZ=UTC
unset PGOPTIONS PGPASSWORD PGSERVICE PGSERVICEFILE PGSSLMODE PGDATABASE PGUSER PGHOST PGPORT || true

# shellcheck source=../support/pg.sh
source "$ROOT/tests/support/pg.sh"
# shellcheck source=../support/proxy.sh
source "$ROOT/tests/support/proxy.sh"

WORK=$(mktemp -d /tmp/pgtp-drivers.XXXXXX)
cleanup() {
  local rc=$?
  proxy_stop
  pg_stop || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=$(date +%s)
echo "starting PostgreSQL and the proxy ..."
pg_start
export PGHOST="$PG_DIR" PGPORT="$PG_PORT" PGUSER="$PG_SUPER"
app_create_db
app_apply_sql "$WORK/apply.log"
app_login_role
app_seed
app_context_key "$WORK"
PREFIX=
if [ "${POOL_MODE:-session}" = transaction ]; then
  PREFIX="txn:"
  [ "${PIN_FORM:-set_config}" = set_config ] || PREFIX="txn-${PIN_FORM//_/-}:"
  proxy_start "$WORK" --context-key-file "$CONTEXT_KEY_FILE" --pool-mode transaction --pool-size 2 \
    --pool-pin-form "${PIN_FORM:-set_config}"
else
  proxy_start "$WORK"
fi
unset PGHOST PGPORT PGUSER

# What every driver program reads.
TOKEN_A=$(proxy_token "$ORG_A" "$USER_A")
TOKEN_B=$(proxy_token "$ORG_B" "$USER_B")
export PGTP_HOST=127.0.0.1 PGTP_PORT=$PROXY_PORT PGTP_DB=app TOKEN_A TOKEN_B
export PGTP_POOL_MODE=${POOL_MODE:-session}

PASSED=0
FAILED=0
redact() { sed -e "s/$TOKEN_A/<token A>/g" -e "s/$TOKEN_B/<token B>/g" -e "s/$LOGIN_PASSWORD/<login password>/g"; }
run_driver() { # name command...
  local name=$PREFIX$1; shift
  local out="$WORK/$name.out" t1 rc=0
  t1=$(date +%s)
  (cd "$HERE" && timeout 120 "$@") >"$out" 2>&1 </dev/null || rc=$?
  if [ "$rc" = 0 ]; then
    PASSED=$((PASSED + 1)); printf '%-24s ok (%ss)\n' "$name" "$(( $(date +%s) - t1 ))"
    if [ "${DRIVERS_VERBOSE:-0}" = 1 ]; then redact <"$out" | sed 's/^/    /'; fi
  else
    FAILED=$((FAILED + 1)); printf '%-24s FAILED (exit %s, %ss)\n' "$name" "$rc" "$(( $(date +%s) - t1 ))"
    redact <"$out" | tail -40 | sed 's/^/    /'
  fi
}

GO_BUILD="$WORK/go"
for name in "${ONLY[@]}"; do
  case "$name" in
    psql)             run_driver "$name" bash psql.sh ;;
    pgbench-simple)   run_driver "$name" bash pgbench.sh simple ;;
    pgbench-extended) run_driver "$name" bash pgbench.sh extended ;;
    pgbench-prepared) run_driver "$name" bash pgbench.sh prepared ;;
    pgbench-control)  run_driver "$name" bash pgbench.sh control ;;
    psycopg)          run_driver "$name" /usr/bin/python3 psycopg_test.py ;;
    asyncpg)          run_driver "$name" /usr/bin/python3 asyncpg_test.py ;;
    node-pg)          run_driver "$name" node node/pg_test.js ;;
    postgresjs)       run_driver "$name" node node/postgresjs_test.js ;;
    pgjdbc)           run_driver "$name" bash java/run.sh "$WORK/java" ;;
    go-pgx)           run_driver "$name" bash go/run.sh "$GO_BUILD" pgx ;;
    go-pq)            run_driver "$name" bash go/run.sh "$GO_BUILD" pq ;;
  esac
done

if ! kill -0 "$PROXY_PID" 2>/dev/null; then
  echo "pg-tenant-proxy died during the run:"; redact <"$WORK/proxy.log" | tail -20
  FAILED=$((FAILED + 1))
fi
echo "driver suite took $(( $(date +%s) - T0 )) s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
