#!/usr/bin/env bash
# docker-compose.yml: run by the postgres:15 image's entrypoint, once, when it
# initialises an empty data directory (as the postgres OS user, over the Unix
# socket of the temporary init server, as the superuser POSTGRES_USER).
#
#  1. applies sql/*.sql in file-name order (00_roles ... 50_audit), as a DBA would;
#  2. creates the proxy's login role, member of tenant_app only, with the
#     password the `secrets` service generated (read by psql itself, so it
#     appears in no command line);
#  3. installs the context key when sql/ has tenant.add_context_key();
#  4. loads the two demo tenants from sql/demo/seed.sql;
#  5. runs the posture check and fails the initialisation if it finds anything.
set -euo pipefail

SQL_DIR=${PGTP_SQL_DIR:-/pgtp/sql}
PASSWORD_FILE=${PGTP_LOGIN_PASSWORD_FILE:-/run/pgtp/upstream-password}
CONTEXT_KEY_FILE=${PGTP_CONTEXT_KEY_FILE:-/run/pgtp/context-key}

run_psql() {
  psql -X -q -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" "$@"
}

shopt -s nullglob
files=("$SQL_DIR"/*.sql)
if [ "${#files[@]}" -eq 0 ]; then
  echo "pg-tenant-proxy init: no SQL files in $SQL_DIR (is ./sql mounted?)" >&2
  exit 1
fi
for f in "${files[@]}"; do
  echo "pg-tenant-proxy init: applying $(basename "$f")"
  run_psql -f "$f" >/dev/null
done

echo "pg-tenant-proxy init: creating role proxy_login (member of tenant_app)"
run_psql -v pwfile="$PASSWORD_FILE" <<'SQL'
\set pw `cat :'pwfile'`
CREATE ROLE proxy_login LOGIN PASSWORD :'pw' IN ROLE tenant_app;
SQL

# Verified tenant context (sql/05_context.sql, where present): install the
# key the proxy signs with, as key id 1 (the proxy's default --context-key-id).
run_psql -v ctxfile="$CONTEXT_KEY_FILE" <<'SQL'
SELECT to_regprocedure('tenant.add_context_key(text,text)') IS NOT NULL AS has_context \gset
\if :has_context
\echo pg-tenant-proxy init: installing the context key as id 1
\set ctxkey `cat :'ctxfile'`
SELECT tenant.add_context_key('1', :'ctxkey') \g /dev/null
\endif
SQL

echo "pg-tenant-proxy init: loading sql/demo/seed.sql (tenants A and B)"
run_psql -f "$SQL_DIR/demo/seed.sql"

findings=$(run_psql -At -c "SELECT count(*) FROM tenant.audit()")
if [ "$findings" != 0 ]; then
  echo "pg-tenant-proxy init: tenant.audit() reports $findings finding(s):" >&2
  run_psql -c "SELECT * FROM tenant.audit()" >&2
  exit 1
fi
echo "pg-tenant-proxy init: tenant.audit() reports no findings"
