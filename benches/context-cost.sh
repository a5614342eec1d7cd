#!/usr/bin/env bash
# PostgreSQL-side cost of the verified tenant context, per statement, without
# the proxy: one throwaway PostgreSQL 15, sql/ applied, a context key
# installed, and a session over the Unix socket carrying a valid proof (bound
# to 'unix'). Each expression is evaluated N times inside a DO block, with a
# COMMIT after every evaluation, so each one runs in a transaction of its own
# as a pgbench statement does (PL/pgSQL re-initialises its expressions per
# transaction).
#   prepared: the expression's plan is cached (as with -M prepared)
#   simple:   the statement is parsed and planned every time (EXECUTE), as
#             with the simple query protocol
# Reports the median of 3 interleaved rounds, in microseconds per statement,
# minus nothing: compare rows with each other ("SELECT 1" is the floor).
#
#   benches/context-cost.sh [N]        (default N = 20000)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-20000}
# shellcheck source=../tests/support/pg.sh
source "$REPO/tests/support/pg.sh"
trap pg_stop EXIT
pg_start >/dev/null
pg_psql -d postgres -c "CREATE DATABASE cost" >/dev/null
for f in "$REPO"/sql/*.sql; do pg_psql -d cost -f "$f" >/dev/null; done
KEY=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
ORG=$(python3 -c 'import uuid; print(uuid.uuid4())')
USR=$(python3 -c 'import uuid; print(uuid.uuid4())')
EXP=$(( $(date +%s) + 3600 ))
pg_psql -d cost -v key="$KEY" >/dev/null <<<"SELECT tenant.add_context_key('1', :'key');"
MAC=$(pg_psql -d cost -At -v key="$KEY" <<<"SELECT encode(tenant.hmac_sha256(convert_to(:'key', 'UTF8'),
  convert_to(concat_ws(E'\n', 'pgtp-context-v1', '1', '$EXP', 'unix', '', '$ORG', '$USR'), 'UTF8')), 'hex');")
GOOD="-c app.current_organization_id=$ORG -c app.current_user_id=$USR -c app.context_proof=v1,1,$EXP,unix,,$MAC"
NONE="-c app.current_organization_id=$ORG -c app.current_user_id=$USR"

# label | settings | expression
CASES=(
  "SELECT 1 (floor)|$GOOD|1"
  "helper, verified proof|$GOOD|tenant.current_organization_id()"
  "helper, no proof (the verifier's refusing path)|$NONE|tenant.current_organization_id()"
  "the helper before verification existed|$GOOD|tenant.uuid_or_null(current_setting('app.current_organization_id', true))"
)
[ "$(PGOPTIONS="$GOOD" pg_psql -d cost -At -c 'SELECT tenant.context_status()')" = verified ] \
  || { echo "the probe session's proof does not verify" >&2; exit 1; }
run() { # mode settings expression -> seconds
  local q=${3//\'/\'\'}
  local stmt
  if [ "$1" = prepared ]; then stmt="x := (SELECT $3) IS NULL;"; else stmt="EXECUTE 'SELECT (SELECT $q) IS NULL' INTO x;"; fi
  PGOPTIONS="$2" pg_psql -d cost -At -c "\\timing on" \
    -c "DO \$\$ DECLARE x boolean; BEGIN FOR i IN 1..$N LOOP $stmt COMMIT; END LOOP; END \$\$" \
    | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
}
declare -A T=()
for _round in 1 2 3; do
  for mode in prepared simple; do
    for i in "${!CASES[@]}"; do
      IFS='|' read -r _ settings expr <<<"${CASES[$i]}"
      T[$mode.$i]+="$(run "$mode" "$settings" "$expr") "
    done
  done
done
printf '| statement | prepared (µs) | simple (µs) |\n|---|---|---|\n'
for i in "${!CASES[@]}"; do
  IFS='|' read -r label _ _ <<<"${CASES[$i]}"
  med() { tr ' ' '\n' <<<"$1" | grep . | sort -n | sed -n 2p | awk -v n="$N" '{ printf "%.1f", $1 * 1000 / n }'; }
  printf '| %s | %s | %s |\n' "$label" "$(med "${T[prepared.$i]}")" "$(med "${T[simple.$i]}")"
done
