"""asyncpg through the proxy, with a pool (asyncpg.create_pool). Run by tests/drivers/run.sh."""
import asyncio
import os

import asyncpg

from checks import DB, HOST, ORG, PIN_SQL, PORT, ROWS, ROWS_SQL, TOKEN, expect, finish, pin


def params(tenant, password=None):
    return dict(host=HOST, port=PORT, database=DB, user="app", ssl=False,
                password=password if password is not None else TOKEN[tenant])


def tuples(rows):
    return [tuple(r) for r in rows]


async def refused_set(conn, what, org):
    try:
        await conn.execute(f"SET app.current_organization_id = '{org}'")
        expect(what, "42501", "no error")
    except asyncpg.PostgresError as e:
        expect(what, ("42501", asyncpg.exceptions.InsufficientPrivilegeError), (e.sqlstate, type(e)))


async def main():
    print(f"asyncpg {asyncpg.__version__}")
    for t in ("A", "B"):
        other = "B" if t == "A" else "A"
        conn = await asyncpg.connect(**params(t))
        try:
            expect(f"tenant {t}: exactly its rows", ROWS[t], tuples(await conn.fetch(ROWS_SQL)))
            # asyncpg always uses the extended protocol with named prepared statements.
            expect(f"tenant {t}: none of {other}'s rows by parameter", 0, await conn.fetchval(
                "SELECT count(*) FROM agent_instances WHERE organization_id = $1::uuid", ORG[other]))
            expect(f"tenant {t}: pinned", pin(t), tuple(await conn.fetchrow(PIN_SQL)))
            await conn.execute("RESET ALL")
            expect(f"tenant {t}: pinned after RESET ALL", pin(t), tuple(await conn.fetchrow(PIN_SQL)))
            await conn.execute("DISCARD ALL")
            expect(f"tenant {t}: pinned after DISCARD ALL", pin(t),
                   tuple(await conn.fetchrow(PIN_SQL + " AS after_discard")))
            await refused_set(conn, f"tenant {t}: SET of the pin refused", ORG[other])
            expect(f"tenant {t}: pinned after the refused SET", pin(t),
                   tuple(await conn.fetchrow(PIN_SQL + " AS after_refusal")))
        finally:
            await conn.close()

    try:
        await (await asyncpg.connect(**params("A", password="not-a-token"))).close()
        expect("wrong password refused", "28P01", "connected")
    except asyncpg.PostgresError as e:
        expect("wrong password refused by the proxy", ("28P01", asyncpg.exceptions.InvalidPasswordError),
               (e.sqlstate, type(e)))

    # The pool's reset path: on release asyncpg runs its reset query
    # (pg_advisory_unlock_all(), CLOSE ALL, UNLISTEN *, RESET ALL) and rolls back
    # an open transaction; the next borrower gets the same backend, clean and pinned.
    pool = await asyncpg.create_pool(**params("A"), min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
            default_app_name = await conn.fetchval("SHOW application_name")
            await conn.execute("SET application_name = 'dirty'")
            if os.environ.get("PGTP_POOL_MODE") == "transaction":
                # A LISTEN would stay on a shared connection: refused.
                try:
                    await conn.execute("LISTEN pool_chan")
                    expect("pool: LISTEN refused in transaction pool mode", "0A000", "ran")
                except asyncpg.PostgresError as e:
                    expect("pool: LISTEN refused in transaction pool mode", "0A000", e.sqlstate)
            else:
                await conn.execute("LISTEN pool_chan")
            tr = conn.transaction()
            await tr.start()
            await refused_set(conn, "pool: refused SET inside a transaction", ORG["B"])
            # Handed back inside the failed transaction on purpose: the pool must clean it.
        async with pool.acquire() as conn:
            expect("pool: same backend reused", pid, conn.get_server_pid())
            expect("pool: not in a transaction after release", False, conn.is_in_transaction())
            expect("pool: reset restored application_name", default_app_name,
                   await conn.fetchval("SHOW application_name"))
            expect("pool: reset ran UNLISTEN *", [], [r[0] for r in await conn.fetch(
                "SELECT pg_listening_channels()")])
            expect("pool: pinned after reset", pin("A"), tuple(await conn.fetchrow(PIN_SQL)))
            expect("pool: exactly tenant A's rows after reset", ROWS["A"], tuples(await conn.fetch(ROWS_SQL)))
        # Six concurrent borrowers queue on the pool; each sees only its tenant.
        results = await asyncio.gather(*(pool.fetch(ROWS_SQL) for _ in range(6)))
        expect("pool: 6 concurrent pool.fetch(), each exactly tenant A's rows", [ROWS["A"]] * 6,
               [tuples(r) for r in results])
    finally:
        await pool.close()


try:
    asyncio.run(main())
except Exception as e:  # report the driver's error as the user sees it, without a traceback
    expect("no unexpected error", None, f"{type(e).__name__} (SQLSTATE {getattr(e, 'sqlstate', None)}): {e}")
finish()
