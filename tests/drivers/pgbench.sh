#!/usr/bin/env bash
# pgbench through the proxy in one protocol mode (simple, extended, prepared),
# 2 clients x 25 transactions of a script that aborts the client (pgbench exit 2)
# unless the rows are exactly tenant A's and the pin holds after RESET ALL.
# "control" runs the same script expecting tenant B's organization with tenant
# A's token: it must fail, which shows the script's assertions can fail.
# Run by tests/drivers/run.sh.
set -uo pipefail
mode=$1
expect_org=$ORG_A expect_user=$USER_A proto=$mode
if [ "$mode" = control ]; then expect_org=$ORG_B expect_user=$USER_B proto=extended; fi
script=$(mktemp /tmp/pgtp-pgbench.XXXXXX.sql)
trap 'rm -f "$script"' EXIT
cat >"$script" <<SQL
RESET ALL;
SELECT count(*) AS own, count(*) FILTER (WHERE organization_id <> '$expect_org') AS others, (current_setting('app.current_organization_id') = '$expect_org' AND current_setting('app.current_user_id') = '$expect_user')::int AS pinned FROM agent_instances WHERE agent_id IN ('agent-shared', 'agent-a-only', 'agent-b-only') \gset
\if :own != 2 or :others != 0 or :pinned != 1
\set assertion_failed 1 / 0
\endif
SQL
out=$(PGPASSWORD=$TOKEN_A pgbench -n -c 2 -j 1 -t 25 -M "$proto" -f "$script" \
  -h "$PGTP_HOST" -p "$PGTP_PORT" -U app "$PGTP_DB" 2>&1); rc=$?
echo "$out"
if [ "$mode" = control ]; then
  # The assertion must abort every client: exit 2 and no transaction processed.
  if [ "$rc" = 2 ] && grep -q 'aborted in command 3 (set)' <<<"$out" \
     && grep -q 'number of transactions actually processed: 0/50' <<<"$out"; then
    echo "ok: a wrong expected organization aborts the clients"; exit 0
  fi
  echo "FAIL: control run (expects B's organization under A's token) did not fail as it must (exit $rc)"; exit 1
fi
if [ "$rc" = 0 ] && grep -q 'number of transactions actually processed: 50/50' <<<"$out" \
   && grep -q "query mode: $proto" <<<"$out"; then
  echo "ok: 50/50 transactions, own rows, pin intact ($proto)"; exit 0
fi
echo "FAIL: pgbench -M $proto exit $rc"; exit 1
