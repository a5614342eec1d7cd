#!/usr/bin/env python3
"""Many tenants' sessions at once through a transaction-pooled proxy.

Opens --sessions client sessions through the proxy (asyncpg), session i
with the token of organization i mod N (the --tokens file: one
"organization,token" per line), keeps all of them open, then has every
session run the same query on its tenant's rows (--queries times; every
second one inside an explicit transaction) and checks every row it gets:
the organization must be the session's own and the row count the seeded one.
Meanwhile it samples, every 50 ms, how many backends the login role has in
pg_stat_activity (over the cluster's Unix socket, as the superuser) and the
proxy's pgtp_pool_backends gauge. Prints one JSON object.

Used by benches/pool-tenants.sh (sourced by benches/proxy-overhead.sh --then).
"""

import argparse
import asyncio
import json
import time
import urllib.request

import asyncpg

QUERY = "SELECT organization_id::text, agent_id FROM agent_instances ORDER BY agent_id"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--database", required=True)
    p.add_argument("--tokens", required=True, help="file of organization,token lines")
    p.add_argument("--sessions", type=int, default=10000)
    p.add_argument("--rows-per-org", type=int, required=True, help="rows the query must return per session")
    p.add_argument("--queries", type=int, default=2, help="queries per session")
    p.add_argument("--connect-concurrency", type=int, default=200)
    p.add_argument("--pg-socket-dir", required=True)
    p.add_argument("--pg-port", type=int, required=True)
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--login-role", required=True)
    p.add_argument("--metrics-url", required=True)
    p.add_argument("--timeout", type=float, default=600, help="bound on the whole test, seconds")
    return p.parse_args()


def pool_backends(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("pgtp_pool_backends "):
                return int(float(line.split()[1]))
    return None


class Sampler:
    """Peak backends of the login role (pg_stat_activity) and of the pool gauge."""

    def __init__(self, args):
        self.args = args
        self.peak_activity = 0
        self.peak_gauge = 0
        self.samples = 0
        self.stop = asyncio.Event()

    async def run(self):
        a = self.args
        conn = await asyncpg.connect(host=a.pg_socket_dir, port=a.pg_port, user=a.pg_user, database="postgres")
        loop = asyncio.get_running_loop()
        try:
            while not self.stop.is_set():
                n = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", a.login_role
                )
                self.peak_activity = max(self.peak_activity, n)
                try:
                    g = await loop.run_in_executor(None, pool_backends, a.metrics_url)
                    if g is not None:
                        self.peak_gauge = max(self.peak_gauge, g)
                except OSError:
                    pass
                self.samples += 1
                try:
                    await asyncio.wait_for(self.stop.wait(), 0.05)
                except asyncio.TimeoutError:
                    pass
        finally:
            await conn.close()


async def main():
    a = parse_args()
    orgs = []
    with open(a.tokens) as f:
        for line in f:
            line = line.strip()
            if line:
                org, token = line.split(",", 1)
                orgs.append((org, token))
    sessions = [orgs[i % len(orgs)] for i in range(a.sessions)]
    errors = {}
    cross_rows = 0
    wrong_count = 0
    rows_seen = 0
    queries_ok = 0

    def error(kind, e):
        key = f"{kind}: {type(e).__name__}: {str(e)[:160]}"
        errors[key] = errors.get(key, 0) + 1

    sampler = Sampler(a)
    sampler_task = asyncio.create_task(sampler.run())
    gate = asyncio.Semaphore(a.connect_concurrency)
    connected = [None] * a.sessions

    async def connect(i):
        org, token = sessions[i]
        async with gate:
            try:
                connected[i] = await asyncpg.connect(
                    host=a.host, port=a.port, user="app", password=token, database=a.database,
                    ssl=False, timeout=120,
                )
            except Exception as e:  # noqa: BLE001 - every failure is counted
                error("connect", e)

    async def work(i):
        nonlocal cross_rows, wrong_count, rows_seen, queries_ok
        conn = connected[i]
        if conn is None:
            return
        org = sessions[i][0]
        for q in range(a.queries):
            try:
                if q % 2 == 1:
                    async with conn.transaction():
                        rows = await conn.fetch(QUERY)
                else:
                    rows = await conn.fetch(QUERY)
            except Exception as e:  # noqa: BLE001
                error("query", e)
                continue
            queries_ok += 1
            rows_seen += len(rows)
            foreign = sum(1 for r in rows if r[0] != org)
            cross_rows += foreign
            if len(rows) != a.rows_per_org:
                wrong_count += 1

    async def close(i):
        conn = connected[i]
        if conn is not None:
            try:
                await conn.close(timeout=30)
            except Exception as e:  # noqa: BLE001
                error("close", e)

    t0 = time.monotonic()
    await asyncio.gather(*(connect(i) for i in range(a.sessions)))
    t1 = time.monotonic()
    open_sessions = sum(1 for c in connected if c is not None)
    await asyncio.gather(*(work(i) for i in range(a.sessions)))
    t2 = time.monotonic()
    await asyncio.gather(*(close(i) for i in range(a.sessions)))
    t3 = time.monotonic()
    sampler.stop.set()
    await sampler_task

    print(json.dumps({
        "sessions": a.sessions,
        "organizations": len(orgs),
        "open_at_once": open_sessions,
        "queries_per_session": a.queries,
        "queries_ok": queries_ok,
        "rows_seen": rows_seen,
        "cross_tenant_rows": cross_rows,
        "wrong_row_count": wrong_count,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "peak_backends_activity": sampler.peak_activity,
        "peak_backends_gauge": sampler.peak_gauge,
        "samples": sampler.samples,
        "connect_s": round(t1 - t0, 2),
        "queries_s": round(t2 - t1, 2),
        "close_s": round(t3 - t2, 2),
        "total_s": round(t3 - t0, 2),
    }))


def run():
    args = parse_args()
    asyncio.run(asyncio.wait_for(main(), args.timeout))


if __name__ == "__main__":
    run()
