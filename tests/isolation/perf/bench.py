#!/usr/bin/env python3
"""Endpoint latency and plan check, run by tests/isolation/perf/run.sh.

Connects with plain psql (through the proxy, as one tenant), then:
  1. EXPLAIN (COSTS OFF) of every endpoint query: fails if any plan has a Seq
     Scan on a tenant table (the RLS predicate organization_id = $initplan
     must drive an index). Only a table of a few pages is exempt (the 100-row
     organizations table, where reading one page beats any index).
  2. Runs every endpoint query ITERATIONS times with varying parameters
     (after one warm-up pass), timed by psql's \\timing (client round trip,
     so proxy and guard are included), and reports p50/p95/max per query.
     Fails if any p95 exceeds --max-p95-ms.

The application's queries never mention organization_id: row level security
adds it. Keys are computed the way perf/load.sql builds them:
md5('<kind><org>-<n>')::uuid.
"""
import argparse
import hashlib
import math
import os
import random
import re
import subprocess
import sys

TENANT_TABLES = {
    "organizations", "users", "agent_instances", "roblox_environments", "roblox_sessions",
    "roblox_environment_shares", "customers", "subscriptions", "payment_methods", "invoices",
    "content_generations", "content_feedback", "learning_profiles",
}

# (name, SQL with {placeholders}) — one per seed endpoint access path.
ENDPOINTS = [
    ("organization_current",        "SELECT id, name, plan FROM organizations"),
    ("users_list",                  "SELECT id, email, display_name FROM users WHERE deleted_at IS NULL ORDER BY created_at DESC LIMIT 50"),
    ("user_by_id",                  "SELECT * FROM users WHERE id = '{user}'"),
    ("user_by_email",               "SELECT * FROM users WHERE email = '{email}'"),
    ("agents_list",                 "SELECT * FROM agent_instances WHERE deleted_at IS NULL ORDER BY created_at DESC LIMIT 50"),
    ("agents_by_status",            "SELECT * FROM agent_instances WHERE status = '{status}' AND deleted_at IS NULL ORDER BY created_at DESC LIMIT 50"),
    ("agents_by_status_type",       "SELECT * FROM agent_instances WHERE status = '{status}' AND agent_type = '{agent_type}' AND deleted_at IS NULL ORDER BY created_at DESC LIMIT 50"),
    ("agents_by_type",              "SELECT * FROM agent_instances WHERE agent_type = '{agent_type}' AND deleted_at IS NULL ORDER BY created_at DESC LIMIT 50"),
    ("agents_count_by_status",      "SELECT status, count(*) FROM agent_instances GROUP BY status"),
    ("agent_by_agent_id",           "SELECT * FROM agent_instances WHERE agent_id = '{agent_id}'"),
    ("agent_by_id",                 "SELECT * FROM agent_instances WHERE id = '{agent}'"),
    ("environments_by_user",        "SELECT * FROM roblox_environments WHERE user_id = '{user}' AND deleted_at IS NULL ORDER BY created_at DESC LIMIT 50"),
    ("environment_by_id",           "SELECT * FROM roblox_environments WHERE id = '{env}'"),
    ("sessions_by_environment",     "SELECT * FROM roblox_sessions WHERE environment_id = '{env}' ORDER BY started_at DESC LIMIT 50"),
    ("sessions_by_user",            "SELECT * FROM roblox_sessions WHERE user_id = '{user}' ORDER BY started_at DESC LIMIT 50"),
    ("shares_by_environment",       "SELECT * FROM roblox_environment_shares WHERE environment_id = '{env}'"),
    ("shares_with_user",            "SELECT * FROM roblox_environment_shares WHERE shared_with_user_id = '{user}'"),
    ("customer_by_user",            "SELECT * FROM customers WHERE user_id = '{user}'"),
    ("subscriptions_by_customer",   "SELECT * FROM subscriptions WHERE customer_id = '{customer}'"),
    ("payment_methods_by_customer", "SELECT * FROM payment_methods WHERE customer_id = '{customer}'"),
    ("invoices_by_customer_date",   "SELECT * FROM invoices WHERE customer_id = '{customer}' ORDER BY issued_at DESC LIMIT 20"),
    ("invoices_open_by_due",        "SELECT * FROM invoices WHERE status = 'open' ORDER BY due_at LIMIT 50"),
    ("generations_by_user",         "SELECT * FROM content_generations WHERE user_id = '{user}' ORDER BY created_at DESC LIMIT 20"),
    ("feedback_by_generation",      "SELECT * FROM content_feedback WHERE content_generation_id = '{generation}'"),
    ("learning_profile_by_user",    "SELECT * FROM learning_profiles WHERE user_id = '{profile_user}'"),
]


