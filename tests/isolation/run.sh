#!/usr/bin/env bash
# Tenant isolation suite, pg_regress style.
#
#   tests/isolation/run.sh            run every tests/isolation/*.sql, diff against expected/
#   tests/isolation/run.sh --accept   same, then overwrite expected/*.out with the results
#   tests/isolation/run.sh --direct   development mode: no proxy; "tenant" scripts connect
#                                     straight to PostgreSQL as proxy_login over the Unix
#                                     socket, with PGOPTIONS carrying exactly the proxy's
#                                     startup parameters (the context proof minted with
#                                     `pg-tenant-proxy context-proof --unix`).
#                                     Scripts marked "-- requires: proxy" are skipped.
#   tests/isolation/run.sh NAME...    only the named scripts (e.g. tenant_a_visibility)
#
# What it does: starts a throwaway PostgreSQL (tests/support/pg.sh), creates database
# `app`, applies sql/*.sql twice with the DBA contract command and checks that the
# second pass changed nothing (schema, ACL and role snapshots), creates the login roles,
# installs context key 1 (tenant.add_context_key), seeds two organizations
# (sql/demo/seed.sql), starts pg-tenant-proxy with that key and a second one with
# key 2 (not installed: the key-rotation script installs it), mints one token per
# tenant, and runs each script with plain psql. Each script names on its first
# lines how it connects ("-- run-as: ..."):
#   tenant_a / tenant_b   through the proxy with that tenant's token
#   tenant_a_service      through the proxy with a token for tenant A without
#                         a user (no `sub`: a service token)
#   login_role            directly to PostgreSQL as proxy_login, no proxy
#   superuser             directly as the superuser (posture checks, DBA tasks)
#
# Scripts that need more than one connection (replays, key rotation) read these from
# the environment with \getenv, or use them in \! commands: ISO_PROXY_PORT,
# ISO_PROXY2_PORT (the proxy with key 2), ISO_TOKEN_A, ISO_TOKEN_B, ISO_PG_PORT,
# ISO_LOGIN_PASSWORD, ISO_KEY1_FILE, ISO_KEY2_FILE, ISO_PROXY_BIN; PGHOST/PGPORT/PGUSER
# reach the superuser over the Unix socket.
# Environment: PROXY_BIN (default target/debug/pg-tenant-proxy, built with cargo when
# missing or older than src/), PG_BIN (server binaries, see tests/support/pg.sh).
# Output: one "ok"/"FAILED" line per check, the diff of each failure, then exactly
# "N passed, M failed". Exit status is non-zero when anything failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/isolation"
cd "$ROOT"

ACCEPT=0
DIRECT=0
ONLY=()
for arg in "$@"; do
  case "$arg" in
    --accept) ACCEPT=1 ;;
    --direct) DIRECT=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
    -*) echo "unknown option: $arg" >&2; exit 2 ;;
    *) ONLY+=("${arg%.sql}") ;;
  esac
done

export LC_ALL=C LANG=C PGTZ=UTC PGCLIENTENCODING=UTF8
unset PGOPTIONS PGPASSWORD PGSERVICE PGSERVICEFILE PGSSLMODE || true

# shellcheck source=../support/pg.sh
source "$ROOT/tests/support/pg.sh"
# The stack (app database, login role, seed, proxy) and the tenants' fixed ids
# ORG_A USER_A ORG_B USER_B. shellcheck source=../support/proxy.sh
source "$ROOT/tests/support/proxy.sh"

