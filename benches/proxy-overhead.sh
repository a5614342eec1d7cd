#!/usr/bin/env bash
# Side-by-side benchmark: pgbench against PostgreSQL directly, through PgBouncer
# (session mode) and through pg-tenant-proxy, all on 127.0.0.1, interleaved in
# rounds (direct, pgbouncer, proxy, direct, ...) so machine drift hits all
# three alike. Then the proxy's RSS with 0, 1000 and 5000 idle authenticated
# sessions. Everything it starts is thrown away at the end.
#
#   benches/proxy-overhead.sh            # full run (about 18 minutes on 2 cores)
#   benches/proxy-overhead.sh --quick    # quick run (under 3 minutes)
#
# Options (after --quick/--full, which only set defaults):
#   --rounds N          rounds per configuration (full 3, quick 2)
#   --duration S        seconds per pgbench run (full 10, quick 3)
#   --clients "1 8 .."  client counts for the select-only tests (full "1 8 32 128", quick "8 32")
#   --connect-clients N clients for the -C test (8)
#   --write-clients N   clients for the TPC-B-like test (8)
#   --scale N           pgbench scale (10; at least 10)
#   --sessions "0 .."   idle sessions for the memory test (full "0 1000 5000", quick "0 1000")
#   --tests "A B"       throughput tests to run (default all: select-simple
#                       select-prepared select-connect tpcb-simple)
#   --no-memory         skip the memory test
#   --only "A B"        targets (default "direct pgbouncer proxy")
#   --proxy-env "K=V .." extra environment for the proxy (e.g. PGTP_WORKER_THREADS=1)
#   --rate TPS          fixed-rate runs (pgbench -R): compare hop CPU per
#                       transaction at equal load instead of peak TPS
#   --floor             add target "socat": a forking byte forwarder to
#                       PostgreSQL, the cheapest user-space hop (reference)
#   --extra-proxy NAME=BINARY[,K=V...]
#                       one more proxy target, reported as proxy-NAME (another
#                       build or other settings, for A/B runs); repeatable;
#                       the pseudo-setting unix=1 makes it reach PostgreSQL
#                       over its Unix socket instead of TCP, and
#                       same_session=1 runs it in this script's session
#                       (see "Sessions" below)
#   --perf DIR          record a CPU profile (perf record -g) of the proxy
#                       process during each of its runs, into DIR
#   --no-build          use the existing target/release binary
#   --out FILE          also write the result tables (markdown) to FILE
#
# Pooling (benches/pooling.sh sets these for the transaction pool run):
#   --bouncer-mode M    PgBouncer's pool_mode: session (default) or transaction;
#                       in transaction mode PgBouncer (1.18) is left out of
#                       select-prepared, which it cannot pool
#   --bouncer-pool-size N  PgBouncer's default_pool_size (200)
#   --prepared-clients "8 .."  client counts for select-prepared (default: --clients)
#   --connect-trust     during select-connect only, PostgreSQL trusts the
#                       login role from 127.0.0.1 (no SCRAM for direct logins
#                       and for the backends a pool opens), and one more target,
#                       pgbouncer-trust, is PgBouncer with no client
#                       authentication at all (its cheapest login)
#   --memory-modes "session transaction"
#                       measure idle-session memory once per proxy pool mode
#                       (default: the mode --proxy-env chooses)
#   --then FILE         after the memory test, source FILE (a bash fragment
#                       with this script's variables and functions); markdown
#                       it writes to $EXTRA_REPORT is appended to the report
# Each run also reports PostgreSQL's CPU per transaction: the postmaster's
# live children and what it reaped from those that exited, over the run.
# Every proxy target serves its metrics on a loopback admin port; with a
# transaction pool the report adds upstream flushes and backend checkouts
# per pgbench transaction (pgtp_pool_backend_flushes_total and
# pgtp_pool_transactions_total over the run).
#
# Requires: PostgreSQL 15 server binaries, pgbench, psql, python3; PgBouncer
# is apt-get installed when missing (as root). As root, PostgreSQL and
# PgBouncer run as the `postgres` OS user. The file-descriptor limit is raised
# to 65536 for the memory test (5000 client + 5000 upstream sockets); the
# cluster's max_connections is raised to sessions + 300 for that test only.
#
# Sessions: every hop runs in a session of its own (`setsid`), as PgBouncer's
# daemon mode (-d) and every PostgreSQL backend do, and as a service started
# by systemd or a container runtime does. On kernels with autogroup
# scheduling (/proc/sys/kernel/sched_autogroup_enabled = 1) each session is a
# scheduling group with an equal CPU share, so a hop left in this script's
# session would split one share with pgbench.
set -euo pipefail

