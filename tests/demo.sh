#!/usr/bin/env bash
# Local demo: a throwaway PostgreSQL 15 with sql/ applied and demo data for two
# tenants, plus pg-tenant-proxy in front of it. Prints ready-to-paste psql
# lines with a fresh token per tenant, then runs until Ctrl-C (everything it
# started is stopped and deleted on exit).
#
#   tests/demo.sh              proxy on 127.0.0.1:6432
#   PORT=7432 tests/demo.sh    another port
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PORT=${PORT:-6432}
source tests/support/pg.sh

echo "== building pg-tenant-proxy (release)"
cargo build --release --quiet
BIN=$ROOT/target/release/pg-tenant-proxy

WORK=$(mktemp -d /tmp/pgtp-demo.XXXXXX)
PROXY_PID=
cleanup() {
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null
  pg_stop
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "== starting a throwaway PostgreSQL"
pg_start
pg_psql -d postgres -c "CREATE DATABASE app" >/dev/null
for f in sql/*.sql; do pg_psql -d app -f "$f" >/dev/null; done
LOGIN_PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
pg_psql -d app -v pw="$LOGIN_PASSWORD" >/dev/null <<'SQL'
CREATE ROLE proxy_login LOGIN PASSWORD :'pw' IN ROLE tenant_app;
SQL
pg_psql -d app -f sql/demo/seed.sql >/dev/null
printf '%s' "$LOGIN_PASSWORD" > "$WORK/upstream-password"
head -c 48 /dev/urandom | base64 | tr -d '\n' > "$WORK/jwt-secret"
# The context key: the proxy signs each session's tenant with it, and the
# database verifies the signature (sql/05_context.sql).
head -c 32 /dev/urandom | base64 | tr -d '\n' > "$WORK/context-key"
chmod 600 "$WORK/upstream-password" "$WORK/jwt-secret" "$WORK/context-key"
pg_psql -d app -v key="$(cat "$WORK/context-key")" >/dev/null <<<"SELECT tenant.add_context_key('1', :'key');"

echo "== starting pg-tenant-proxy on 127.0.0.1:$PORT"
"$BIN" serve --listen "127.0.0.1:$PORT" \
  --upstream "postgresql://proxy_login@127.0.0.1:$PG_PORT/app?sslmode=disable" \
  --upstream-password-file "$WORK/upstream-password" \
  --jwt-secret-file "$WORK/jwt-secret" \
  --context-key-file "$WORK/context-key" --context-key-id 1 2>"$WORK/proxy.log" &
PROXY_PID=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

ORG_A=aaaaaaaa-0000-4000-8000-000000000001 USER_A=aaaaaaaa-0001-4000-8000-000000000001
ORG_B=bbbbbbbb-0000-4000-8000-000000000001 USER_B=bbbbbbbb-0001-4000-8000-000000000001
TOKEN_A=$("$BIN" token --jwt-secret-file "$WORK/jwt-secret" --org $ORG_A --sub $USER_A --ttl 3600)
TOKEN_B=$("$BIN" token --jwt-secret-file "$WORK/jwt-secret" --org $ORG_B --sub $USER_B --ttl 3600)

cat <<TXT

pg-tenant-proxy demo is running (Ctrl-C stops and deletes everything).

Tenant A (Acme Academy):
  PGPASSWORD='$TOKEN_A' psql -h 127.0.0.1 -p $PORT -U app -d app

Tenant B (Bravo Learning):
  PGPASSWORD='$TOKEN_B' psql -h 127.0.0.1 -p $PORT -U app -d app

Try:  SELECT agent_id, status FROM agent_instances;      -- only your tenant's rows
      INSERT INTO agent_instances (agent_id, agent_type, status) VALUES ('demo', 'tutor', 'new') RETURNING organization_id;
      SET app.current_organization_id = '$ORG_B';        -- refused: 42501
      SELECT tenant.context_status();                      -- 'verified': PostgreSQL checked the proxy's proof
      SELECT * FROM tenant.audit();                        -- as the superuser: psql -h $PG_DIR -p $PG_PORT -U postgres -d app

A new token:  $BIN token --jwt-secret-file $WORK/jwt-secret --org <uuid> --sub <uuid>
Proxy log:    $WORK/proxy.log
TXT
wait "$PROXY_PID"
