"""psycopg 3 (and psycopg_pool) through the proxy. Run by tests/drivers/run.sh."""
import psycopg
import psycopg_pool
from psycopg import errors

from checks import DB, HOST, ORG, PIN_SQL, PORT, ROWS, ROWS_SQL, TOKEN, expect, finish, pin


def conninfo(tenant, password=None):
    return psycopg.conninfo.make_conninfo(
        host=HOST, port=PORT, dbname=DB, user="app", sslmode="disable",
        password=password if password is not None else TOKEN[tenant])


def tuples(rows):
    return [tuple(r) for r in rows]


print(f"psycopg {psycopg.__version__}, libpq {psycopg.pq.version()}, psycopg_pool {psycopg_pool.__version__}")

for t in ("A", "B"):
    with psycopg.connect(conninfo(t), autocommit=True) as conn:
        expect(f"tenant {t}: exactly its rows", ROWS[t], tuples(conn.execute(ROWS_SQL).fetchall()))
        other = "B" if t == "A" else "A"
        # A bound parameter (extended protocol) naming the other organization finds nothing.
        expect(f"tenant {t}: none of {other}'s rows by parameter", (0,), conn.execute(
            "SELECT count(*) FROM agent_instances WHERE organization_id = %s", (ORG[other],)).fetchone())
        expect(f"tenant {t}: pinned", pin(t), conn.execute(PIN_SQL).fetchone())
        conn.execute("RESET ALL")
        expect(f"tenant {t}: pinned after RESET ALL", pin(t), conn.execute(PIN_SQL).fetchone())
        conn.execute("DISCARD ALL")
        expect(f"tenant {t}: pinned after DISCARD ALL", pin(t), conn.execute(PIN_SQL).fetchone())
        try:
            conn.execute("SET app.current_organization_id = %s" % psycopg.sql.quote(ORG[other]))
            expect(f"tenant {t}: SET of the pin refused", "42501", "no error")
        except psycopg.Error as e:
            expect(f"tenant {t}: SET of the pin refused", ("42501", errors.InsufficientPrivilege),
                   (e.sqlstate, type(e)))
        expect(f"tenant {t}: pinned after the refused SET", pin(t), conn.execute(PIN_SQL).fetchone())
        # Server-side prepared statement (psycopg prepares after prepare_threshold uses).
        for _ in range(3):
            got = conn.execute("SELECT count(*) FROM agent_instances WHERE organization_id = %s",
                               (ORG[t],), prepare=True).fetchone()
        expect(f"tenant {t}: prepared statement sees its 2 rows", (2,), got)

try:
    psycopg.connect(conninfo("A", password="not-a-token")).close()
    expect("wrong password refused", "28P01", "connected")
except psycopg.OperationalError as e:
    expect("wrong password refused by the proxy",
           True, "password authentication failed: the password is not a JWT" in str(e))

# The pool's reset path: a connection handed back inside a failed transaction,
# with a session setting changed, is rolled back by the pool and then reset by
# the pool's reset callback (DISCARD ALL, as the psycopg_pool docs suggest); the
# next borrower gets the same backend, clean and still pinned.
with psycopg_pool.ConnectionPool(conninfo("A"), min_size=1, max_size=1, open=True,
                                  kwargs={"autocommit": True},
                                  reset=lambda c: c.execute("DISCARD ALL")) as pool:
    with pool.connection() as conn:
        pid = conn.info.backend_pid
        default_app_name = conn.execute("SHOW application_name").fetchone()[0]
        conn.execute("SET application_name = 'dirty'")
        conn.execute("BEGIN")
        try:
            conn.execute("SET app.current_organization_id = %s" % psycopg.sql.quote(ORG["B"]))
            expect("pool: refused SET inside a transaction", "42501", "no error")
        except psycopg.Error as e:
            expect("pool: refused SET inside a transaction", "42501", e.sqlstate)
        expect("pool: connection left in a failed transaction",
               psycopg.pq.TransactionStatus.INERROR, conn.info.transaction_status)
        # Handed back dirty on purpose: the pool must clean it.
    with pool.connection() as conn:
        expect("pool: same backend reused", pid, conn.info.backend_pid)
        expect("pool: transaction rolled back on return", psycopg.pq.TransactionStatus.IDLE,
               conn.info.transaction_status)
        expect("pool: reset callback restored application_name", (default_app_name,),
               conn.execute("SHOW application_name").fetchone())
        expect("pool: pinned after reset", pin("A"), conn.execute(PIN_SQL).fetchone())
        expect("pool: exactly tenant A's rows after reset", ROWS["A"], tuples(conn.execute(ROWS_SQL).fetchall()))

finish()