REPO=${BENCH_REPO:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$REPO"

ROUNDS=3 DURATION=10 CLIENTS="1 8 32 128" CONNECT_CLIENTS=8 WRITE_CLIENTS=8 SCALE=10
TESTS="select-simple select-prepared select-connect tpcb-simple"
EXTRA=() XPIDS=() FLOOR=0 SOCAT_PID="" RATE=()
SESSIONS="0 1000 5000" MEMORY=1 TARGETS="direct pgbouncer proxy" BUILD=1 OUT="" PROXY_ENV="" PERF_DIR=""
BOUNCER_MODE=session BOUNCER_POOL_SIZE=200 PREPARED_CLIENTS="" CONNECT_TRUST=0 MEMORY_MODES="" THEN=""
if [ "${1:-}" = --quick ]; then
  ROUNDS=2 DURATION=3 CLIENTS="8 32" SESSIONS="0 1000"; shift
elif [ "${1:-}" = --full ]; then
  shift
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --connect-clients) CONNECT_CLIENTS=$2; shift 2 ;;
    --write-clients) WRITE_CLIENTS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --tests) TESTS=$2; shift 2 ;;
    --no-memory) MEMORY=0; shift ;;
    --only) TARGETS=$2; shift 2 ;;
    --proxy-env) PROXY_ENV=$2; shift 2 ;;
    --extra-proxy) EXTRA+=("$2"); shift 2 ;;
    --floor) FLOOR=1; shift ;;
    --rate) RATE=(-R "$2"); shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --perf) PERF_DIR=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --bouncer-mode) BOUNCER_MODE=$2; shift 2 ;;
    --bouncer-pool-size) BOUNCER_POOL_SIZE=$2; shift 2 ;;
    --prepared-clients) PREPARED_CLIENTS=$2; shift 2 ;;
    --connect-trust) CONNECT_TRUST=1; shift ;;
    --memory-modes) MEMORY_MODES=$2; shift 2 ;;
    --then) THEN=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$SCALE" -ge 10 ] || { echo "--scale must be at least 10" >&2; exit 2; }
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ] || { echo "--rounds must be 1..20" >&2; exit 2; }
[ "$DURATION" -ge 1 ] && [ "$DURATION" -le 120 ] || { echo "--duration must be 1..120" >&2; exit 2; }
case "$BOUNCER_MODE" in session|transaction) ;; *) echo "--bouncer-mode must be session or transaction" >&2; exit 2 ;; esac
[ -n "$PREPARED_CLIENTS" ] || PREPARED_CLIENTS=$CLIENTS

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Bounded wait: wait_for SECONDS command...
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ---------------------------------------------------------------- tools
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing pgbouncer"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null
  else
    echo "pgbouncer is not installed (apt-get install pgbouncer)" >&2; exit 1
  fi
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
# The Debian package starts a system-wide instance; it is not used here.
if [ "$BUILD" = 1 ]; then
  log "building the proxy (release)"
  cargo build --release --quiet --bin pg-tenant-proxy
