#!/usr/bin/env bash
# Installs what tests/drivers/run.sh needs, idempotently (as root; .ci/run calls it):
# Debian's packages first, the npm registry only for what Debian lacks
# (postgres.js; node-postgres comes along so both run under one node_modules).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DEBIAN_FRONTEND=noninteractive
pkgs=(postgresql-client-15 python3 python3-psycopg python3-psycopg-pool python3-asyncpg
      libpostgresql-jdbc-java libhikaricp-java libslf4j-java
      golang-go golang-github-jackc-pgx-v4-dev golang-github-lib-pq-dev)
command -v java >/dev/null || pkgs+=(default-jre-headless)
need=()
for pkg in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "== installing: ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v node >/dev/null || { echo "node and npm are needed for tests/drivers/node" >&2; exit 1; }
# Exactly the versions in package-lock.json; skipped when already installed.
if ! (cd "$HERE/node" && npm ls --omit=dev >/dev/null 2>&1); then
  echo "== npm ci (tests/drivers/node)"
  (cd "$HERE/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
