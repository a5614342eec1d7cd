#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for tests, the demo and benchmarks.
#
# Source this file, then:
#   pg_start [extra postgres -c options...]   # initdb + start on a free port
#   pg_stop                                   # stop and delete the cluster
# After pg_start these are exported:
#   PG_DIR   the cluster's temp dir          PG_PORT  its TCP port (127.0.0.1)
#   PG_SUPER the superuser name ("postgres") PG_SUPER_PASSWORD its password
#   PG_BIN   the server binaries
# Host auth is scram-sha-256 on 127.0.0.1; the superuser can also use the Unix
# socket in $PG_DIR without a password (for psql setup steps: pg_psql ...).
# As root, initdb/pg_ctl run as the `postgres` OS user (initdb refuses root).

PG_BIN=${PG_BIN:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
export PG_BIN

_pg_as() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_free_port() {
  python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

pg_start() {
  PG_DIR=$(mktemp -d /tmp/pgtp-cluster.XXXXXX)
  chmod 755 "$PG_DIR"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DIR"; fi
  PG_PORT=${PG_PORT:-$(pg_free_port)}
  PG_SUPER=postgres
  PG_SUPER_PASSWORD=${PG_SUPER_PASSWORD:-super-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')}
  export PG_DIR PG_PORT PG_SUPER PG_SUPER_PASSWORD
  local pwfile="$PG_DIR/.pw"
  printf '%s\n' "$PG_SUPER_PASSWORD" > "$pwfile"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$pwfile"; fi
  _pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_SUPER" --pwfile="$pwfile" \
    --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  rm -f "$pwfile"
  local opts="-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  local o
  for o in "$@"; do opts="$opts -c $o"; done
  _pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -o "$opts" -w -t 60 start >/dev/null \
    || { cat "$PG_DIR/server.log" >&2; return 1; }
}

# psql as the superuser over the Unix socket (no password needed).
pg_psql() {
  psql -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U "$PG_SUPER" "$@"
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ] || return 0
  _pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
  unset PG_DIR
}