fi
BIN=$REPO/target/release/pg-tenant-proxy
[ -x "$BIN" ] || { echo "missing $BIN (build it or drop --no-build)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/pgtp-bench.XXXXXX)
chmod 755 "$WORK"
PROXY_PID="" BOUNCER_PID="" HOLD_PID=""
# shellcheck source=../tests/support/pg.sh
source "$REPO/tests/support/pg.sh"
cleanup() {
  set +e
  [ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2>/dev/null
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null
  [ -n "$SOCAT_PID" ] && kill "$SOCAT_PID" 2>/dev/null
  for p in "${XPIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  stop_bouncer
  [ -n "$PROXY_PID" ] && wait "$PROXY_PID" 2>/dev/null
  pg_stop
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- PostgreSQL
log "starting PostgreSQL (scale $SCALE)"
# shared_buffers holds the whole scale-10 data set, so select-only runs measure
# the wire path rather than the page cache.
pg_start "shared_buffers=256MB" "max_wal_size=2GB" "checkpoint_timeout=30min"
# max_connections is set with ALTER SYSTEM (not -c) so the memory test can raise it with a restart.
set_max_connections() {
  pg_psql -d postgres -c "ALTER SYSTEM SET max_connections = $1" >/dev/null
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 120 restart >/dev/null
}
set_max_connections 400
LOGIN_PW="bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
pg_psql -d postgres -c "CREATE DATABASE bench" >/dev/null
PGPASSWORD=$PG_SUPER_PASSWORD pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPER" bench >"$WORK/init.log" 2>&1 \
  || { cat "$WORK/init.log" >&2; exit 1; }
# One login role for all three targets: direct and PgBouncer log in as it, and
# it is the proxy's upstream role. The pgbench tables need no RLS.
pg_psql -d bench >/dev/null <<SQL
CREATE ROLE bench_login LOGIN PASSWORD '$LOGIN_PW';
GRANT SELECT, INSERT, UPDATE, DELETE ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO bench_login;
VACUUM ANALYZE;
CHECKPOINT;
SQL
SCRAM=$(pg_psql -d postgres -Atc "SELECT rolpassword FROM pg_authid WHERE rolname = 'bench_login'")

# ---------------------------------------------------------------- PgBouncer
BOUNCER_PORT=$(free_port)
mkdir -p "$WORK/bouncer"
printf '"bench_login" "%s"\n' "$SCRAM" >"$WORK/bouncer/userlist.txt"
# Clients authenticate with SCRAM. With --connect-trust the database alias
# bench_trust (the same database, a pool of its own) asks for nothing: the
# target pgbouncer-trust of the select-connect test.
BOUNCER_AUTH="auth_type = scram-sha-256"
if [ "$CONNECT_TRUST" = 1 ]; then
  cat >"$WORK/bouncer/hba.conf" <<HBA
host bench_trust bench_login 127.0.0.1/32 trust
host bench bench_login 127.0.0.1/32 scram-sha-256
HBA
  BOUNCER_AUTH="auth_type = hba
auth_hba_file = $WORK/bouncer/hba.conf"
fi
cat >"$WORK/bouncer/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench
bench_trust = host=127.0.0.1 port=$PG_PORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
$BOUNCER_AUTH
auth_file = $WORK/bouncer/userlist.txt
pool_mode = $BOUNCER_MODE
max_client_conn = 1000
default_pool_size = $BOUNCER_POOL_SIZE
logfile = $WORK/bouncer/pgbouncer.log
pidfile = $WORK/bouncer/pgbouncer.pid
INI
[ "$(id -u)" = 0 ] && chown -R postgres: "$WORK/bouncer"
start_bouncer() {
  # Daemonised, so its pid (from the pidfile) is PgBouncer itself, not runuser.
  as_pg "$PGBOUNCER" -q -d "$WORK/bouncer/pgbouncer.ini"
  wait_for 10 python3 -c "import socket; socket.create_connection(('127.0.0.1', $BOUNCER_PORT), 1)" \
    || { cat "$WORK/bouncer/pgbouncer.log" >&2; exit 1; }
  BOUNCER_PID=$(cat "$WORK/bouncer/pgbouncer.pid")
}
stop_bouncer() {
  [ -n "$BOUNCER_PID" ] || return 0
  kill "$BOUNCER_PID" 2>/dev/null || true
  wait_for 10 bash -c "! kill -0 $BOUNCER_PID" || true
  BOUNCER_PID=""
}
if [[ " $TARGETS " == *" pgbouncer "* ]]; then
  log "starting PgBouncer $("$PGBOUNCER" --version | head -1 | awk '{print $2}') ($BOUNCER_MODE mode, default_pool_size $BOUNCER_POOL_SIZE)"
  start_bouncer
fi

# ---------------------------------------------------------------- proxy
PROXY_PORT=$(free_port)
SECRET_FILE=$WORK/jwt-secret
od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$SECRET_FILE"
# Context verification is on, as shipped: every proxy signs the context with
# this key (the pgbench tables are not under RLS, so the database never reads
# the proof here; benches/context-verification.sh measures its cost).
CONTEXT_KEY_FILE=$WORK/context-key
od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$CONTEXT_KEY_FILE"
# The key file unless the settings $1 choose context verification themselves.
context_env() { [[ "$1" == *PGTP_CONTEXT_* ]] || echo "PGTP_CONTEXT_KEY_FILE=$CONTEXT_KEY_FILE"; }
ORG=$(python3 -c 'import uuid; print(uuid.uuid4())')
SUB=$(python3 -c 'import uuid; print(uuid.uuid4())')
TOKEN=$("$BIN" token --jwt-secret-file "$SECRET_FILE" --org "$ORG" --sub "$SUB" --ttl 7200)
PROXY_ADMIN=$(free_port)
# The proxy with PROXY_ENV and then $1 (e.g. PGTP_POOL_MODE=session for one memory test).
start_proxy() {
  # shellcheck disable=SC2086
  setsid env PGTP_UPSTREAM_PASSWORD="$LOGIN_PW" $(context_env "$PROXY_ENV") $PROXY_ENV ${1:-} "$BIN" serve --listen "127.0.0.1:$PROXY_PORT" \
    --upstream "postgresql://bench_login@127.0.0.1:$PG_PORT/bench?sslmode=disable" --admin-listen "127.0.0.1:$PROXY_ADMIN" \
    --jwt-secret-file "$SECRET_FILE" --max-connections 10000 --max-sessions-per-org 0 2>>"$WORK/proxy.log" &
  PROXY_PID=$!
  wait_for 10 python3 -c "import socket; socket.create_connection(('127.0.0.1', $PROXY_PORT), 1)" \
    || { cat "$WORK/proxy.log" >&2; exit 1; }
}
stop_proxy() {
  [ -n "$PROXY_PID" ] || return 0
  kill "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
  PROXY_PID=""
}
if [[ " $TARGETS " == *" proxy "* ]]; then
  log "starting pg-tenant-proxy${PROXY_ENV:+ ($PROXY_ENV)}"
  start_proxy
fi

if [ "$FLOOR" = 1 ]; then
  command -v socat >/dev/null || { [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q socat >/dev/null; }
  SOCAT_PORT=$(free_port)
  setsid socat "TCP-LISTEN:$SOCAT_PORT,bind=127.0.0.1,fork,reuseaddr,nodelay" "TCP:127.0.0.1:$PG_PORT,nodelay" &
  SOCAT_PID=$!
  wait_for 10 python3 -c "import socket; socket.create_connection(('127.0.0.1', $SOCAT_PORT), 1).close()"
  TARGETS="$TARGETS socat"
fi

declare -A XPORT=() XPID=() XADMIN=()
# Whether the pseudo-setting $1 (e.g. unix=1) is in $xenv; if so, removes it.
take_pseudo() {
  [[ ",$xenv," == *",$1,"* ]] || return 1
  xenv=$(tr ',' '\n' <<<"$xenv" | { grep -vxF "$1" || true; } | paste -sd, -)
}
for x in "${EXTRA[@]}"; do
  name=${x%%=*} rest=${x#*=}
  xbin=${rest%%,*} xenv=""
  [[ "$rest" == *,* ]] && xenv=${rest#*,}
  XPORT[$name]=$(free_port) XADMIN[$name]=$(free_port)
  xup="postgresql://bench_login@127.0.0.1:$PG_PORT/bench?sslmode=disable"
  if take_pseudo unix=1; then
    xup="postgresql://bench_login@localhost:$PG_PORT/bench?host=$PG_DIR&sslmode=disable"
  fi
  xsetsid=setsid
  take_pseudo same_session=1 && xsetsid=""
  log "starting proxy-$name: $xbin ${xenv//,/ }"
  # shellcheck disable=SC2086
  $xsetsid env PGTP_UPSTREAM_PASSWORD="$LOGIN_PW" $(context_env "$xenv") ${xenv//,/ } "$xbin" serve --listen "127.0.0.1:${XPORT[$name]}" \
    --upstream "$xup" --admin-listen "127.0.0.1:${XADMIN[$name]}" \
    --jwt-secret-file "$SECRET_FILE" --max-connections 10000 --max-sessions-per-org 0 2>>"$WORK/proxy-$name.log" &
  XPIDS+=($!) XPID[$name]=$!
  wait_for 10 python3 -c "import socket; socket.create_connection(('127.0.0.1', ${XPORT[$name]}), 1)" \
    || { cat "$WORK/proxy-$name.log" >&2; exit 1; }
  TARGETS="$TARGETS proxy-$name"
done
if [ "$CONNECT_TRUST" = 1 ] && [[ " $TARGETS " == *" pgbouncer "* ]] && [[ " $TESTS " == *" select-connect "* ]]; then
  TARGETS="$TARGETS pgbouncer-trust"
fi

# --connect-trust: PostgreSQL trusts the login role from loopback (on), or
# asks for its password again (off). Reloaded, then checked with a login.
HBA_FILE=""
connect_trust() {
  [ -n "$HBA_FILE" ] || { HBA_FILE=$PG_DIR/data/pg_hba.conf; cp "$HBA_FILE" "$WORK/pg_hba.orig"; }
  if [ "$1" = on ]; then
    { echo "host bench bench_login 127.0.0.1/32 trust"; cat "$WORK/pg_hba.orig"; } >"$HBA_FILE"
  else
    cat "$WORK/pg_hba.orig" >"$HBA_FILE"
  fi
  pg_psql -d postgres -Atc "SELECT pg_reload_conf()" >/dev/null
  local probe=(env PGPASSWORD= PGCONNECT_TIMEOUT=2 psql -X -w -h 127.0.0.1 -p "$PG_PORT" -U bench_login -d bench -Atc "SELECT 1")
  if [ "$1" = on ]; then
    wait_for 10 "${probe[@]}" || { echo "pg_hba trust did not take effect" >&2; exit 1; }
  else
    wait_for 10 bash -c '! "$@"' _ "${probe[@]}" || { echo "pg_hba trust was not removed" >&2; exit 1; }
  fi
}

export PGSSLMODE=disable PGGSSENCMODE=disable PGDATABASE=bench PGHOST=127.0.0.1
# Connection settings of a target: port, user, password, database.
target_env() {
  case "$1" in
    direct) echo "$PG_PORT bench_login $LOGIN_PW bench" ;;
    pgbouncer) echo "$BOUNCER_PORT bench_login $LOGIN_PW bench" ;;
    pgbouncer-trust) echo "$BOUNCER_PORT bench_login $LOGIN_PW bench_trust" ;;
    proxy) echo "$PROXY_PORT bench_login $TOKEN bench" ;;
    socat) echo "$SOCAT_PORT bench_login $LOGIN_PW bench" ;;
    proxy-*) echo "${XPORT[${1#proxy-}]} bench_login $TOKEN bench" ;;
  esac
}

# pgbench TARGET ARGS... (prints pgbench's summary)
bench_on() {
  local t=$1; shift
  local port user pw db
  read -r port user pw db <<<"$(target_env "$t")"
  PGPORT=$port PGUSER=$user PGPASSWORD=$pw PGDATABASE=$db timeout $((DURATION + 300)) pgbench -n "$@"
}

# The targets of one test, in order: PgBouncer in transaction mode cannot
# run pgbench -M prepared (1.18 keeps no prepared statements across server
# connections), and pgbouncer-trust is a target of select-connect only.
targets_for() {
  local t out=""
  for t in $TARGETS; do
    case "$1:$t" in
      select-prepared:pgbouncer) [ "$BOUNCER_MODE" = transaction ] && continue ;;
      select-connect:pgbouncer-trust) ;;
      *:pgbouncer-trust) continue ;;
    esac
    out="$out $t"
  done
  echo "${out# }"
}

