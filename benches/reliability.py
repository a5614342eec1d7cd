"""Soak, churn and restart driver for benches/reliability.sh (asyncpg clients).

Not run on its own: reliability.sh starts PostgreSQL and the proxy and passes
everything through the environment:
  RB_PORT           the proxy's port on 127.0.0.1
  RB_PROXY_PID      the proxy's pid (RSS from /proc/PID/status, fds from /proc/PID/fd)
  RB_TOKENS         file: one "ORG TOKEN" line per organization
  RB_ROWS           agent_instances rows per organization
  RB_RESTART_CMD    shell command restarting PostgreSQL (pg_ctl -m fast -w restart)
  RB_RESULTS        JSON results are written here
and the phase parameters as command-line flags (see main()).

Every check that counts a failure is also exercised once by a probe that must
make it count (cross-tenant rows, unexpected SQLSTATE, refusal, cancel, growth
limits); a probe that does not fire fails the run.
"""
import argparse
import asyncio
import collections
import json
import os
import random
import struct
import sys
import time

import asyncpg

PORT = int(os.environ["RB_PORT"])
PROXY_PID = int(os.environ["RB_PROXY_PID"])
ROWS = int(os.environ["RB_ROWS"])
TOKENS = {}
for line in open(os.environ["RB_TOKENS"]):
    org, tok = line.split()
    TOKENS[org] = tok
