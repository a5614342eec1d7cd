#!/usr/bin/env bash
# Soak, churn and PostgreSQL-restart test of pg-tenant-proxy, with figures.
# Loopback only; starts its own throwaway PostgreSQL 15 (tests/support/pg.sh)
# and a release-build proxy (tests/support/proxy.sh), throws both away at the end.
#
#   benches/reliability.sh            # full run: soak 10 min x 1,000 sessions,
#                                     # churn 100,000 cycles, 100 restarts (~25 min)
#   benches/reliability.sh --quick    # about a minute: 200 sessions x 20 s,
#                                     # 2,000 cycles, 5 restarts
#
# Phases (clients: Python 3 + asyncpg, benches/reliability.py):
#   soak      N sessions through one proxy, spread over --orgs organizations,
#             each looping over a mixed workload with ~1 s pauses: simple
#             queries (command-tag row counts), prepared extended-protocol
#             queries, explicit transactions (UPDATE ... RETURNING, commit),
#             now and then a refused SET of the pin (exactly 42501, pin
#             unchanged after) and a pg_sleep(5) cancelled through the proxy
#             (exactly 57014). Every row read is checked against the session's
#             organization. Proxy RSS/fds/threads at start, middle and end.
#   churn     N connect -> authenticate -> query (checked rows) -> disconnect
#             cycles, --concurrency at a time; RSS and fds before and after.
#   restarts  N times: open --restart-sessions sessions (half running
#             pg_sleep(60), half idle), `pg_ctl restart -m fast`, record what
#             each session sees, then a new session must work at once.
#   Probes at the start of the soak show that each check fires.
#
# Options (after --quick/--full, which only set defaults):
#   --soak-secs S         soak duration (full 600, quick 20)
#   --sessions N          soak sessions (full 1000, quick 200)
#   --orgs N              organizations (20)
#   --rows N              agent_instances rows per organization (25)
#   --churn N             churn cycles (full 100000, quick 2000)
#   --concurrency N       churn concurrency (16)
#   --restarts N          PostgreSQL restarts (full 100, quick 5)
#   --restart-sessions N  sessions open across each restart (20)
#   --phases "A B"        phases to run (default "soak churn restarts")
#   --rss-pct P           RSS growth allowed after warm-up, % (10)
#   --fd-slack N          fd growth allowed (5)
#   --no-build            use the existing target/release binary (or RB_PROXY_BIN=PATH:
#                         another build, e.g. target/debug for a smoke test)
#   --out FILE            also write the summary table (markdown) to FILE
#   --json FILE           also keep the raw results (JSON)
# Exits non-zero when a target is missed: any error or unexpected SQLSTATE,
# any cross-tenant row, a probe that does not fire, growth over the limits.
# Not part of tests/run-all.sh (it takes minutes and loads the machine).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

SOAK_SECS=600 SESSIONS=1000 ORGS=20 ROWS=25 CHURN=100000 CONCURRENCY=16
RESTARTS=100 RESTART_SESSIONS=20 PHASES="soak churn restarts" RSS_PCT=10 FD_SLACK=5
BUILD=1 OUT="" JSON_OUT="" MODE=full
if [ "${1:-}" = --quick ]; then
  MODE=quick SOAK_SECS=20 SESSIONS=200 CHURN=2000 RESTARTS=5; shift
elif [ "${1:-}" = --full ]; then
  shift
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --soak-secs) SOAK_SECS=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --orgs) ORGS=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --churn) CHURN=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --restarts) RESTARTS=$2; shift 2 ;;
    --restart-sessions) RESTART_SESSIONS=$2; shift 2 ;;
    --phases) PHASES=$2; shift 2 ;;
    --rss-pct) RSS_PCT=$2; shift 2 ;;
    --fd-slack) FD_SLACK=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    --json) JSON_OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,45p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$ORGS" -ge 2 ] || { echo "--orgs must be at least 2" >&2; exit 2; }
[ "$ROWS" -ge 5 ] || { echo "--rows must be at least 5" >&2; exit 2; }
[ "$SOAK_SECS" -ge 5 ] && [ "$SOAK_SECS" -le 7200 ] || { echo "--soak-secs must be 5..7200" >&2; exit 2; }

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PY=/usr/bin/python3
$PY -c 'import asyncpg' 2>/dev/null || { echo "needs asyncpg for $PY (apt-get install python3-asyncpg)" >&2; exit 1; }

# 1,000 client sockets plus 1,000 upstream sockets in the proxy; as many in the client.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$BUILD" = 1 ]; then
  log "building the proxy (release)"
  cargo build --release --quiet --bin pg-tenant-proxy
fi
PROXY_BIN=${RB_PROXY_BIN:-$REPO/target/release/pg-tenant-proxy}
[ -x "$PROXY_BIN" ] || { echo "missing $PROXY_BIN (build it or drop --no-build)" >&2; exit 1; }
export PROXY_BIN

