"""Shared assertions of the Python driver programs (psycopg_test.py, asyncpg_test.py)."""
import os
import sys

HOST = os.environ["PGTP_HOST"]
PORT = int(os.environ["PGTP_PORT"])
DB = os.environ["PGTP_DB"]
TOKEN = {"A": os.environ["TOKEN_A"], "B": os.environ["TOKEN_B"]}
ORG = {"A": os.environ["ORG_A"], "B": os.environ["ORG_B"]}
USER = {"A": os.environ["USER_A"], "B": os.environ["USER_B"]}
# Exactly the demo seed's agent_instances per tenant (sql/demo/seed.sql).
ROWS = {
    "A": [("agent-a-only", ORG["A"]), ("agent-shared", ORG["A"])],
    "B": [("agent-b-only", ORG["B"]), ("agent-shared", ORG["B"])],
}
ROWS_SQL = "SELECT agent_id, organization_id::text FROM agent_instances ORDER BY agent_id"
PIN_SQL = ("SELECT current_setting('app.current_organization_id'), "
           "current_setting('app.current_user_id')")

failures = 0


def expect(what, expected, got):
    global failures
    if expected == got:
        print(f"ok: {what}")
    else:
        failures += 1
        print(f"FAIL: {what}\n  expected: {expected!r}\n  got:      {got!r}")


def pin(tenant):
    return (ORG[tenant], USER[tenant])


def finish():
    print(f"{failures} assertion(s) failed" if failures else "all assertions passed")
    sys.exit(1 if failures else 0)
