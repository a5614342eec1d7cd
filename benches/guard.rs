//! Criterion benchmark of the statement guard on the relay's hot path.
//!
//! - `plain/*`: one plain statement (no `;` inside, names nothing
//!   sensitive), decided from its bytes alone: no parse, no cache.
//!   `pgbench_select` is what `pgbench -S` sends in simple mode,
//!   `plain_select` a short prepared statement, `typical_200b` a ~200-byte
//!   ORM statement.
//! - `cached/catalog_200b`: a repeated ~200-byte statement that names
//!   `pg_*` (verdict cache hit).
//! - `uncached/two_statements`: two plain statements in one Query, cache off
//!   (prefilter: PostgreSQL's parser splits the text, no walk).
//! - `uncached/quotes_in_comment_16k`: an adversarial 16 KiB text, cache
//!   off (`'-- '-- ...` after a `;`: the byte screen's worst case for
//!   string-continuation checks, then PostgreSQL's parser splits it).
//! - `uncached/typical_200b_full_walk`: the catalog statement with the cache
//!   off: full parse, flatten and walk.
//! - `uncached/attack_in_cte`: a refused statement, full check.
//! - `pg_query_baseline/*`: pg_query's own parse, split and scan alone.
//! - `cached_contended/*`: cache hits from 2 and 8 threads at once.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pg_tenant_proxy::guard::{Guard, GuardConfig, TenantScope, Verdict};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PLAIN: &[u8] = b"SELECT * FROM agent_instances WHERE id = $1";
const TYPICAL: &[u8] = b"SELECT p.id, p.name, p.created_at, o.display_name FROM projects AS p JOIN organizations AS o ON o.id = p.organization_id WHERE p.owner_id = $1 AND p.archived = false ORDER BY p.created_at DESC LIMIT 50";
/// A typical ~200-byte statement the prefilter declines (it names pg_*), so
/// it always takes the full parse and walk.
const TYPICAL_FULL: &[u8] = b"SELECT n.nspname, c.relname, a.attname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid WHERE c.relname = $1";
const PGBENCH: &[u8] = b"SELECT abalance FROM pgbench_accounts WHERE aid = 123456;";
const TWO: &[u8] = b"SELECT * FROM agent_instances WHERE id = 7; SELECT count(*) FROM projects";
const ATTACK: &[u8] = b"WITH x AS (SELECT set_config('app.current_organization_id', 'x', false)) SELECT * FROM x";

fn guard(entries: usize) -> Guard {
    let cfg = GuardConfig {
        verdict_cache_entries: entries,
        ..GuardConfig::default()
    };
    match Guard::new(&cfg) {
        Ok(g) => g,
        Err(e) => panic!("config: {e}"),
    }
}

fn scope() -> TenantScope {
    TenantScope::new(uuid::Uuid::from_u128(42))
}

fn bench(c: &mut Criterion) {
    let s = scope();
    for t in [TYPICAL, TYPICAL_FULL] {
        assert!(t.len() >= 190 && t.len() <= 210, "{}", t.len());
    }

    let cached = guard(4096);
    let mut g = c.benchmark_group("plain");
    for (name, sql) in [
        ("pgbench_select", PGBENCH),
        ("plain_select", PLAIN),
        ("typical_200b", TYPICAL),
    ] {
        assert_eq!(cached.check_query(sql, &s), Verdict::Allow);
        g.bench_function(name, |b| b.iter(|| cached.check_query(black_box(sql), &s)));
    }
    g.finish();
    assert_eq!(cached.check_query(TYPICAL_FULL, &s), Verdict::Allow);
    c.bench_function("cached/catalog_200b", |b| {
        b.iter(|| cached.check_query(black_box(TYPICAL_FULL), &s))
    });

    let uncached = guard(0);
    let mut g = c.benchmark_group("uncached");
    assert_eq!(uncached.check_query(TWO, &s), Verdict::Allow);
    g.bench_function("two_statements", |b| {
        b.iter(|| uncached.check_query(black_box(TWO), &s))
    });
    let adversarial = format!("SELECT 1; SELECT 2 {}\n", "'-- ".repeat(4000));
    g.bench_function("quotes_in_comment_16k", |b| {
        b.iter(|| uncached.check_query(black_box(adversarial.as_bytes()), &s))
    });
    g.bench_function("typical_200b_full_walk", |b| {
        b.iter(|| uncached.check_query(black_box(TYPICAL_FULL), &s))
    });
    g.bench_function("attack_in_cte", |b| {
        b.iter(|| uncached.check_query(black_box(ATTACK), &s))
    });
    g.finish();

    // Baselines: what pg_query itself costs on the same ~200-byte statement.
    let mut g = c.benchmark_group("pg_query_baseline");
    g.bench_function("parse_200b", |b| {
        let text = std::str::from_utf8(TYPICAL).unwrap_or_default();
        b.iter(|| pg_query::parse(black_box(text), 0).map(|r| r.protobuf.stmts.len()))
    });
    g.bench_function("split_with_parser_200b", |b| {
        let text = std::str::from_utf8(TYPICAL).unwrap_or_default();
        b.iter(|| pg_query::split_with_parser(black_box(text)).map(|r| r.len()))
    });
    g.bench_function("scan_200b", |b| {
        let text = std::str::from_utf8(TYPICAL).unwrap_or_default();
        b.iter(|| pg_query::scan(black_box(text)).map(|r| r.tokens.len()))
    });
    g.finish();

    let shared = Arc::new(guard(4096));
    let mut g = c.benchmark_group("cached_contended");
    for threads in [2usize, 8] {
        g.bench_with_input(BenchmarkId::from_parameter(threads), &threads, |b, &threads| {
            b.iter_custom(|iters| per_call_time(&shared, threads, iters));
        });
    }
    g.finish();
}

/// Runs `iters` cache-hit checks on each of `threads` threads at once and
/// returns the wall time divided by `threads`, i.e. the time per check as
/// seen by one session.
fn per_call_time(guard: &Arc<Guard>, threads: usize, iters: u64) -> Duration {
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let guard = Arc::clone(guard);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let s = scope();
                barrier.wait();
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(guard.check_query(black_box(TYPICAL_FULL), &s));
                }
                start.elapsed()
            })
        })
        .collect();
    let mut longest = Duration::ZERO;
    for h in handles {
        if let Ok(d) = h.join() {
            longest = longest.max(d);
        }
    }
    longest
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
