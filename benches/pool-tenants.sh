# Many tenants through one transaction pool: sourced by
# benches/proxy-overhead.sh (--then benches/pool-tenants.sh) after its
# memory test, with its cluster, proxy binary, token secret and context key.
#
# A database `tenants` in the same cluster gets sql/ (roles, helpers, tables,
# policies, hardening), the login role tenants_login (in tenant_app), the
# run's context key (tenant.add_context_key) and TENANT_ORGS organizations
# with TENANT_ROWS agent_instances rows each (written as the superuser). A
# proxy of its own, in transaction pool mode with TENANT_POOL_SIZE backends,
# serves it; benches/pool-tenants.py then opens TENANT_SESSIONS sessions
# at once (session i with organization i mod TENANT_ORGS's token), has each
# read its tenant's rows, checks every row, and samples the login role's
# backends in pg_stat_activity. The result table goes to $EXTRA_REPORT.
#
# Settings (environment): TENANT_SESSIONS (10000), TENANT_ORGS (100),
# TENANT_ROWS (3), TENANT_POOL_SIZE (20), TENANT_QUERIES (2 per session; the
# second in an explicit transaction), TENANT_PYTHON (a python3 with asyncpg;
# default the first of python3, /usr/bin/python3 that has it).
# shellcheck shell=bash

TENANT_SESSIONS=${TENANT_SESSIONS:-10000}
TENANT_ORGS=${TENANT_ORGS:-100}
TENANT_ROWS=${TENANT_ROWS:-3}
TENANT_POOL_SIZE=${TENANT_POOL_SIZE:-20}
TENANT_QUERIES=${TENANT_QUERIES:-2}
if [ -z "${TENANT_PYTHON:-}" ]; then
  for py in python3 /usr/bin/python3; do
    if "$py" -c 'import asyncpg' 2>/dev/null; then TENANT_PYTHON=$py; break; fi
  done
fi
[ -n "${TENANT_PYTHON:-}" ] || { echo "pool-tenants: no python3 with asyncpg (apt-get install python3-asyncpg)" >&2; exit 1; }

