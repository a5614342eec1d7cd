#!/bin/sh
# docker-compose.yml's one-shot client: mints a token for each demo tenant
# with `pg-tenant-proxy token`, connects through the proxy with psql as each
# one, and prints what each tenant sees. Exits non-zero if tenant A can see
# any of tenant B's rows or the other way round, or if a session can move
# itself to the other tenant.
#
# Environment: PGTP_PROXY_HOST (proxy), PGTP_PROXY_PORT (6432),
# PGTP_JWT_SECRET_FILE (/run/pgtp/jwt-secret).
set -eu

HOST=${PGTP_PROXY_HOST:-proxy}
PORT=${PGTP_PROXY_PORT:-6432}
SECRET=${PGTP_JWT_SECRET_FILE:-/run/pgtp/jwt-secret}
# Fixed ids from sql/demo/seed.sql.
ORG_A=aaaaaaaa-0000-4000-8000-000000000001 USER_A=aaaaaaaa-0001-4000-8000-000000000001
ORG_B=bbbbbbbb-0000-4000-8000-000000000001 USER_B=bbbbbbbb-0001-4000-8000-000000000001

token() { pg-tenant-proxy token --jwt-secret-file "$SECRET" --org "$1" --sub "$2" --ttl 300; }

# $1 token, rest: psql arguments. The token travels in PGPASSWORD, never argv.
as_tenant() {
  t=$1
  shift
  PGPASSWORD=$t psql -X -v ON_ERROR_STOP=1 "host=$HOST port=$PORT user=app dbname=app sslmode=disable application_name=pgtp-demo" "$@"
}

TOKEN_A=$(token "$ORG_A" "$USER_A")
TOKEN_B=$(token "$ORG_B" "$USER_B")

# The proxy may still be starting when this container starts.
i=0
until as_tenant "$TOKEN_A" -Atc "SELECT 1" >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -ge 30 ]; then
    echo "pg-tenant-proxy demo: the proxy at $HOST:$PORT did not accept tenant A within 30 s" >&2
    as_tenant "$TOKEN_A" -Atc "SELECT 1"
    exit 1
  fi
  sleep 1
done

show() {
  echo
  echo "=== tenant $1: what the application sees through the proxy"
  as_tenant "$2" <<'SQL'
SELECT current_setting('app.current_organization_id') AS pinned_organization,
       current_setting('app.current_user_id') AS pinned_user;
SELECT id, name, plan FROM organizations ORDER BY id;
SELECT agent_id, agent_type, status, organization_id FROM agent_instances ORDER BY agent_id;
SELECT number, status, organization_id FROM invoices ORDER BY number;
SQL
}
show A "$TOKEN_A"
show B "$TOKEN_B"

echo
echo "=== checks"
status=0
check() {
  # $1 label, $2 token, $3 query that must print $4
  got=$(as_tenant "$2" -v VERBOSITY=sqlstate -Atc "$3" 2>&1) || true
  if [ "$got" = "$4" ]; then
    echo "ok:   $1"
  else
    echo "FAIL: $1 (expected '$4', got '$got')"
    status=1
  fi
}
check "tenant A sees no row of tenant B" "$TOKEN_A" \
  "SELECT count(*) FROM agent_instances WHERE organization_id <> '$ORG_A'" 0
check "tenant B sees no row of tenant A" "$TOKEN_B" \
  "SELECT count(*) FROM agent_instances WHERE organization_id <> '$ORG_B'" 0
check "tenant A sees its own two agents" "$TOKEN_A" "SELECT count(*) FROM agent_instances" 2
check "tenant A cannot switch to tenant B (42501)" "$TOKEN_A" \
  "SET app.current_organization_id = '$ORG_B'" "ERROR:  42501"
exit "$status"
