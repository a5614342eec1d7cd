#!/usr/bin/env bash
# The cost of context verification (sql/05_context.sql), measured side by side
# in one interleaved run: pgbench select-only (simple and prepared protocol, 8
# and 32 clients) through pg-tenant-proxy into three databases of one cluster,
# each with sql/ applied and pgbench_accounts put under tenant isolation (so
# every SELECT evaluates the policy and its helper):
#
#   on    verification on: the proxy signs, the helpers verify the proof
#   off   verification off: tenant.set_context_verification(false) and a
#         proxy with --context-verification off (the helpers read the
#         settings, through the same SECURITY DEFINER function)
#   pre   the helpers as they were before sql/05_context.sql (sql/ from
#         git revision PRE_REV), with a proxy that sends no proof
#
# Every round runs each (protocol, clients) cell once per arm, in an order
# that rotates from round to round, so machine drift hits the arms alike.
# Prints the median TPS per cell and arm over the rounds, and on/off, on/pre,
# and the median server CPU per transaction: the CPU time PostgreSQL's
# backends used during the run (read from the postmaster's reaped-children
# times in /proc, after the run's backends have exited) divided by the
# transactions. On a shared machine TPS moves with the neighbours' load; CPU
# per transaction mostly does not, so it shows the verification's own cost.
#
#   benches/context-verification.sh [--rounds N] [--duration S] [--clients "8 32"]
#                                   [--pre-rev REV] [--no-build] [--out FILE]
#
# Requires PostgreSQL 15 server binaries, pgbench, psql, git. Everything it
# starts is thrown away at the end. As root, PostgreSQL runs as `postgres`.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
ROUNDS=3 DURATION=10 CLIENTS="8 32" PRE_REV=215142c BUILD=1 OUT="" SCALE=10
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --pre-rev) PRE_REV=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
if [ "$BUILD" = 1 ]; then
  log "building the proxy (release)"
  cargo build --release --quiet --bin pg-tenant-proxy
fi
BIN=$REPO/target/release/pg-tenant-proxy
[ -x "$BIN" ] || { echo "missing $BIN" >&2; exit 1; }