# Every statement pgbench sends must pass the proxy's guard: check once, verbosely.
if [[ " $TARGETS " == *" proxy "* ]]; then
  for m in simple prepared; do
    if ! bench_on proxy -M "$m" -t 20 -c 1 >"$WORK/guard-check.log" 2>&1 \
      || grep -q "failed: [1-9]" "$WORK/guard-check.log"; then
      echo "pgbench TPC-B ($m) failed through the proxy:" >&2
      cat "$WORK/guard-check.log" >&2; exit 1
    fi
    bench_on proxy -S -M "$m" -t 20 -c 1 >/dev/null 2>&1 || { echo "pgbench -S ($m) failed through the proxy" >&2; exit 1; }
  done
fi

RESULTS=$WORK/results.csv
: >"$RESULTS"
mkdir -p "$WORK/logs"
# The hop process of a target (empty for direct and socat).
hop_pid() {
  case "$1" in
    pgbouncer) echo "$BOUNCER_PID" ;;
    proxy) echo "$PROXY_PID" ;;
    proxy-*) echo "${XPID[${1#proxy-}]}" ;;
  esac
}
# CPU ticks (user + system) the hop process of a target has used so far.
hop_ticks() {
  local pid
  pid=$(hop_pid "$1")
  if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
    awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$pid/stat"
  else
    echo ""
  fi
}
# Context switches (voluntary + involuntary, all threads) of a target's hop process.
hop_switches() {
  local pid
  pid=$(hop_pid "$1")
  if [ -n "$pid" ] && [ -d "/proc/$pid/task" ]; then
    cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/{n += $2} END{print n + 0}'
  else
    echo ""
  fi
}
# The admin port of a proxy target (empty for the others).
admin_port() {
  case "$1" in
    proxy) echo "$PROXY_ADMIN" ;;
    proxy-*) echo "${XADMIN[${1#proxy-}]}" ;;
  esac
}
# The sum of a metric's samples on a proxy target's /metrics, e.g.
# `metric proxy pgtp_pool_transactions_total` (empty when unreadable).
metric() {
  local port
  port=$(admin_port "$1")
  [ -n "$port" ] || return 0
  { curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" 2>/dev/null || true; } \
    | awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $NF; n++} END {if (n) printf "%d\n", s}'
}
# CPU ticks PostgreSQL has used so far: the postmaster and its live children
# plus what it reaped from children that exited (connections of -C runs).
pg_ticks() {
  local pm
  pm=$(head -1 "$PG_DIR/data/postmaster.pid" 2>/dev/null) || return 0
  # Processes come and go while cat reads: a vanished one is no error.
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pm="$pm" '
    { pid = $1; sub(/^.*\) /, "") }
    pid == pm { s += $12 + $13 + $14 + $15 }
    $2 == pm { s += $12 + $13 }
    END { print s + 0 }'
}
# Busy and idle CPU ticks of the whole machine so far (all cores): busy is
# user + nice + system + irq + softirq + steal, idle is idle + iowait.
machine_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit}' /proc/stat; }
HZ=$(getconf CLK_TCK)
# One measured run: TEST CLIENTS TARGET ROUND pgbench-args...
run_one() {
  local test=$1 clients=$2 target=$3 round=$4; shift 4
  local jobs=$((clients < 2 ? 1 : 2))
  local prefix="$WORK/logs/$test.$clients.$target.$round"
  local out t0 t1 s0 s1 b0 b1 i0 i1 cpu="" sw="" mcpu="" idle="" perf_pid=""
  if [ -n "$PERF_DIR" ] && [[ "$target" == proxy* ]]; then
    mkdir -p "$PERF_DIR"
    perf record -q -g -p "$(hop_pid "$target")" -o "$PERF_DIR/$test.$clients.$target.$round.data" 2>/dev/null &
    perf_pid=$!
    sleep 0.5
  fi
  local f0 f1 k0 k1 flushes="" checkouts="" p0 p1 pgcpu=""
  f0=$(metric "$target" pgtp_pool_backend_flushes_total) k0=$(metric "$target" pgtp_pool_transactions_total)
  t0=$(hop_ticks "$target") s0=$(hop_switches "$target") p0=$(pg_ticks)
  read -r b0 i0 < <(machine_ticks)
  if ! out=$(bench_on "$target" -c "$clients" -j "$jobs" -T "$DURATION" -l --sampling-rate=0.1 \
    --log-prefix="$prefix" "${RATE[@]}" "$@" 2>&1); then
    echo "pgbench failed: $test c=$clients $target round $round" >&2
    echo "$out" >&2; exit 1
  fi
  t1=$(hop_ticks "$target") s1=$(hop_switches "$target") p1=$(pg_ticks)
  read -r b1 i1 < <(machine_ticks)
  f1=$(metric "$target" pgtp_pool_backend_flushes_total) k1=$(metric "$target" pgtp_pool_transactions_total)
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
  fi
  local tps lat failed n
  n=$(awk '/^number of transactions actually processed:/{print $6; exit}' <<<"$out")
  # Hop CPU per transaction in microseconds (PgBouncer or the proxy; empty for direct).
  [ -n "$t0" ] && [ -n "$n" ] && [ "$n" -gt 0 ] && cpu=$(( (t1 - t0) * 1000000 / HZ / n ))
  # Its context switches per 100 transactions (sleeping and waking is most of a hop's cost).
  [ -n "$s0" ] && [ -n "$n" ] && [ "$n" -gt 0 ] && sw=$(( (s1 - s0) * 100 / n ))
  # The whole machine: CPU per transaction (pgbench, PostgreSQL, the hop and
  # the kernel for all of them) and the share of CPU left idle. When idle is
  # near 0 the configuration is CPU-bound and its TPS is (cores / that CPU).
  [ -n "$n" ] && [ "$n" -gt 0 ] && mcpu=$(( (b1 - b0) * 1000000 / HZ / n ))
  # PostgreSQL's CPU per transaction (all its processes).
  [ -n "$p0" ] && [ -n "$p1" ] && [ -n "$n" ] && [ "$n" -gt 0 ] && pgcpu=$(( (p1 - p0) * 1000000 / HZ / n ))
  [ $(( b1 - b0 + i1 - i0 )) -gt 0 ] && idle=$(( (i1 - i0) * 100 / (b1 - b0 + i1 - i0) ))
  # Transaction pool: upstream round trips (writes the relay then waited on)
  # and backend checkouts per pgbench transaction, in hundredths.
  if [ -n "$f0" ] && [ -n "$f1" ] && [ -n "$n" ] && [ "$n" -gt 0 ] && [ $((k1 - k0)) -gt 0 ]; then
    flushes=$(( (f1 - f0) * 100 / n )) checkouts=$(( (k1 - k0) * 100 / n ))
  fi
  tps=$(awk '/^tps = /{print $3; exit}' <<<"$out")
  lat=$(awk '/^latency average = /{print $4; exit}' <<<"$out")
  failed=$(awk '/^number of failed transactions: /{print $5; exit}' <<<"$out")
  echo "$test,$clients,$target,$round,$tps,$lat,${failed:-0},$prefix,$cpu,$sw,$mcpu,$idle,$flushes,$checkouts,$pgcpu" >>"$RESULTS"
  log "  $test c=$clients $target: $tps tps, $lat ms${cpu:+, hop CPU $cpu us/txn}${sw:+, $sw switches/100 txn}${mcpu:+, machine CPU $mcpu us/txn}${pgcpu:+, PostgreSQL CPU $pgcpu us/txn}${idle:+, $idle% idle}${flushes:+, upstream flushes $flushes/100 txn, checkouts $checkouts/100 txn}"
}