WORK=$(mktemp -d /tmp/pgtp-reliability.XXXXXX)
chmod 755 "$WORK"
export LC_ALL=C LANG=C PGTZ=UTC
unset PGOPTIONS PGPASSWORD PGSERVICE PGSERVICEFILE || true
# shellcheck source=../tests/support/pg.sh
source "$REPO/tests/support/pg.sh"
# shellcheck source=../tests/support/proxy.sh
source "$REPO/tests/support/proxy.sh"
cleanup() {
  local rc=$?
  set +e
  proxy_stop
  pg_stop
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- PostgreSQL
MAXCONN=$(( (SESSIONS > RESTART_SESSIONS ? SESSIONS : RESTART_SESSIONS) + 200 ))
log "starting PostgreSQL (max_connections $MAXCONN)"
pg_start "max_connections=$MAXCONN" "shared_buffers=128MB"
export PGHOST="$PG_DIR" PGPORT="$PG_PORT" PGUSER="$PG_SUPER"
app_create_db
app_apply_sql "$WORK/sql.log"
app_login_role
app_seed
log "loading $ORGS organizations x $ROWS agent_instances"
pg_psql -d app -v orgs="$ORGS" -v rows="$ROWS" >/dev/null <<'SQL'
-- Deterministic ids as in tests/isolation/perf/load.sql: md5(<kind><org>-<n>)::uuid.
SET session_replication_role = replica;
BEGIN;
INSERT INTO organizations (id, name)
SELECT md5('org' || o)::uuid, 'Reliability org ' || o FROM generate_series(1, :orgs) o;
INSERT INTO users (organization_id, id, email, display_name)
SELECT md5('org' || o)::uuid, md5('user' || o || '-' || n)::uuid, 'user' || n || '@org' || o || '.test', 'User ' || n
  FROM generate_series(1, :orgs) o, generate_series(1, 10) n;
INSERT INTO agent_instances (organization_id, id, agent_id, agent_type, status, user_id)
SELECT md5('org' || o)::uuid, md5('agent' || o || '-' || n)::uuid, 'agent-' || n,
       (ARRAY['tutor', 'grader', 'builder', 'assistant'])[n % 4 + 1],
       (ARRAY['running', 'stopped', 'pending', 'failed', 'archived'])[n % 5 + 1],
       md5('user' || o || '-' || (n % 10 + 1))::uuid
  FROM generate_series(1, :orgs) o, generate_series(1, :rows) n;
COMMIT;
VACUUM ANALYZE;
SQL

# ---------------------------------------------------------------- proxy
# No per-organization cap: the soak puts SESSIONS/ORGS sessions on each.
log "starting the proxy ($PROXY_BIN, --max-sessions-per-org 0)"
PGTP_MAX_SESSIONS_PER_ORG=0 proxy_start "$WORK"
TTL=$((SOAK_SECS + 4 * 3600))
: >"$WORK/tokens"
for o in $(seq 1 "$ORGS"); do
  org=$($PY -c 'import hashlib,sys;h=hashlib.md5(sys.argv[1].encode()).hexdigest();print(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")' "org$o")
  user=$($PY -c 'import hashlib,sys;h=hashlib.md5(sys.argv[1].encode()).hexdigest();print(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")' "user$o-1")
  echo "$org $(proxy_token "$org" "$user" "$TTL")" >>"$WORK/tokens"
done
chmod 600 "$WORK/tokens"

export RB_PORT=$PROXY_PORT RB_PROXY_PID=$PROXY_PID RB_TOKENS=$WORK/tokens RB_ROWS=$ROWS
export RB_RESULTS=$WORK/results.json
if [ "$(id -u)" = 0 ]; then
  RB_RESTART_CMD="runuser -u postgres -- $PG_BIN/pg_ctl -D $PG_DIR/data -l $PG_DIR/server.log -m fast -w -t 60 restart"
else
  RB_RESTART_CMD="$PG_BIN/pg_ctl -D $PG_DIR/data -l $PG_DIR/server.log -m fast -w -t 60 restart"
fi
export RB_RESTART_CMD

log "running ($MODE): phases '$PHASES'; soak ${SESSIONS} sessions x ${SOAK_SECS}s over $ORGS orgs; churn $CHURN x $CONCURRENCY; restarts $RESTARTS x $RESTART_SESSIONS"
T0=$SECONDS
rc=0
$PY "$REPO/benches/reliability.py" --phases "$PHASES" --sessions "$SESSIONS" --soak-secs "$SOAK_SECS" \
  --churn "$CHURN" --concurrency "$CONCURRENCY" --restarts "$RESTARTS" \
  --restart-sessions "$RESTART_SESSIONS" --rss-pct "$RSS_PCT" --fd-slack "$FD_SLACK" >"$WORK/summary.md" || rc=$?

kill -0 "$PROXY_PID" 2>/dev/null || { echo "the proxy died during the run:" >&2; tail -20 "$WORK/proxy.log" >&2; rc=1; }
{
  echo "## pg-tenant-proxy reliability run ($MODE)"
  echo
  echo "- machine: $(nproc) cores, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r)"
  echo "- $("$PG_BIN/postgres" --version), pg-tenant-proxy $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null) ($(basename "$(dirname "$PROXY_BIN")") build), asyncpg $($PY -c 'import asyncpg; print(asyncpg.__version__)'), $($PY --version)"
  echo "- phases: $PHASES; soak $SESSIONS sessions x ${SOAK_SECS}s over $ORGS organizations ($ROWS rows each); churn $CHURN cycles x $CONCURRENCY; restarts $RESTARTS x $RESTART_SESSIONS sessions; wall time $((SECONDS - T0)) s"
  echo "- proxy log: $(wc -l <"$WORK/proxy.log") lines; ERROR/WARN lines: $(grep -c -E ' (ERROR|WARN) ' "$WORK/proxy.log" || true)"
  echo
  cat "$WORK/summary.md"
} >"$WORK/report.md"
cat "$WORK/report.md"
[ -n "$OUT" ] && cp "$WORK/report.md" "$OUT"
[ -n "$JSON_OUT" ] && cp "$WORK/results.json" "$JSON_OUT"
if [ "$rc" != 0 ]; then
  log "targets missed (exit $rc); last proxy log lines:"
  tail -5 "$WORK/proxy.log" >&2
fi
exit "$rc"
