#!/usr/bin/env bash
# Transaction pool mode, measured in one run of benches/proxy-overhead.sh
# (one throwaway PostgreSQL 15, all on 127.0.0.1, everything thrown away at
# the end; targets interleaved within every round):
#
#   a. pgbench -S (simple) at 8, 32 and 128 clients: direct PostgreSQL,
#      PgBouncer in transaction mode (default_pool_size 20) and the proxy with
#      --pool-mode transaction --pool-size 20 (PGTP_POOL_MODE/PGTP_POOL_SIZE);
#   b. pgbench -S -M prepared at 8 and 32 clients: direct and the proxy
#      (PgBouncer 1.18 cannot pool prepared statements in transaction mode);
#   c. pgbench -S -C (a new connection per transaction) at 8 clients: direct,
#      PgBouncer (SCRAM client auth), PgBouncer with no client auth, and the
#      proxy (a token verified per connection); PostgreSQL trusts the login
#      role during this test only;
#   d. TENANT_SESSIONS (10000) sessions at once over TENANT_ORGS (100)
#      organizations through a pool of 20 backends, every row checked
#      (benches/pool-tenants.sh, benches/pool-tenants.py);
#   e. the proxy's RSS with 0, 1000 and 5000 idle sessions, in transaction
#      and in session mode;
#   f. upstream flushes and backend checkouts per pgbench transaction
#      (the proxy's /metrics) for a-c.
# One more target, proxy-session (the same binary in session mode, one
# upstream session per client), runs in a-c as a reference: it separates
# what the transaction pool costs from what the hop costs.
# Context verification stays on: the proxy signs every pin with a context
# key, which the tenants database has installed (tenant.add_context_key).
#
#   benches/pooling.sh                 # full run: about 21 minutes on 2 cores
#   benches/pooling.sh --quick         # about 4 minutes (2 rounds x 3 s, 1000 sessions)
#   benches/pooling.sh --no-build --out /tmp/pooling.md
# Any further option is passed to benches/proxy-overhead.sh (see its --help);
# later options win, e.g. --rounds 3 --sessions "0 1000".
set -euo pipefail
cd "$(dirname "$0")/.."

args=(--rounds 4 --duration 10 --sessions "0 1000 5000") sessions=10000
if [ "${1:-}" = --quick ]; then
  shift
  args=(--rounds 2 --duration 3 --sessions "0 1000") sessions=1000
fi
export TENANT_SESSIONS=${TENANT_SESSIONS:-$sessions}
exec benches/proxy-overhead.sh --full "${args[@]}" \
  --tests "select-simple select-prepared select-connect" \
  --clients "8 32 128" --prepared-clients "8 32" --connect-clients 8 \
  --bouncer-mode transaction --bouncer-pool-size 20 \
  --proxy-env "PGTP_POOL_MODE=transaction PGTP_POOL_SIZE=20" \
  --connect-trust --memory-modes "transaction session" \
  --extra-proxy "session=$PWD/target/release/pg-tenant-proxy,PGTP_POOL_MODE=session" \
  --then benches/pool-tenants.sh "$@"