log "tenants: $TENANT_SESSIONS sessions over $TENANT_ORGS organizations, transaction pool of $TENANT_POOL_SIZE"
pg_psql -d postgres -c "CREATE DATABASE tenants" >/dev/null
for f in "$REPO"/sql/*.sql; do
  pg_psql -d tenants -f "$f" >>"$WORK/tenants-sql.log" 2>&1 || { tail -20 "$WORK/tenants-sql.log" >&2; exit 1; }
done
TENANT_LOGIN_PW="tenants-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
pg_psql -d tenants -v pw="$TENANT_LOGIN_PW" -v key="$(cat "$CONTEXT_KEY_FILE")" \
  -v orgs="$TENANT_ORGS" -v rows="$TENANT_ROWS" >/dev/null <<'SQL'
CREATE ROLE tenants_login LOGIN PASSWORD :'pw' IN ROLE tenant_app;
SELECT tenant.add_context_key('1', :'key');
BEGIN;
INSERT INTO organizations (id, name)
SELECT md5('org' || o)::uuid, 'Organization ' || o FROM generate_series(1, :orgs) o;
INSERT INTO users (organization_id, id, email)
SELECT md5('org' || o)::uuid, md5('user' || o)::uuid, 'owner@org' || o || '.test' FROM generate_series(1, :orgs) o;
INSERT INTO agent_instances (organization_id, agent_id, agent_type, user_id)
SELECT md5('org' || o)::uuid, 'org' || o || '-agent-' || n, 'tutor', md5('user' || o)::uuid
  FROM generate_series(1, :orgs) o, generate_series(1, :rows) n;
COMMIT;
ANALYZE;
SQL

# One token per organization (its first user).
: >"$WORK/tenant-tokens.csv"
for o in $(seq 1 "$TENANT_ORGS"); do
  read -r org sub < <(python3 -c 'import hashlib,sys
def u(t):
    h = hashlib.md5(t.encode()).hexdigest(); return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
print(u("org" + sys.argv[1]), u("user" + sys.argv[1]))' "$o")
  echo "$org,$("$BIN" token --jwt-secret-file "$SECRET_FILE" --org "$org" --sub "$sub" --ttl 7200)" >>"$WORK/tenant-tokens.csv"
done

TENANT_PORT=$(free_port) TENANT_ADMIN=$(free_port)
# Room for every session: 10 % over the total and over one organization's share.
TENANT_PER_ORG=$(( (TENANT_SESSIONS + TENANT_ORGS - 1) / TENANT_ORGS * 11 / 10 + 1 ))
setsid env PGTP_UPSTREAM_PASSWORD="$TENANT_LOGIN_PW" "$BIN" serve --listen "127.0.0.1:$TENANT_PORT" \
  --upstream "postgresql://tenants_login@127.0.0.1:$PG_PORT/tenants?sslmode=disable" \
  --admin-listen "127.0.0.1:$TENANT_ADMIN" --jwt-secret-file "$SECRET_FILE" \
  --context-key-file "$CONTEXT_KEY_FILE" \
  --pool-mode transaction --pool-size "$TENANT_POOL_SIZE" \
  --max-connections $((TENANT_SESSIONS * 11 / 10)) --max-sessions-per-org "$TENANT_PER_ORG" \
  2>>"$WORK/proxy-tenants.log" &
TENANT_PID=$!
XPIDS+=("$TENANT_PID")
wait_for 10 python3 -c "import socket; socket.create_connection(('127.0.0.1', $TENANT_PORT), 1)" \
  || { cat "$WORK/proxy-tenants.log" >&2; exit 1; }

# Sanity: organization 1 sees its rows through the proxy; the login role
# logging in directly sees none (no verified context).
first_token=$(head -1 "$WORK/tenant-tokens.csv" | cut -d, -f2)
seen=$(PGPASSWORD=$first_token psql -X -w -h 127.0.0.1 -p "$TENANT_PORT" -U app -d tenants -Atc "SELECT count(*) FROM agent_instances")
direct=$(PGPASSWORD=$TENANT_LOGIN_PW psql -X -w -h 127.0.0.1 -p "$PG_PORT" -U tenants_login -d tenants -Atc "SELECT count(*) FROM agent_instances")
log "  check: organization 1 sees $seen rows through the proxy, the login role alone $direct"
[ "$seen" = "$TENANT_ROWS" ] && [ "$direct" = 0 ] || { echo "pool-tenants: the setup check failed" >&2; exit 1; }

log "  $TENANT_SESSIONS sessions (fd limit $(ulimit -n))"
t0=$SECONDS
timeout 900 "$TENANT_PYTHON" "$REPO/benches/pool-tenants.py" --port "$TENANT_PORT" --database tenants \
  --tokens "$WORK/tenant-tokens.csv" --sessions "$TENANT_SESSIONS" --rows-per-org "$TENANT_ROWS" \
  --queries "$TENANT_QUERIES" --pg-socket-dir "$PG_DIR" --pg-port "$PG_PORT" --login-role tenants_login \
  --metrics-url "http://127.0.0.1:$TENANT_ADMIN/metrics" >"$WORK/tenants.json" 2>"$WORK/tenants.err" \
  || { echo "pool-tenants.py failed:" >&2; tail -20 "$WORK/tenants.err" >&2; exit 1; }
log "  done in $((SECONDS - t0)) s: $(cat "$WORK/tenants.json")"
tenant_metric() {
  curl -fsS --max-time 5 "http://127.0.0.1:$TENANT_ADMIN/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 {s += $NF} END {printf "%d\n", s}'
}
TENANT_TXNS=$(tenant_metric pgtp_pool_transactions_total)
TENANT_TIMEOUTS=$(tenant_metric pgtp_pool_checkout_timeouts_total)
TENANT_REFUSED=$(tenant_metric pgtp_logins_refused_total)
TENANT_RSS=$(awk '/^VmHWM:/{print $2}' "/proc/$TENANT_PID/status")

python3 - "$WORK/tenants.json" "$TENANT_POOL_SIZE" "$TENANT_TXNS" "$TENANT_TIMEOUTS" "$TENANT_REFUSED" "$TENANT_RSS" \
  >>"$EXTRA_REPORT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
pool, txns, timeouts, refused, hwm = sys.argv[2:7]
print(f"Tenants through one transaction pool: {r['sessions']} client sessions open at once over "
      f"{r['organizations']} organizations, pool_size {pool}; each session ran {r['queries_per_session']} "
      "queries on its tenant's rows (the second in an explicit transaction).")
print()
print("| sessions | open at once | organizations | queries ok | errors | cross-tenant rows | queries with a wrong row count | peak backends (pg_stat_activity) | peak pgtp_pool_backends | connect s | queries s | close s | total s |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
print(f"| {r['sessions']} | {r['open_at_once']} | {r['organizations']} | {r['queries_ok']} | {r['errors']} | "
      f"{r['cross_tenant_rows']} | {r['wrong_row_count']} | {r['peak_backends_activity']} | {r['peak_backends_gauge']} | "
      f"{r['connect_s']} | {r['queries_s']} | {r['close_s']} | {r['total_s']} |")
print()
print(f"Backend checkouts (pgtp_pool_transactions_total, logins included): {txns}; checkout timeouts: {timeouts}; "
      f"logins refused: {refused}; proxy peak RSS (VmHWM): {hwm} KiB; pg_stat_activity sampled {r['samples']} times.")
if r["error_kinds"]:
    print()
    for k, v in sorted(r["error_kinds"].items(), key=lambda kv: -kv[1]):
        print(f"- {v} x {k}")
PY
kill "$TENANT_PID" 2>/dev/null || true
wait "$TENANT_PID" 2>/dev/null || true