def key(kind, org, n):
    h = hashlib.md5(f"{kind}{org}-{n}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def params(rng, org):
    return {
        "user": key("user", org, rng.randint(1, 1000)),
        "email": f"user{rng.randint(1, 1000)}@org{org}.test",
        "agent": key("agent", org, rng.randint(1, 2000)),
        "agent_id": f"agent-{rng.randint(1, 2000)}",
        "status": rng.choice(["running", "stopped", "pending", "failed", "archived"]),
        "agent_type": rng.choice(["tutor", "grader", "builder", "assistant"]),
        "env": key("env", org, rng.randint(1, 1000)),
        "customer": key("customer", org, rng.randint(1, 500)),
        "generation": key("generation", org, rng.randint(1, 500)),
        "profile_user": key("user", org, rng.randint(1, 500)),
    }


def psql(args, script):
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", args.host, "-p", str(args.port),
           "-U", args.user, "-d", args.dbname]
    res = subprocess.run(cmd, input=script, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout + res.stderr)
        sys.exit(f"psql failed (exit {res.returncode})")
    return res.stdout


def percentile(sorted_values, p):
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", required=True)
    ap.add_argument("--user", default="app")
    ap.add_argument("--dbname", default="app")
    ap.add_argument("--org", type=int, default=42, help="tenant number in perf/load.sql")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--max-p95-ms", type=float, default=50.0)
    ap.add_argument("--plans", help="write the EXPLAIN output here")
    ap.add_argument("--tiny-table-pages", type=int, default=8,
                    help="a Seq Scan on a table this small is reported, not failed")
    ap.add_argument("--table-pages", required=True,
                    help="'table=pages ...' read by the DBA (the proxy refuses relpages to tenants)")
    args = ap.parse_args()
    rng = random.Random(20261127)
    failures = []

    # 1. Plans.
    script = "\\pset pager off\n"
    p = params(rng, args.org)
    for name, sql in ENDPOINTS:
        script += f"\\echo @@ {name}\nEXPLAIN (COSTS OFF) {sql.format(**p)};\n"
    out = psql(args, script)
    if args.plans:
        with open(args.plans, "w") as f:
            f.write(out)
    plans, current = {}, None
    for line in out.splitlines():
        if line.startswith("@@ "):
            current = line[3:].strip()
            plans[current] = []
        elif current:
            plans[current].append(line)
    # A table of a few pages (organizations: 100 rows) is cheaper to read
    # whole than through an index, and the planner rightly says so; such a
    # Seq Scan is reported, not failed. Every other tenant table must use an
    # index. The page counts come from the DBA's connection: relpages counts
    # every tenant's rows, so the proxy refuses it to tenants.
    pages = {k: int(v) for k, v in (l.split("=") for l in args.table_pages.split() if "=" in l)}
    access = {}
    for name, _ in ENDPOINTS:
        text = "\n".join(plans.get(name, []))
        seq = sorted({t for t in re.findall(r"Seq Scan on (\w+)", text) if t in TENANT_TABLES})
        tiny = [t for t in seq if pages.get(t, 10**9) <= args.tiny_table_pages]
        big = [t for t in seq if t not in tiny]
        if big:
            failures.append(f"{name}: Seq Scan on {', '.join(big)}")
        if "organization_id = $" not in text and "id = $" not in text:
            failures.append(f"{name}: plan does not use the tenant predicate in an index condition")
        used = re.findall(r"(Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)", text)
        access[name] = ", ".join(list(dict.fromkeys(ix for _, ix in used))
                                 + [f"Seq Scan on {t} ({pages[t]} pages)" for t in tiny]) or "(none)"

    # 2. Latency: one warm-up pass, then ITERATIONS interleaved passes.
    script = "\\timing on\n\\o /dev/null\n"
    for name, sql in ENDPOINTS:
        script += f"{sql.format(**params(rng, args.org))};\n"
    script += "\\echo @@ measured\n"
    for _ in range(args.iterations):
        for name, sql in ENDPOINTS:
            script += f"\\echo @ {name}\n{sql.format(**params(rng, args.org))};\n"
    out = psql(args, script)
    times, current, measuring = {n: [] for n, _ in ENDPOINTS}, None, False
    for line in out.splitlines():
        if line.startswith("@@ measured"):
            measuring = True
        elif line.startswith("@ "):
            current = line[2:].strip()
        elif measuring and current and line.startswith("Time: "):
            times[current].append(float(line.split()[1]))
            current = None

    print(f"{'endpoint':<30} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  index")
    for name, _ in ENDPOINTS:
        t = sorted(times[name])
        if len(t) != args.iterations:
            failures.append(f"{name}: {len(t)} timings, expected {args.iterations}")
            continue
        p50, p95 = percentile(t, 50), percentile(t, 95)
        print(f"{name:<30} {p50:8.2f} {p95:8.2f} {t[-1]:8.2f}  {access[name]}")
        if p95 > args.max_p95_ms:
            failures.append(f"{name}: p95 {p95:.2f} ms > {args.max_p95_ms} ms")
    if failures:
        print("FAILED:")
        for f in failures:
            print("  " + f)
        sys.exit(1)
    print(f"ok: {len(ENDPOINTS)} endpoints, no Seq Scan on a tenant table (beyond {args.tiny_table_pages} pages), every p95 <= {args.max_p95_ms} ms")


if __name__ == "__main__":
    main()