ORGS = sorted(TOKENS)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def proc_stats():
    """(RSS KiB, open fds, threads) of the proxy."""
    rss = threads = None
    with open(f"/proc/{PROXY_PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return {"rss_kib": rss, "fds": len(os.listdir(f"/proc/{PROXY_PID}/fd")), "threads": threads}


async def settled_stats(fds_at_most, timeout=10.0):
    """Stats once the proxy's fd count has dropped to fds_at_most (closed
    sessions are torn down asynchronously), or whatever it is after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        s = proc_stats()
        if s["fds"] <= fds_at_most or time.monotonic() > deadline:
            return s
        await asyncio.sleep(0.2)


def connect(org, **kw):
    return asyncpg.connect(host="127.0.0.1", port=PORT, user="app", database="app",
                           password=TOKENS[org], ssl=False, timeout=30,
                           statement_cache_size=16, **kw)


def other_org(org):
    return ORGS[(ORGS.index(org) + 1) % len(ORGS)]


class Tally:
    """Counters of one phase: operations by kind, unexpected outcomes by key,
    cross-tenant rows."""

    def __init__(self):
        self.ops = collections.Counter()
        self.errors = collections.Counter()
        self.cross_tenant = 0
        self.examples = {}

    def error(self, key, detail=""):
        self.errors[key] += 1
        self.examples.setdefault(key, detail[:300])

    def outcome(self, exc):
        """Key of an exception: SQLSTATE for server errors, class otherwise."""
        if isinstance(exc, asyncpg.PostgresError):
            return f"SQLSTATE {exc.sqlstate}"
        return type(exc).__name__

    def check_rows(self, org, orgs_read):
        """Every organization_id read must be org's; returns the foreign count."""
        bad = sum(1 for o in orgs_read if str(o) != org)
        self.cross_tenant += bad
        return bad

    def check_tag(self, org, tag, expected):
        """A simple-protocol SELECT's command tag 'SELECT n' against n expected."""
        n = int(tag.split()[-1]) if tag.startswith("SELECT ") else -1
        if n != expected:
            if expected == 0 and n > 0:
                self.cross_tenant += n
            else:
                self.error("wrong row count", f"{org}: {tag!r}, expected SELECT {expected}")
        return n

    async def expect_sqlstate(self, what, coro, sqlstate):
        try:
            await coro
        except asyncpg.PostgresError as e:
            if e.sqlstate == sqlstate:
                self.ops[what] += 1
                return True
            self.error(f"{what}: SQLSTATE {e.sqlstate} (expected {sqlstate})", str(e))
            return False
        except Exception as e:  # noqa: BLE001 - every other outcome is an error of its own kind
            self.error(f"{what}: {type(e).__name__} (expected {sqlstate})", str(e))
            return False
        self.error(f"{what}: no error (expected {sqlstate})")
        return False

    def as_dict(self):
        return {"ops": dict(self.ops), "errors": dict(self.errors),
                "cross_tenant_rows": self.cross_tenant, "error_examples": self.examples}


async def send_cancel(pid, secret):
    """A CancelRequest to the proxy on a connection of its own."""
    r, w = await asyncio.open_connection("127.0.0.1", PORT)
    w.write(struct.pack("!llll", 16, 80877102, pid, secret))
    await w.drain()
    try:
        await asyncio.wait_for(r.read(), 5)  # the proxy closes it
    finally:
        w.close()


class Wire:
    """A minimal protocol-3 client (simple query only) that records every
    message, so the restart phase sees exactly what the proxy sends: asyncpg
    turns a FATAL that ends the connection into its own client-side
    ConnectionDoesNotExistError (08003), directly against PostgreSQL too."""

    @classmethod
    async def connect(cls, org):
        self = cls()
        self.r, self.w = await asyncio.open_connection("127.0.0.1", PORT)
        body = b"user\0app\0database\0app\0\0"
        self.w.write(struct.pack("!ii", 8 + len(body), 196608) + body)
        t, _ = await self.read()
        if t != b"R":
            raise RuntimeError(f"wire: expected an authentication request, got {t!r}")
        pw = TOKENS[org].encode() + b"\0"
        self.w.write(b"p" + struct.pack("!i", 4 + len(pw)) + pw)
        while True:
            t, b = await self.read()
            if t == b"E":
                raise RuntimeError(f"wire: login refused: {self.fields(b)}")
            if t == b"Z":
                return self

    async def read(self):
        h = await self.r.readexactly(5)
        n = struct.unpack("!i", h[1:])[0]
        return h[:1], await self.r.readexactly(n - 4)

    @staticmethod
    def fields(b):
        return {chr(f[0]): f[1:].decode(errors="replace") for f in b.split(b"\0") if f}

    def query(self, sql):
        q = sql.encode() + b"\0"
        self.w.write(b"Q" + struct.pack("!i", 4 + len(q)) + q)

    async def until_close(self, timeout):
        """Messages up to EOF: 'E <severity> <SQLSTATE> <message>' for
        errors, the type letter for others, then 'close'."""
        seen = []
        try:
            while True:
                t, b = await asyncio.wait_for(self.read(), timeout)
                if t == b"E":
                    f = self.fields(b)
                    seen.append(f"ErrorResponse {f.get('V', f.get('S'))} {f.get('C')} \"{f.get('M')}\"")
                elif t not in (b"T", b"N", b"S"):
                    seen.append(t.decode())
        except asyncio.IncompleteReadError:
            seen.append("close")
        except asyncio.TimeoutError:
            seen.append(f"no close within {timeout} s")
        except OSError as e:
            seen.append(f"{type(e).__name__}")
        self.w.close()
        return ", ".join(seen)


# Statements of the mixed workload.
SIMPLE_FOREIGN = "SELECT 1 FROM agent_instances WHERE organization_id <> '{org}'::uuid"
SIMPLE_ALL = "SELECT 1 FROM agent_instances"
EXT_BY_STATUS = "SELECT organization_id, id FROM agent_instances WHERE status = $1"
EXT_ONE = "SELECT organization_id, agent_id FROM agent_instances WHERE id = $1"
TX_UPDATE = ("UPDATE agent_instances SET last_heartbeat_at = now() WHERE agent_id = $1 "
             "RETURNING organization_id")
PIN = "SELECT current_setting('app.current_organization_id')"
STATUSES = ["running", "stopped", "pending", "failed", "archived"]


async def cancel_sleep(t, conn, secret=None):
    """pg_sleep(5) cancelled through the proxy after 0.2 s: exactly 57014.
    With a wrong secret the cancel must be ignored (the query completes)."""
    pid = conn.get_server_pid()
    key = conn._protocol.backend_secret if secret is None else secret
    secs = 5 if secret is None else 0.6
    task = asyncio.ensure_future(conn.fetchval(f"SELECT pg_sleep({secs})"))
    await asyncio.sleep(0.2)
    # A cancel that reaches the backend before the statement does is void
    # (PostgreSQL cancels only what is running), so on a loaded machine it is
    # sent again, as interactive clients do, while the statement is still out.
    for attempt in range(5):
        await send_cancel(pid, key)
        done, _ = await asyncio.wait([task], timeout=1.0)
        if done:
            break
        t.ops["cancel re-sent (statement still running after 1 s)"] += 1
    return await t.expect_sqlstate("cancel", task, "57014")


async def one_iteration(t, conn, org, it, stmts, rng):
    kind = rng.random()
    if kind < 0.35:  # simple protocol: no foreign row, exactly this org's rows
        t.check_tag(org, await conn.execute(SIMPLE_FOREIGN.format(org=org)), 0)
        t.check_tag(org, await conn.execute(SIMPLE_ALL), ROWS)
        t.ops["simple"] += 2
    elif kind < 0.70:  # extended protocol, prepared statements reused
        rows = await stmts["by_status"].fetch(rng.choice(STATUSES))
        t.check_rows(org, (r[0] for r in rows))
        t.ops["extended"] += 1
    elif kind < 0.95:  # explicit transaction, commit or rollback
        n = rng.randint(1, ROWS)
        async with conn.transaction():
            got = await conn.fetch(TX_UPDATE, f"agent-{n}")
            t.check_rows(org, (r[0] for r in got))
            if len(got) != 1:
                t.error("wrong row count", f"{org}: UPDATE agent-{n} returned {len(got)} rows")
            rows = await conn.fetch("SELECT organization_id FROM users")
            t.check_rows(org, (r[0] for r in rows))
        t.ops["transaction"] += 1
    elif kind < 0.975:  # refused: the pin cannot be changed, and stays
        await t.expect_sqlstate("refused SET", conn.execute(
            f"SET app.current_organization_id = '{other_org(org)}'"), "42501")
        pin = await conn.fetchval(PIN)
        if pin != org:
            t.cross_tenant += 1
            t.error("pin changed", f"{org}: pin reads {pin}")
    else:  # cancel
        await cancel_sleep(t, conn)
        # the session is usable right after its cancelled statement
        t.check_tag(org, await conn.execute(SIMPLE_FOREIGN.format(org=org)), 0)


async def probes(t_soak):
    """Each check must fire when it should: run each against a wrong
    expectation on a Tally of its own and demand that it counted."""
    org, other = ORGS[0], ORGS[1]
    results = {}
    conn = await connect(org)
    try:
        p = Tally()  # simple-protocol tag check with another org's id: its rows are "foreign"
        p.check_tag(other, await conn.execute(SIMPLE_FOREIGN.format(org=other)), 0)
        results["simple-protocol cross-tenant check counts rows read as another org"] = p.cross_tenant == ROWS
        p = Tally()  # row check with another org's id
        rows = await conn.fetch(EXT_BY_STATUS, "running")
        p.check_rows(other, (r[0] for r in rows))
        results["row check counts rows read as another org"] = p.cross_tenant == len(rows) > 0
        p = Tally()  # unexpected SQLSTATE is counted by code
        await p.expect_sqlstate("probe", conn.execute("SELECT 1/0"), "42501")
        results["unexpected SQLSTATE counted (22012 where 42501 expected)"] = \
            dict(p.errors) == {"probe: SQLSTATE 22012 (expected 42501)": 1}
        p = Tally()  # a refusal that does not come is counted
        await p.expect_sqlstate("probe", conn.execute("SET application_name = 'probe'"), "42501")
        results["missing refusal counted (allowed SET where 42501 expected)"] = \
            dict(p.errors) == {"probe: no error (expected 42501)": 1}
        p = Tally()  # a cancel with a wrong key must not cancel: counted as missing 57014
        await cancel_sleep(p, conn, secret=(conn._protocol.backend_secret ^ 0x5A5A5A5A))
        results["cancel with a wrong key ignored (query completed, counted as missing 57014)"] = \
            dict(p.errors) == {"cancel: no error (expected 57014)": 1}
        p = Tally()  # wrong row count
        p.check_tag(org, await conn.execute(SIMPLE_ALL), ROWS + 1)
        results["row count check counts a wrong count"] = sum(p.errors.values()) == 1
    finally:
        await conn.close()
    results["growth check fires on +11% RSS"] = not growth_ok({"rss_kib": 1000, "fds": 10},
                                                              {"rss_kib": 1110, "fds": 10}, 10, 5)[0]
    results["growth check fires on +6 fds"] = not growth_ok({"rss_kib": 1000, "fds": 10},
                                                            {"rss_kib": 1000, "fds": 16}, 10, 5)[0]
    for k, v in results.items():
        log(f"probe {'fired' if v else 'DID NOT FIRE'}: {k}")
    return results


def growth_ok(before, after, rss_pct, fd_slack):
    rss_growth = (after["rss_kib"] - before["rss_kib"]) * 100.0 / before["rss_kib"]
    fd_growth = after["fds"] - before["fds"]
    return rss_growth <= rss_pct and fd_growth <= fd_slack, round(rss_growth, 1), fd_growth


# ---------------------------------------------------------------- soak
async def soak(a):
    t = Tally()
    samples = []
    base = proc_stats()
    samples.append(("idle (before sessions)", 0, base))
    log(f"soak: connecting {a.sessions} sessions over {len(ORGS)} organizations")
    sem = asyncio.Semaphore(32)
    conns = []

    async def open_one(i):
        org = ORGS[i % len(ORGS)]
        async with sem:
            for attempt in range(3):
                try:
                    c = await connect(org)
                    break
                except Exception as e:  # noqa: BLE001
                    t.error(f"connect: {t.outcome(e)}", str(e))
                    await asyncio.sleep(1)
            else:
                return None
        conns.append((org, c))

    t0 = time.monotonic()
    await asyncio.gather(*(open_one(i) for i in range(a.sessions)))
    up_secs = time.monotonic() - t0
    log(f"soak: {len(conns)} sessions up in {up_secs:.1f}s")
    start = proc_stats()
    samples.append(("start (all sessions up)", round(time.monotonic() - t0), start))

    stop_at = time.monotonic() + a.soak_secs
    stop = asyncio.Event()
    latencies = []

    async def session(idx, org, conn):
        rng = random.Random(idx)
        stmts = {"by_status": await conn.prepare(EXT_BY_STATUS)}
        it = 0
        await asyncio.sleep(rng.random() * a.think)
        while not stop.is_set():
            it += 1
            s = time.monotonic()
            try:
                await asyncio.wait_for(one_iteration(t, conn, org, it, stmts, rng), 30)
            except Exception as e:  # noqa: BLE001
                t.error(f"workload: {t.outcome(e)}", f"{org}: {e}")
                if conn.is_closed():
                    return
            if idx % 10 == 0:
                latencies.append(time.monotonic() - s)
            await asyncio.sleep(rng.uniform(0.5, 1.5) * a.think)

    tasks = [asyncio.ensure_future(session(i, org, c)) for i, (org, c) in enumerate(conns)]
    probe = await probes(t)
    warm = None
    mid_done = False
    next_sample = time.monotonic() + a.sample_secs
    while time.monotonic() < stop_at:
        await asyncio.sleep(min(1.0, max(0.0, stop_at - time.monotonic())))
        now = time.monotonic()
        el = round(now - t0)
        if warm is None and now - (stop_at - a.soak_secs) >= a.soak_secs * 0.2:
            warm = proc_stats()
            samples.append(("after warm-up (20 %)", el, warm))
        if not mid_done and now >= stop_at - a.soak_secs / 2:
            samples.append(("middle", el, proc_stats()))
            mid_done = True
        elif now >= next_sample:
            samples.append(("", el, proc_stats()))
        if now >= next_sample:
            next_sample = now + a.sample_secs
            ops = sum(t.ops.values())
            log(f"soak: {el}s, {ops} ops, {sum(t.errors.values())} errors, "
                f"{t.cross_tenant} cross-tenant rows, proxy {samples[-1][2]}")
    stop.set()
    await asyncio.gather(*tasks)
    end = proc_stats()
    samples.append(("end (sessions still open)", round(time.monotonic() - t0), end))
    closed = 0
    for _, c in conns:
        if c.is_closed():
            closed += 1
        else:
            await c.close()
    if closed:
        t.error("session closed during the soak", f"{closed} sessions")
    after = await settled_stats(base["fds"])
    samples.append(("after disconnect", round(time.monotonic() - t0), after))
    latencies.sort()
    ok_growth, rss_g, fd_g = growth_ok(warm or start, end, a.rss_pct, a.fd_slack)
    return {
        "sessions": a.sessions, "sessions_up": len(conns), "connect_secs": round(up_secs, 1),
        "secs": a.soak_secs, "orgs": len(ORGS), "tally": t.as_dict(), "probes": probe,
        "samples": samples, "rss_growth_pct_after_warmup": rss_g, "fd_growth_after_warmup": fd_g,
        "fds_back_to_baseline": after["fds"] - base["fds"], "growth_ok": ok_growth,
        "iteration_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "iteration_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1) if latencies else None,
    }