# ---------------------------------------------------------------- throughput
# TEST-NAME CLIENTS pgbench-args...
ALL=()
for c in $CLIENTS; do ALL+=("select-simple $c -S -M simple"); done
for c in $PREPARED_CLIENTS; do ALL+=("select-prepared $c -S -M prepared"); done
ALL+=("select-connect $CONNECT_CLIENTS -S -M simple -C")
ALL+=("tpcb-simple $WRITE_CLIENTS -M simple")
CONFIGS=()
for cfg in "${ALL[@]}"; do [[ " $TESTS " == *" ${cfg%% *} "* ]] && CONFIGS+=("$cfg"); done
runs=0
for cfg in "${CONFIGS[@]}"; do runs=$((runs + ROUNDS * $(wc -w <<<"$(targets_for "${cfg%% *}")"))); done
log "throughput: ${#CONFIGS[@]} configurations x $ROUNDS rounds x {$TARGETS}, ${DURATION}s each, $runs runs (~$((runs * (DURATION + 1) / 60)) min)"
for t in $TARGETS; do  # warm-up
  [ "$t" = pgbouncer-trust ] && continue  # it can log in upstream only while trust is on
  m=prepared; [[ "$t" == pgbouncer && "$BOUNCER_MODE" == transaction ]] && m=simple
  bench_on "$t" -S -M "$m" -c 8 -j 2 -T 2 >/dev/null 2>&1 || true
