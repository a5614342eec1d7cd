#!/usr/bin/env bash
# psql through the proxy (libpq, simple protocol): rows, pin, refusal, bad token.
# Run by tests/drivers/run.sh (environment: PGTP_HOST PGTP_PORT PGTP_DB TOKEN_A
# TOKEN_B ORG_A USER_A ORG_B USER_B).
set -uo pipefail
fails=0
expect() { # what expected actual
  if [ "$2" == "$3" ]; then echo "ok: $1"
  else echo "FAIL: $1"; echo "  expected: $(printf '%q' "$2")"; echo "  got:      $(printf '%q' "$3")"; fails=$((fails + 1)); fi
}
as() { # token psql-args... ; output and errors, no psqlrc, unaligned
  local token=$1; shift
  PGPASSWORD=$token psql -X -At -v ON_ERROR_STOP=0 -v VERBOSITY=sqlstate \
    "host=$PGTP_HOST port=$PGTP_PORT dbname=$PGTP_DB user=app sslmode=disable" "$@" 2>&1
}
ROWS="SELECT agent_id || ' ' || organization_id FROM agent_instances ORDER BY agent_id"
expect "tenant A sees exactly its agent_instances" \
  "agent-a-only $ORG_A
agent-shared $ORG_A" "$(as "$TOKEN_A" -c "$ROWS")"
expect "tenant B sees exactly its agent_instances" \
  "agent-b-only $ORG_B
agent-shared $ORG_B" "$(as "$TOKEN_B" -c "$ROWS")"
expect "tenant A: no row of B by key, even naming B's organization" "0" \
  "$(as "$TOKEN_A" -c "SELECT count(*) FROM agent_instances WHERE organization_id = '$ORG_B' OR id = 'bbbbbbbb-0002-4000-8000-000000000001'")"

PIN="SELECT current_setting('app.current_organization_id') || ' ' || current_setting('app.current_user_id')"
expect "pin intact after RESET ALL and DISCARD ALL; SET of the pin refused 42501" \
  "$ORG_A $USER_A
RESET
$ORG_A $USER_A
DISCARD ALL
$ORG_A $USER_A
ERROR:  42501
$ORG_A $USER_A
agent-a-only $ORG_A
agent-shared $ORG_A" \
  "$(as "$TOKEN_A" -c "$PIN" -c "RESET ALL" -c "$PIN" -c "DISCARD ALL" -c "$PIN" \
      -c "SET app.current_organization_id = '$ORG_B'" -c "$PIN" -c "$ROWS")"

out=$(PGPASSWORD=not-a-token psql -X -At -c "SELECT 1" \
  "host=$PGTP_HOST port=$PGTP_PORT dbname=$PGTP_DB user=app sslmode=disable" 2>&1); rc=$?
expect "wrong password: psql exits 2" 2 "$rc"
case "$out" in *"FATAL:  password authentication failed: the password is not a JWT"*)
    echo "ok: wrong password: the proxy's FATAL message" ;;
  *) echo "FAIL: wrong password: not the proxy's FATAL message: $out"; fails=$((fails + 1)) ;; esac
[ "$fails" = 0 ]
