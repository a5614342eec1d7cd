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

# Fixed identities, the same as in sql/demo/seed.sql.
ORG_A=aaaaaaaa-0000-4000-8000-000000000001
USER_A=aaaaaaaa-0001-4000-8000-000000000001
ORG_B=bbbbbbbb-0000-4000-8000-000000000001
USER_B=bbbbbbbb-0001-4000-8000-000000000001

export LC_ALL=C LANG=C PGTZ=UTC PGCLIENTENCODING=UTF8
unset PGOPTIONS PGPASSWORD PGSERVICE PGSERVICEFILE PGSSLMODE || true

# shellcheck source=../support/pg.sh
source "$ROOT/tests/support/pg.sh"

WORK=$(mktemp -d /tmp/pgtp-isolation.XXXXXX)
PROXY_PID=
PROXY2_PID=
cleanup() {
  local rc=$?
  if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; fi
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
pg_psql -d postgres -c "CREATE DATABASE app" >/dev/null

# --- apply sql/ twice; the second pass must change nothing -----------------
apply_sql() {
  local f
  for f in "$ROOT"/sql/*.sql; do
    psql -X -q -v ON_ERROR_STOP=1 -d app -f "$f" >>"$WORK/apply.log" 2>&1 || {
      echo "applying $f failed:" >&2; tail -20 "$WORK/apply.log" >&2; return 1; }
  done
}
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
LOGIN_PASSWORD="login-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
pg_psql -d app -v pw="$LOGIN_PASSWORD" <<'SQL' >/dev/null
CREATE ROLE proxy_login LOGIN PASSWORD :'pw' IN ROLE tenant_app;
-- A NOINHERIT login role works too, with the documented role-level setting.
CREATE ROLE proxy_login_noinherit LOGIN NOINHERIT PASSWORD :'pw' IN ROLE tenant_app;
ALTER ROLE proxy_login_noinherit SET role = 'tenant_app';
SQL
# Context keys: 1 is installed now, as the DBA guide says; 2 is for the rotation script.
KEY1_FILE="$WORK/context-key-1" KEY2_FILE="$WORK/context-key-2"
od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$KEY1_FILE"; echo >>"$KEY1_FILE"
od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$KEY2_FILE"; echo >>"$KEY2_FILE"
pg_psql -d app -v key="$(cat "$KEY1_FILE")" <<<"SELECT tenant.add_context_key('1', :'key');" >/dev/null
pg_psql -d app -f "$ROOT/sql/demo/seed.sql" >/dev/null
export ISO_PG_PORT=$PG_PORT ISO_LOGIN_PASSWORD=$LOGIN_PASSWORD ISO_KEY1_FILE=$KEY1_FILE ISO_KEY2_FILE=$KEY2_FILE

# --- proxy ------------------------------------------------------------------------
if [ -z "${PROXY_BIN:-}" ]; then
  PROXY_BIN=$ROOT/target/debug/pg-tenant-proxy
  # Build when missing or older than the sources, so the suite tests this tree.
  if [ ! -x "$PROXY_BIN" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$PROXY_BIN" -print -quit)" ]; then
    echo "building pg-tenant-proxy ..."
    cargo build --quiet --bin pg-tenant-proxy
  fi
fi
export ISO_PROXY_BIN=$PROXY_BIN
# start_proxy LOG KEY_ID KEY_FILE: starts a proxy on a free port; sets STARTED_PID/STARTED_PORT.
start_proxy() {
  STARTED_PORT=$(pg_free_port)
  "$PROXY_BIN" serve --listen "127.0.0.1:$STARTED_PORT" \
    --upstream "postgresql://proxy_login:$LOGIN_PASSWORD@127.0.0.1:$PG_PORT/app" \
    --jwt-secret-file "$SECRET_FILE" --context-key-id "$2" --context-key-file "$3" >"$1" 2>&1 &
  STARTED_PID=$!
  for _ in $(seq 1 100); do
    if ! kill -0 "$STARTED_PID" 2>/dev/null; then
      echo "pg-tenant-proxy exited during startup:" >&2; cat "$1" >&2; exit 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$STARTED_PORT") 2>/dev/null && break
    sleep 0.1
  done
}
if [ "$DIRECT" = 0 ]; then
  SECRET_FILE="$WORK/jwt.secret"
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$SECRET_FILE"
  start_proxy "$WORK/proxy.log" 1 "$KEY1_FILE"; PROXY_PID=$STARTED_PID PROXY_PORT=$STARTED_PORT
  start_proxy "$WORK/proxy2.log" 2 "$KEY2_FILE"; PROXY2_PID=$STARTED_PID PROXY2_PORT=$STARTED_PORT
  TOKEN_A=$("$PROXY_BIN" token --jwt-secret-file "$SECRET_FILE" --org "$ORG_A" --sub "$USER_A" --ttl 3600)
  TOKEN_B=$("$PROXY_BIN" token --jwt-secret-file "$SECRET_FILE" --org "$ORG_B" --sub "$USER_B" --ttl 3600)
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
    tenant_a|tenant_b)
      local token org user
      if [ "$as" = tenant_a ]; then token=${TOKEN_A:-}; org=$ORG_A; user=$USER_A
      else token=${TOKEN_B:-}; org=$ORG_B; user=$USER_B; fi
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