done
for cfg in "${CONFIGS[@]}"; do
  read -r test clients args <<<"$cfg"
  [ "$test" = select-connect ] && [ "$CONNECT_TRUST" = 1 ] && connect_trust on
  for r in $(seq 1 "$ROUNDS"); do
    for t in $(targets_for "$test"); do
      # shellcheck disable=SC2086
      run_one "$test" "$clients" "$t" "$r" $args
    done
  done
  [ "$test" = select-connect ] && [ "$CONNECT_TRUST" = 1 ] && connect_trust off
done

# ---------------------------------------------------------------- memory
MEMFILE=$WORK/memory.csv
: >"$MEMFILE"
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
backends_up() { pg_psql -d postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench_login'"; }
# Client sessions the proxy has greeted and not yet closed (both pool modes).
sessions_open() { metric proxy pgtp_sessions_open; }
sessions_at_least() { [ "$(sessions_open)" -ge "$1" ]; }
sessions_at_most() { [ "$(sessions_open)" -le "$1" ]; }
if [ "$MEMORY" = 1 ] && [[ " $TARGETS " == *" proxy "* ]]; then
  max=0; for n in $SESSIONS; do [ "$n" -gt "$max" ] && max=$n; done
  log "memory: idle sessions $SESSIONS${MEMORY_MODES:+, pool modes $MEMORY_MODES} (max_connections -> $((max + 300)))"
  stop_bouncer
  stop_proxy
  set_max_connections $((max + 300))
  for mode in ${MEMORY_MODES:-default}; do
    stop_proxy
    if [ "$mode" = default ]; then start_proxy; else start_proxy "PGTP_POOL_MODE=$mode"; fi
    # One session in and out first, so lazily built state counts in the baseline.
    bench_on proxy -S -t 10 -c 1 >/dev/null 2>&1
    sleep 1
    for n in $SESSIONS; do
      if [ "$n" = 0 ]; then
        echo "$mode,0,$(rss_kib "$PROXY_PID"),ok,,$(backends_up)" >>"$MEMFILE"; continue
      fi
      # Each pgbench thread connects its share, then its clients sleep `hold`
      # seconds and run SELECT 1; the threads connect side by side.
      hold=$((15 + n / 100))
      printf '\\sleep %s s\nSELECT 1;\n' "$hold" >"$WORK/idle.sql"
      t0=$SECONDS
      bench_on proxy -f "$WORK/idle.sql" -c "$n" -j 2 -t 1 >"$WORK/hold-$n.log" 2>&1 &
      HOLD_PID=$!
      if ! wait_for $((30 + n / 50)) sessions_at_least "$n"; then
        echo "only $(sessions_open) of $n sessions came up" >&2; tail -5 "$WORK/proxy.log" >&2; exit 1
      fi
      up=$((SECONDS - t0))
      sleep 2
      rss=$(rss_kib "$PROXY_PID") backends=$(backends_up)
      # Every session then runs SELECT 1: "working", not just connected.
      wait "$HOLD_PID" || { cat "$WORK/hold-$n.log" >&2; exit 1; }
      HOLD_PID=""
      done_n=$(awk '/^number of transactions actually processed:/{split($6, a, "/"); print a[1]}' "$WORK/hold-$n.log")
      ok=$([ "$done_n" = "$n" ] && echo ok || echo "only $done_n/$n")
      echo "$mode,$n,$rss,$ok,$up,$backends" >>"$MEMFILE"
      log "  $mode: $n sessions: proxy RSS $rss KiB, $backends upstream backends (all up after ${up}s; SELECT 1 on each: $ok)"
      wait_for 60 sessions_at_most 0 || true
    done
  done
fi

# ---------------------------------------------------------------- more
# --then: a fragment that reuses this run's cluster, binary and helpers.
EXTRA_REPORT=$WORK/extra-report.md
: >"$EXTRA_REPORT"
if [ -n "$THEN" ]; then
  # shellcheck disable=SC1090
  source "$THEN"
fi

# ---------------------------------------------------------------- report
report() {
  echo "## pg-tenant-proxy overhead benchmark"
  echo
  echo "- machine: $(nproc) cores, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r)"
  echo "- $("$PG_BIN/postgres" --version), PgBouncer $("$PGBOUNCER" --version | head -1 | awk '{print $2}') ($BOUNCER_MODE mode, default_pool_size $BOUNCER_POOL_SIZE), pg-tenant-proxy $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)${PROXY_ENV:+ with $PROXY_ENV}"
  echo "- pgbench scale $SCALE, $ROUNDS rounds x ${DURATION}s per target, interleaved; -j 2 (1 for 1 client); all on 127.0.0.1"
  [ "$BOUNCER_MODE" = transaction ] && echo "- PgBouncer is not a target of select-prepared: in transaction mode, PgBouncer 1.18 cannot pool prepared statements"
  [ "$CONNECT_TRUST" = 1 ] && echo "- select-connect: PostgreSQL trusts bench_login from 127.0.0.1 during this test only; pgbouncer = SCRAM client auth, pgbouncer-trust = no client auth, proxy = HS256 token verified per connection"
  echo
  python3 - "$RESULTS" "$MEMFILE" <<'PY'
import csv, glob, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
order, by = [], {}
num = lambda v: int(v) if v else None
for test, c, target, rnd, tps, lat, failed, prefix, cpu, sw, mcpu, idle, fl, co, pgcpu in rows:
    key = (test, int(c))
    if key not in by:
        order.append(key); by[key] = {}
    by[key].setdefault(target, []).append((float(tps), float(lat), int(failed or 0), prefix, num(cpu), num(sw), num(mcpu), num(idle), num(fl), num(co), num(pgcpu)))
pooled = any(x[8] is not None for t in by.values() for v in t.values() for x in v)
def p99(prefixes):
    lat = []
    for p in prefixes:
        for f in glob.glob(p + ".*"):
            for line in open(f):
                parts = line.split()
                if len(parts) >= 3:
                    lat.append(int(parts[2]))
    if not lat:
        return float("nan")
    lat.sort()
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000.0
extra_head = " upstream flushes / txn | backend checkouts / txn |" if pooled else ""
print("| test | clients | target | median TPS | mean latency ms | p99 latency ms | TPS / direct | TPS / pgbouncer | hop CPU us/txn | hop switches / 100 txn | PostgreSQL CPU us/txn | machine CPU us/txn | idle % |" + extra_head + " rounds (TPS) |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if pooled else "") + "---|")
for key in order:
    t = by[key]
    med = {k: statistics.median(x[0] for x in v) for k, v in t.items()}
    for target, v in t.items():
        m = med[target]
        ratio = f"{m / med['direct']:.2f}" if "direct" in med and med["direct"] else "-"
        rb = f"{m / med['pgbouncer']:.2f}" if "pgbouncer" in med and med["pgbouncer"] and target != "pgbouncer" else "-"
        lat = statistics.mean(x[1] for x in v)
        fails = sum(x[2] for x in v)
        rounds = " ".join(f"{x[0]:.0f}" for x in v) + (f" ({fails} failed)" if fails else "")
        def med_of(i):
            xs = [x[i] for x in v if x[i] is not None]
            return f"{statistics.median(xs):.0f}" if xs else "-"
        cpu, sw, mcpu, idle, pgcpu = med_of(4), med_of(5), med_of(6), med_of(7), med_of(10)
        def per_txn(i):
            xs = [x[i] for x in v if x[i] is not None]
            return f"{statistics.median(xs) / 100:.2f}" if xs else "-"
        extra = f" {per_txn(8)} | {per_txn(9)} |" if pooled else ""
        print(f"| {key[0]} | {key[1]} | {target} | {m:.0f} | {lat:.3f} | {p99([x[3] for x in v]):.3f} | {ratio} | {rb} | {cpu} | {sw} | {pgcpu} | {mcpu} | {idle} |{extra} {rounds} |")
mem = list(csv.reader(open(sys.argv[2])))
if mem:
    print()
    print("| proxy pool mode | idle sessions | proxy RSS KiB | bytes per session | all up after s | upstream backends | SELECT 1 on every session |")
    print("|---|---:|---:|---:|---:|---:|---|")
    base = {}
    for mode, n, rss, ok, up, backends in mem:
        n, rss = int(n), int(rss)
        if n == 0:
            base[mode] = rss
        per = f"{(rss - base[mode]) * 1024 / n:.0f}" if n and mode in base else "-"
        print(f"| {mode} | {n} | {rss} | {per} | {up or '-'} | {backends} | {ok} |")
PY
  if [ -s "$EXTRA_REPORT" ]; then
    echo
    cat "$EXTRA_REPORT"
  fi
}
REPORT=$(report)
echo "$REPORT"
[ -n "$OUT" ] && echo "$REPORT" >"$OUT"
log "done"