WORK=$(mktemp -d /tmp/pgtp-isolation.XXXXXX)
PROXY2_PID=
cleanup() {
  local rc=$?
  proxy_stop
  if [ -n "$PROXY2_PID" ]; then kill "$PROXY2_PID" 2>/dev/null || true; wait "$PROXY2_PID" 2>/dev/null || true; fi
  pg_stop || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASSED=0
FAILED=0
report() { # name status [detail-file]
  if [ "$2" = ok ]; then
    PASSED=$((PASSED + 1)); printf '%-40s ok\n' "$1"
  else
    FAILED=$((FAILED + 1)); printf '%-40s FAILED\n' "$1"
    if [ -n "${3:-}" ] && [ -s "$3" ]; then sed 's/^/    /' "$3"; fi
  fi
}

echo "starting PostgreSQL ..."
pg_start
export PGHOST="$PG_DIR" PGPORT="$PG_PORT" PGUSER="$PG_SUPER"
app_create_db

# --- apply sql/ twice; the second pass must change nothing -----------------
apply_sql() { app_apply_sql "$WORK/apply.log"; }
snapshot() {
  { pg_dump --schema-only --create -d app
    pg_dumpall --roles-only --no-role-passwords
  } 2>&1 | grep -v -E '^\\(un)?restrict ' >"$1"
}
apply_sql
snapshot "$WORK/catalog.1"
apply_sql
snapshot "$WORK/catalog.2"
if diff -u "$WORK/catalog.1" "$WORK/catalog.2" >"$WORK/idempotence.diff"; then
  report "sql/ applied twice: catalog unchanged" ok
else
  report "sql/ applied twice: catalog unchanged" FAILED "$WORK/idempotence.diff"
fi

# --- login roles, as the DBA guide says ---------------------------------------
app_login_role
pg_psql -d app -v pw="$LOGIN_PASSWORD" <<'SQL' >/dev/null
-- A NOINHERIT login role works too, with the documented role-level setting.
CREATE ROLE proxy_login_noinherit LOGIN NOINHERIT PASSWORD :'pw' IN ROLE tenant_app;
ALTER ROLE proxy_login_noinherit SET role = 'tenant_app';
SQL
app_seed
# Context keys: 1 is installed now, as the DBA guide says; 2 is for the rotation script.
app_context_key "$WORK" 2; KEY2_FILE=$CONTEXT_KEY_FILE
pg_psql -d app <<<"SELECT tenant.remove_context_key('2');" >/dev/null
app_context_key "$WORK" 1; KEY1_FILE=$CONTEXT_KEY_FILE
export ISO_PG_PORT=$PG_PORT ISO_LOGIN_PASSWORD=$LOGIN_PASSWORD ISO_KEY1_FILE=$KEY1_FILE ISO_KEY2_FILE=$KEY2_FILE

# --- proxy ------------------------------------------------------------------------
proxy_bin
export ISO_PROXY_BIN=$PROXY_BIN
if [ "$DIRECT" = 0 ]; then
  PROXY_LOG=proxy2.log proxy_start "$WORK" --context-key-id 2 --context-key-file "$KEY2_FILE"
  PROXY2_PID=$PROXY_PID PROXY2_PORT=$PROXY_PORT
  proxy_start "$WORK" --context-key-id 1 --context-key-file "$KEY1_FILE"
  TOKEN_A=$(proxy_token "$ORG_A" "$USER_A")
  TOKEN_B=$(proxy_token "$ORG_B" "$USER_B")
  TOKEN_A_SERVICE=$(proxy_token "$ORG_A" "")
  export ISO_PROXY_PORT=$PROXY_PORT ISO_PROXY2_PORT=$PROXY2_PORT ISO_TOKEN_A=$TOKEN_A ISO_TOKEN_B=$TOKEN_B
  echo "proxy on 127.0.0.1:$PROXY_PORT (context key 1), 127.0.0.1:$PROXY2_PORT (context key 2)"
else
  echo "direct mode: tenant scripts connect as proxy_login with PGOPTIONS (no proxy, no guard)"
fi

# --- scripts ------------------------------------------------------------------------
# Run one script the way a reviewer would by hand: plain psql, input echoed (-a),
# errors do not stop the script. Input comes on stdin so error lines carry no
# file name; the working directory is tests/isolation.
run_script() { # run-as file
  local as=$1 file=$2
  local psql_cmd=(psql -X -a -v ON_ERROR_STOP=0 -d app)
  case "$as" in
    tenant_a|tenant_b|tenant_a_service)
      local token org user
      case "$as" in
        tenant_a) token=${TOKEN_A:-}; org=$ORG_A; user=$USER_A ;;
        tenant_b) token=${TOKEN_B:-}; org=$ORG_B; user=$USER_B ;;
        tenant_a_service) token=${TOKEN_A_SERVICE:-}; org=$ORG_A; user= ;;
      esac
      if [ "$DIRECT" = 0 ]; then
        PGPASSWORD=$token "${psql_cmd[@]}" -h 127.0.0.1 -p "$PROXY_PORT" -U app <"$file"
      else
        local proof
        proof=$("$PROXY_BIN" context-proof --context-key-file "$KEY1_FILE" --org "$org" --user "$user" --ttl 3600 --unix)
        PGOPTIONS="-c app.current_organization_id=$org -c app.current_user_id=$user -c app.context_proof=$proof" \
          "${psql_cmd[@]}" -h "$PG_DIR" -p "$PG_PORT" -U proxy_login <"$file"
      fi ;;
    login_role)
      PGPASSWORD=$LOGIN_PASSWORD "${psql_cmd[@]}" -h 127.0.0.1 -p "$PG_PORT" -U proxy_login <"$file" ;;
    superuser)
      "${psql_cmd[@]}" -h "$PG_DIR" -p "$PG_PORT" -U "$PG_SUPER" <"$file" ;;
    *)
      echo "unknown run-as '$as'"; return 1 ;;
  esac
}

mkdir -p "$HERE/expected" "$WORK/results"
cd "$HERE"
for file in *.sql; do
  name=${file%.sql}
  if [ "${#ONLY[@]}" -gt 0 ] && ! printf '%s\n' "${ONLY[@]}" | grep -qx "$name"; then continue; fi
  as=$(sed -n 's/^-- run-as: *\([a-z_]*\).*/\1/p' "$file" | head -1)
  if [ "$DIRECT" = 1 ] && grep -q '^-- requires: proxy' "$file"; then
    printf '%-40s skipped (needs the proxy)\n' "$name"; continue
  fi
  out="$WORK/results/$name.out"
  run_script "${as:-missing}" "$file" >"$out" 2>&1 || true
  if [ "$ACCEPT" = 1 ]; then cp "$out" "expected/$name.out"; fi
  if [ ! -f "expected/$name.out" ]; then
    echo "no expected/$name.out (run with --accept to create it)" >"$WORK/results/$name.diff"
    report "$name" FAILED "$WORK/results/$name.diff"
  elif diff -u "expected/$name.out" "$out" >"$WORK/results/$name.diff"; then
    report "$name" ok
  else
    report "$name" FAILED "$WORK/results/$name.diff"
  fi
done

if [ -n "$PROXY_PID" ] && ! kill -0 "$PROXY_PID" 2>/dev/null; then
  echo "pg-tenant-proxy died during the run:"; tail -20 "$WORK/proxy.log"
  FAILED=$((FAILED + 1))
fi
if [ -n "$PROXY2_PID" ] && ! kill -0 "$PROXY2_PID" 2>/dev/null; then
  echo "pg-tenant-proxy (key 2) died during the run:"; tail -20 "$WORK/proxy2.log"
  FAILED=$((FAILED + 1))
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
