# The test stack behind pg-tenant-proxy: database `app` with sql/ and the demo
# seed, the login role, and the proxy itself. Shared by tests/isolation/run.sh
# and tests/drivers/run.sh.
#
# Source tests/support/pg.sh first, call pg_start, export PGHOST/PGPORT/PGUSER
# for the superuser (the Unix socket), then:
#   app_create_db                  CREATE DATABASE app
#   app_apply_sql LOGFILE          apply sql/*.sql in order (output appended to LOGFILE)
#   app_login_role                 create proxy_login IN ROLE tenant_app; exports LOGIN_PASSWORD
#   app_seed                       sql/demo/seed.sql (two organizations, ids below)
#   app_context_key WORKDIR [ID]   make a context key file and install it (tenant.add_context_key);
#                                  exports CONTEXT_KEY_FILE (the last one made)
#   proxy_start WORKDIR [FLAGS...] build the proxy when stale, start it on a free port with
#                                  FLAGS (default: --context-key-file $CONTEXT_KEY_FILE);
#                                  exports PROXY_BIN PROXY_PORT PROXY_PID SECRET_FILE
#                                  (PROXY_LOG names its log in WORKDIR, default proxy.log)
#   proxy_token ORG SUB [TTL]      print a token signed with SECRET_FILE ('' SUB: no user)
#   proxy_stop                     stop the proxy started by proxy_start
# The proxy's output goes to WORKDIR/proxy.log.

# Fixed identities of sql/demo/seed.sql.
ORG_A=aaaaaaaa-0000-4000-8000-000000000001
USER_A=aaaaaaaa-0001-4000-8000-000000000001
ORG_B=bbbbbbbb-0000-4000-8000-000000000001
USER_B=bbbbbbbb-0001-4000-8000-000000000001
export ORG_A USER_A ORG_B USER_B

_STACK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

app_create_db() {
  pg_psql -d postgres -c "CREATE DATABASE app" >/dev/null
}

app_apply_sql() { # logfile
  local f
  for f in "$_STACK_ROOT"/sql/*.sql; do
    psql -X -q -v ON_ERROR_STOP=1 -d app -f "$f" >>"$1" 2>&1 || {
      echo "applying $f failed:" >&2; tail -20 "$1" >&2; return 1; }
  done
}

app_login_role() {
  LOGIN_PASSWORD="login-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  export LOGIN_PASSWORD
  pg_psql -d app -v pw="$LOGIN_PASSWORD" >/dev/null <<'SQL'
CREATE ROLE proxy_login LOGIN PASSWORD :'pw' IN ROLE tenant_app;
SQL
}

app_seed() {
  pg_psql -d app -f "$_STACK_ROOT/sql/demo/seed.sql" >/dev/null
}

app_context_key() { # workdir [id]
  local id=${2:-1}
  CONTEXT_KEY_FILE="$1/context-key-$id"
  od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$CONTEXT_KEY_FILE"; echo >>"$CONTEXT_KEY_FILE"
  pg_psql -d app -v id="$id" -v key="$(cat "$CONTEXT_KEY_FILE")" \
    <<<"SELECT tenant.add_context_key(:'id', :'key');" >/dev/null
  export CONTEXT_KEY_FILE
}

proxy_bin() { # sets PROXY_BIN, building it when missing or older than the sources
  if [ -z "${PROXY_BIN:-}" ]; then
    PROXY_BIN=$_STACK_ROOT/target/debug/pg-tenant-proxy
    # Build when missing or older than the sources, so the tests test this tree.
    if [ ! -x "$PROXY_BIN" ] || [ -n "$(cd "$_STACK_ROOT" && find src Cargo.toml Cargo.lock -newer "$PROXY_BIN" -print -quit)" ]; then
      echo "building pg-tenant-proxy ..."
      (cd "$_STACK_ROOT" && cargo build --quiet --bin pg-tenant-proxy)
    fi
  fi
  export PROXY_BIN
}

PROXY_PID=
proxy_start() { # workdir [flags...]
  local work=$1; shift
  local log="$work/${PROXY_LOG:-proxy.log}"
  if [ "$#" = 0 ]; then set -- --context-key-file "$CONTEXT_KEY_FILE"; fi
  proxy_bin
  SECRET_FILE="$work/jwt.secret"
  [ -s "$SECRET_FILE" ] || od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$SECRET_FILE"
  PROXY_PORT=$(pg_free_port)
  "$PROXY_BIN" serve --listen "127.0.0.1:$PROXY_PORT" \
    --upstream "postgresql://proxy_login:$LOGIN_PASSWORD@127.0.0.1:$PG_PORT/app" \
    --jwt-secret-file "$SECRET_FILE" "$@" >"$log" 2>&1 &
  PROXY_PID=$!
  export PROXY_BIN PROXY_PORT PROXY_PID SECRET_FILE
  local _
  for _ in $(seq 1 100); do
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
      echo "pg-tenant-proxy exited during startup:" >&2; cat "$log" >&2; return 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "pg-tenant-proxy did not listen on 127.0.0.1:$PROXY_PORT within 10 s" >&2
  return 1
}

proxy_token() { # org sub [ttl]   (an empty sub: a token without a user)
  if [ -n "$2" ]; then
    "$PROXY_BIN" token --jwt-secret-file "$SECRET_FILE" --org "$1" --sub "$2" --ttl "${3:-3600}"
  else
    "$PROXY_BIN" token --jwt-secret-file "$SECRET_FILE" --org "$1" --ttl "${3:-3600}"
  fi
}

proxy_stop() {
  if [ -n "${PROXY_PID:-}" ]; then
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
  fi
}