# ---------------------------------------------------------------- churn
async def churn(a):
    t = Tally()
    samples = []
    counter = {"n": 0}
    total = a.churn

    async def cycle(org):
        conn = await connect(org)
        try:
            rows = await conn.fetch("SELECT organization_id FROM agent_instances")
            t.check_rows(org, (r[0] for r in rows))
            if len(rows) != ROWS:
                t.error("wrong row count", f"{org}: {len(rows)} rows")
        finally:
            await conn.close()

    async def worker(w, n_cycles):
        rng = random.Random(w)
        for _ in range(n_cycles):
            org = rng.choice(ORGS)
            try:
                await asyncio.wait_for(cycle(org), 30)
                t.ops["cycle (incl. warm-up)"] += 1
            except Exception as e:  # noqa: BLE001
                t.error(f"cycle: {t.outcome(e)}", f"{org}: {e}")
            counter["n"] += 1

    warm_n = min(1000, max(total // 10, 1))
    log(f"churn: warm-up {warm_n} cycles")
    await asyncio.gather(*(worker(1000 + w, warm_n // a.concurrency + 1) for w in range(a.concurrency)))
    base = proc_stats()
    before = await settled_stats(base["fds"] - 1, timeout=3)  # let the last sockets close
    samples.append(("before (after warm-up)", 0, before))
    counter["n"] = 0
    t0 = time.monotonic()
    per = total // a.concurrency
    rest = total - per * a.concurrency
    workers = [asyncio.ensure_future(worker(w, per + (1 if w < rest else 0))) for w in range(a.concurrency)]
    step = max(total // 10, 1)
    next_mark = step
    while not all(w.done() for w in workers):
        await asyncio.sleep(0.5)
        if counter["n"] >= next_mark:
            s = proc_stats()
            samples.append((f"{counter['n']} cycles", round(time.monotonic() - t0), s))
            log(f"churn: {counter['n']}/{total} cycles, {sum(t.errors.values())} errors, proxy {s}")
            next_mark += step
    secs = time.monotonic() - t0
    after = await settled_stats(before["fds"])
    samples.append(("after", round(secs), after))
    ok_growth, rss_g, fd_g = growth_ok(before, after, a.rss_pct, a.fd_slack)
    return {"cycles": total, "concurrency": a.concurrency, "secs": round(secs, 1),
            "cycles_per_sec": round(total / secs, 1), "tally": t.as_dict(), "samples": samples,
            "rss_growth_pct": rss_g, "fd_growth": fd_g, "growth_ok": ok_growth}


# ---------------------------------------------------------------- restarts
async def restarts(a):
    t = Tally()
    outcomes = collections.Counter()   # (session state, outcome) -> count
    samples = []
    first_ok_ms = []
    cmd = os.environ["RB_RESTART_CMD"]

    # warm-up: one session in and out
    c = await connect(ORGS[0])
    await c.close()
    before = await settled_stats(proc_stats()["fds"], timeout=1)
    samples.append(("before", 0, before))
    t0 = time.monotonic()

    def describe(e):
        if isinstance(e, asyncpg.PostgresError):
            return f"{type(e).__name__} SQLSTATE {e.sqlstate}: {e}"
        return f"{type(e).__name__}: {e}"

    shutdown = f'ErrorResponse FATAL {a.expect_busy} "terminating connection due to administrator command", close'
    for i in range(a.restarts):
        # Four kinds of open session, round robin: a raw wire client running
        # pg_sleep(60), a raw wire client idle, asyncpg running pg_sleep(60),
        # asyncpg idle.
        wire_busy, wire_idle, busy, idle = [], [], [], []
        for j in range(a.restart_sessions):
            org = ORGS[(i + j) % len(ORGS)]
            try:
                if j % 4 < 2:
                    (wire_busy if j % 4 == 0 else wire_idle).append(await Wire.connect(org))
                else:
                    (busy if j % 4 == 2 else idle).append((org, await connect(org)))
            except Exception as e:  # noqa: BLE001
                t.error(f"connect before restart: {t.outcome(e)}", describe(e))
        for wc in wire_busy:
            wc.query("SELECT pg_sleep(60)")
        running = [asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(60)")) for _, conn in busy]
        await asyncio.sleep(0.3)
        rs = time.monotonic()
        wire_seen = [asyncio.ensure_future(wc.until_close(20)) for wc in wire_busy + wire_idle]
        proc = await asyncio.create_subprocess_shell(cmd, stdout=asyncio.subprocess.DEVNULL,
                                                     stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        if proc.returncode != 0:
            raise RuntimeError(f"restart {i + 1} failed: {err.decode()[-500:]}")
        # 0. raw wire sessions: exactly PostgreSQL's FATAL 57P01, then the close
        for k, fut in enumerate(wire_seen):
            state = "wire, running pg_sleep" if k < len(wire_busy) else "wire, idle"
            seen = await fut
            outcomes[(state, seen)] += 1
            if seen == shutdown:
                t.ops[f"{state}: FATAL {a.expect_busy} then close"] += 1
            else:
                t.error(f"{state}: not FATAL {a.expect_busy} then close", seen)
        # 1. asyncpg running a statement: it fails at once. asyncpg reports a
        #    FATAL that ends the connection as its own ConnectionDoesNotExistError
        #    (08003), exactly as it does directly against PostgreSQL.
        for fut, (org, conn) in zip(running, busy):
            try:
                await asyncio.wait_for(fut, 15)
                outcomes[("asyncpg, running pg_sleep", "completed (no error)")] += 1
                t.error("asyncpg busy session: no error")
            except asyncio.TimeoutError:
                outcomes[("asyncpg, running pg_sleep", "hung > 15 s after restart")] += 1
                t.error("asyncpg busy session: hang")
            except Exception as e:  # noqa: BLE001
                outcomes[("asyncpg, running pg_sleep", describe(e))] += 1
                if isinstance(e, asyncpg.ConnectionDoesNotExistError):
                    t.ops["asyncpg, running pg_sleep: ConnectionDoesNotExistError"] += 1
                else:
                    t.error(f"asyncpg busy session: {t.outcome(e)} (expected ConnectionDoesNotExistError)",
                            describe(e))
        # 2. asyncpg idle: its next statement fails at once (no hang, no success)
        for org, conn in idle:
            try:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), 15)
                outcomes[("asyncpg, idle", "next statement succeeded")] += 1
                t.error("asyncpg idle session: next statement succeeded after a restart")
            except asyncio.TimeoutError:
                outcomes[("asyncpg, idle", "next statement hung > 15 s")] += 1
                t.error("asyncpg idle session: hang")
            except Exception as e:  # noqa: BLE001
                outcomes[("asyncpg, idle", "next statement: " + describe(e))] += 1
                if isinstance(e, asyncpg.InterfaceError):
                    t.ops["asyncpg, idle: next statement InterfaceError (connection is closed)"] += 1
                else:
                    t.error(f"asyncpg idle session: {t.outcome(e)} (expected InterfaceError)", describe(e))
        for _, conn in busy + idle:
            conn.terminate()
        # 3. a new session right away, first attempt, checked rows
        org = ORGS[i % len(ORGS)]
        try:
            conn = await connect(org)
            rows = await conn.fetch("SELECT organization_id FROM agent_instances")
            t.check_rows(org, (r[0] for r in rows))
            if len(rows) != ROWS:
                t.error("wrong row count", f"{org}: {len(rows)}")
            await conn.close()
            first_ok_ms.append((time.monotonic() - rs) * 1000)
            t.ops["new session right after restart"] += 1
        except Exception as e:  # noqa: BLE001
            t.error(f"new session right after restart: {t.outcome(e)}", describe(e))
        if i == 0:  # the first restart is the warm-up: growth is measured from here
            warm = await settled_stats(before["fds"], timeout=3)
            samples.append(("after restart 1 (warm-up)", round(time.monotonic() - t0), warm))
        elif (i + 1) % max(a.restarts // 5, 1) == 0:
            s = await settled_stats(before["fds"], timeout=3)
            samples.append((f"after restart {i + 1}", round(time.monotonic() - t0), s))
            log(f"restarts: {i + 1}/{a.restarts}, {sum(t.errors.values())} errors, proxy {s}")
    after = await settled_stats(before["fds"])
    samples.append(("after", round(time.monotonic() - t0), after))
    ok_growth, rss_g, fd_g = growth_ok(warm, after, a.rss_pct, a.fd_slack)
    fd_g = max(fd_g, after["fds"] - before["fds"])
    first_ok_ms.sort()
    return {"restarts": a.restarts, "sessions_per_restart": a.restart_sessions,
            "secs": round(time.monotonic() - t0, 1), "tally": t.as_dict(), "samples": samples,
            "outcomes": [[k[0], k[1], v] for k, v in sorted(outcomes.items())],
            "restart_to_first_good_session_ms_p50": round(first_ok_ms[len(first_ok_ms) // 2]) if first_ok_ms else None,
            "restart_to_first_good_session_ms_max": round(first_ok_ms[-1]) if first_ok_ms else None,
            "rss_growth_pct": rss_g, "fd_growth": fd_g, "growth_ok": ok_growth}


# ---------------------------------------------------------------- report
def summary(res, a):
    out, failed = [], []

    def verdict(ok, what):
        if not ok:
            failed.append(what)
        return "ok" if ok else "**MISSED**"

    def tally_rows(name, r):
        tl = r["tally"]
        errs = sum(tl["errors"].values())
        out.append(f"| {name} | errors (target 0) | {errs} | {verdict(errs == 0, name + ' errors')} |")
        for k, v in sorted(tl["errors"].items()):
            out.append(f"| {name} | &nbsp;&nbsp;{k} | {v} | e.g. {tl['error_examples'].get(k, '')!s:.120} |")
        out.append(f"| {name} | cross-tenant rows (target 0) | {tl['cross_tenant_rows']} | "
                   f"{verdict(tl['cross_tenant_rows'] == 0, name + ' cross-tenant rows')} |")
        for k, v in sorted(tl["ops"].items()):
            out.append(f"| {name} | ops: {k} | {v} | |")

    def sample_rows(name, r):
        for label, secs, s in r["samples"]:
            if label:
                out.append(f"| {name} | proxy at {label} (t={secs}s) | RSS {s['rss_kib']} KiB, "
                           f"{s['fds']} fds, {s['threads']} threads | |")

    out.append("| phase | measure | value | verdict |")
    out.append("|---|---|---:|---|")
    if "soak" in res:
        r = res["soak"]
        out.append(f"| soak | sessions up / asked | {r['sessions_up']} / {r['sessions']} | "
                   f"{verdict(r['sessions_up'] == r['sessions'], 'soak sessions up')} |")
        out.append(f"| soak | duration, organizations | {r['secs']} s, {r['orgs']} | |")
        out.append(f"| soak | iteration latency p50 / p99 (incl. cancels) | {r['iteration_p50_ms']} / {r['iteration_p99_ms']} ms | |")
        tally_rows("soak", r)
        sample_rows("soak", r)
        out.append(f"| soak | RSS growth warm-up→end (limit {a.rss_pct} %) | {r['rss_growth_pct_after_warmup']} % | "
                   f"{verdict(r['rss_growth_pct_after_warmup'] <= a.rss_pct, 'soak RSS growth')} |")
        out.append(f"| soak | fd growth warm-up→end (limit {a.fd_slack}) | {r['fd_growth_after_warmup']} | "
                   f"{verdict(r['fd_growth_after_warmup'] <= a.fd_slack, 'soak fd growth')} |")
        out.append(f"| soak | fds after disconnect − before sessions (limit {a.fd_slack}) | {r['fds_back_to_baseline']} | "
                   f"{verdict(r['fds_back_to_baseline'] <= a.fd_slack, 'soak fds after disconnect')} |")
        for k, v in r["probes"].items():
            out.append(f"| probe | {k} | {'fired' if v else 'did not fire'} | {verdict(v, 'probe: ' + k)} |")
    if "churn" in res:
        r = res["churn"]
        out.append(f"| churn | cycles, concurrency, time | {r['cycles']}, {r['concurrency']}, {r['secs']} s "
                   f"({r['cycles_per_sec']}/s) | |")
        tally_rows("churn", r)
        sample_rows("churn", r)
        out.append(f"| churn | RSS growth after warm-up → end (limit {a.rss_pct} %) | {r['rss_growth_pct']} % | "
                   f"{verdict(r['rss_growth_pct'] <= a.rss_pct, 'churn RSS growth')} |")
        out.append(f"| churn | fd growth (limit {a.fd_slack}) | {r['fd_growth']} | "
                   f"{verdict(r['fd_growth'] <= a.fd_slack, 'churn fd growth')} |")
    if "restarts" in res:
        r = res["restarts"]
        out.append(f"| restarts | restarts × open sessions, time | {r['restarts']} × {r['sessions_per_restart']}, {r['secs']} s | |")
        for state, what, n in r["outcomes"]:
            out.append(f"| restarts | {state} session saw: {what} | {n} | |".replace("| restarts | wire", "| restarts | wire"))
        out.append(f"| restarts | restart begun → first good new session p50 / max | "
                   f"{r['restart_to_first_good_session_ms_p50']} / {r['restart_to_first_good_session_ms_max']} ms | |")
        tally_rows("restarts", r)
        sample_rows("restarts", r)
        out.append(f"| restarts | RSS growth after restart 1 → end (limit {a.rss_pct} %) | {r['rss_growth_pct']} % | "
                   f"{verdict(r['rss_growth_pct'] <= a.rss_pct, 'restarts RSS growth')} |")
        out.append(f"| restarts | fd growth before → end (limit {a.fd_slack}) | {r['fd_growth']} | "
                   f"{verdict(r['fd_growth'] <= a.fd_slack, 'restarts fd growth')} |")
    return "\n".join(out), failed


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--phases", default="soak churn restarts")
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--soak-secs", type=int, default=600)
    ap.add_argument("--think", type=float, default=1.0, help="mean pause between a session's statements, s")
    ap.add_argument("--sample-secs", type=int, default=30)
    ap.add_argument("--churn", type=int, default=100000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--restarts", type=int, default=100)
    ap.add_argument("--restart-sessions", type=int, default=20)
    ap.add_argument("--expect-busy", default="57P01")
    ap.add_argument("--rss-pct", type=float, default=10.0)
    ap.add_argument("--fd-slack", type=int, default=5)
    a = ap.parse_args()
    res = {}
    phases = a.phases.split()
    if "soak" in phases:
        res["soak"] = await soak(a)
    if "churn" in phases:
        res["churn"] = await churn(a)
    if "restarts" in phases:
        res["restarts"] = await restarts(a)
    table, failed = summary(res, a)
    res["failed"] = failed
    with open(os.environ["RB_RESULTS"], "w") as f:
        json.dump(res, f, indent=1, default=str)
    print(table)
    print()
    if failed:
        print("TARGETS MISSED: " + "; ".join(failed))
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