WORK=$(mktemp -d /tmp/pgtp-ctxbench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
# shellcheck source=../tests/support/pg.sh
source "$REPO/tests/support/pg.sh"
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  pg_stop
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting PostgreSQL"
pg_start "shared_buffers=256MB" "max_connections=200"
LOGIN_PW="bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
ORG=$(python3 -c 'import uuid; print(uuid.uuid4())')
SUB=$(python3 -c 'import uuid; print(uuid.uuid4())')
KEY_FILE=$WORK/context-key SECRET_FILE=$WORK/jwt-secret
od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$KEY_FILE"
od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$SECRET_FILE"
mkdir -p "$WORK/pre-sql"
for f in $(git ls-tree --name-only "$PRE_REV" sql/ | grep '\.sql$'); do
  git show "$PRE_REV:$f" >"$WORK/pre-sql/$(basename "$f")"
done
pg_psql -d postgres -c "CREATE ROLE proxy_login LOGIN PASSWORD '$LOGIN_PW'" >/dev/null
for arm in on off pre; do
  db=bench_$arm
  log "database $db: sql/, pgbench scale $SCALE, pgbench_accounts under isolation"
  pg_psql -d postgres -c "CREATE DATABASE $db" >/dev/null
  if [ "$arm" = pre ]; then dir=$WORK/pre-sql; else dir=$REPO/sql; fi
  for f in "$dir"/*.sql; do pg_psql -d "$db" -f "$f" >/dev/null; done
  pg_psql -d "$db" -c "GRANT tenant_app TO proxy_login" >/dev/null 2>&1 || true
  PGPASSWORD=$PG_SUPER_PASSWORD pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPER" "$db" >"$WORK/init-$arm.log" 2>&1 \
    || { cat "$WORK/init-$arm.log" >&2; exit 1; }
  case "$arm" in
    on) arm_sql="SELECT tenant.add_context_key('1', :'key');" ;;
    off) arm_sql="SELECT tenant.set_context_verification(false);" ;;
    *) arm_sql="" ;;
  esac
  pg_psql -d "$db" -v key="$(cat "$KEY_FILE")" >/dev/null <<SQL
ALTER TABLE pgbench_accounts ADD COLUMN organization_id uuid NOT NULL DEFAULT '$ORG';
SELECT tenant.enable_isolation('public.pgbench_accounts');
-- pgbench reads the scale from pgbench_branches (10 rows, not tenant data).
GRANT SELECT ON pgbench_branches TO tenant_app;
$arm_sql
VACUUM ANALYZE;
CHECKPOINT;
SQL
done

declare -A PORT=()
for arm in on off pre; do
  PORT[$arm]=$(pg_free_port)
  if [ "$arm" = on ]; then ctx=(--context-key-file "$KEY_FILE"); else ctx=(--context-verification off); fi
  setsid env PGTP_UPSTREAM_PASSWORD="$LOGIN_PW" "$BIN" serve --listen "127.0.0.1:${PORT[$arm]}" \
    --upstream "postgresql://proxy_login@127.0.0.1:$PG_PORT/bench_$arm?sslmode=disable" \
    --jwt-secret-file "$SECRET_FILE" "${ctx[@]}" 2>>"$WORK/proxy-$arm.log" &
  PIDS+=($!)
done
for arm in on off pre; do
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/${PORT[$arm]}") 2>/dev/null && break; sleep 0.1; done
done
TOKEN=$("$BIN" token --jwt-secret-file "$SECRET_FILE" --org "$ORG" --sub "$SUB" --ttl 7200)
export PGPASSWORD=$TOKEN PGSSLMODE=disable PGGSSENCMODE=disable

# Each arm must see the tenant's rows through its proxy (a failed verification
# would show 0 and make the comparison meaningless).
for arm in on off pre; do
  n=$(psql -X -At -h 127.0.0.1 -p "${PORT[$arm]}" -U app -d "bench_$arm" -c "SELECT count(*) FROM pgbench_accounts WHERE aid <= 1000")
  [ "$n" = 1000 ] || { echo "arm $arm sees $n of 1000 rows" >&2; exit 1; }
done
psql -X -h 127.0.0.1 -p "${PORT[on]}" -U app -d bench_on -c "SELECT tenant.context_status()" >&2
# The proxy refuses EXPLAIN (estimates come from every tenant's rows), so the
# plan is shown directly, as the login role: one initPlan per statement.
pg_psql -d bench_on -c "SET ROLE proxy_login" \
  -c "EXPLAIN (COSTS OFF) SELECT abalance FROM pgbench_accounts WHERE aid = 42" >&2

PM_PID=$(head -1 "$PG_DIR/data/postmaster.pid")
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
# utime + stime + cutime + cstime of the postmaster: its own CPU and that of
# every backend it has reaped, in clock ticks.
pg_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$PM_PID/stat"; }
# Waits until the postmaster has no backends of the benchmark left (the
# proxy closes its upstream sessions when pgbench disconnects).
wait_backends_gone() {
  for _ in $(seq 1 50); do
    [ "$(pg_psql -d postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE usename = 'proxy_login'")" = 0 ] && return 0
    sleep 0.1
  done
}
RES=$WORK/results.tsv
: >"$RES"
ARMS=(on off pre)
for round in $(seq 1 "$ROUNDS"); do
  for mode in simple prepared; do
    for c in $CLIENTS; do
      # Rotate the arm order each round.
      order=("${ARMS[@]:$(( (round - 1) % 3 ))}" "${ARMS[@]:0:$(( (round - 1) % 3 ))}")
      for arm in "${order[@]}"; do
        wait_backends_gone
        t0=$(pg_ticks)
        pgbench -n -S -M "$mode" -c "$c" -j 2 -T "$DURATION" -h 127.0.0.1 -p "${PORT[$arm]}" -U app "bench_$arm" \
          >"$WORK/pgbench.out" 2>&1 || true
        wait_backends_gone
        t1=$(pg_ticks)
        tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench.out")
        n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/pgbench.out")
        [ -n "$tps" ] && [ -n "$n" ] || { echo "pgbench failed for $arm:" >&2; cat "$WORK/pgbench.out" >&2; exit 1; }
        cpu=$(( (t1 - t0) * TICK_US / n ))
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$c" "$arm" "$tps" "$cpu" >>"$RES"
        log "round $round $mode c=$c $arm: $tps tps, server CPU $cpu us/tx"
      done
    done
  done
done

python3 - "$RES" "$ROUNDS" "$DURATION" "$(nproc)" <<'PY' | tee "${OUT:-/dev/null}"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
rounds, duration, cores = sys.argv[2], sys.argv[3], sys.argv[4]
cells, cpu = {}, {}
for r, mode, c, arm, tps, us in rows:
    cells.setdefault((mode, int(c)), {}).setdefault(arm, []).append(float(tps))
    cpu.setdefault((mode, int(c)), {}).setdefault(arm, []).append(float(us))
print(f"pgbench -S through pg-tenant-proxy, pgbench_accounts under RLS; median TPS of {rounds} interleaved rounds, "
      f"{duration} s each, {cores} cores shared with pgbench, PostgreSQL and the proxy\n")
print("| protocol | clients | on (verified) | off | pre (helpers before) | on/off | on/pre | on runs | off runs |")
print("|---|---|---|---|---|---|---|---|---|")
for (mode, c), arms in sorted(cells.items()):
    med = {a: statistics.median(v) for a, v in arms.items()}
    runs = lambda a: " ".join(f"{x:.0f}" for x in arms[a])
    print(f"| {mode} | {c} | {med['on']:.0f} | {med['off']:.0f} | {med['pre']:.0f} | "
          f"{med['on']/med['off']:.3f} | {med['on']/med['pre']:.3f} | {runs('on')} | {runs('off')} |")
print("\nServer CPU per transaction (µs, median over rounds; all PostgreSQL backends)\n")
print("| protocol | clients | on | off | pre | on - off | on - pre | on runs | off runs | pre runs |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (mode, c), arms in sorted(cpu.items()):
    med = {a: statistics.median(v) for a, v in arms.items()}
    runs = lambda a: " ".join(f"{x:.0f}" for x in arms[a])
    print(f"| {mode} | {c} | {med['on']:.0f} | {med['off']:.0f} | {med['pre']:.0f} | "
          f"{med['on']-med['off']:+.0f} | {med['on']-med['pre']:+.0f} | {runs('on')} | {runs('off')} | {runs('pre')} |")
PY
