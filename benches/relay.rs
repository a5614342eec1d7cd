//! Criterion benchmark of the relay's hot loop (`relay::run`) without the
//! kernel: one direction at a time, from an in-memory byte slice to a sink,
//! in the relay's own 8 KiB reads. What it measures is the per-frame CPU the
//! proxy adds on top of the socket calls: header scanning, the guard seam,
//! batching and the write path.
//!
//! - `c2u/prepared_bind_execute`: what `pgbench -M prepared -S` sends per
//!   transaction (Bind, Execute, Sync): no guard call.
//! - `c2u/simple_query_repeated`: one simple Query repeated.
//! - `c2u/simple_query_distinct`: Queries that differ in a literal, like
//!   `pgbench -S` in simple mode. Both are one plain statement each, which
//!   the guard decides from the bytes (no parse, no cache).
//! - `c2u/simple_query_distinct_two`: Queries of two statements that differ
//!   in a literal: a verdict-cache miss each, so PostgreSQL's parser splits
//!   every one (the guard's prefilter), without the full walk.
//! - `u2c/select_result`: what the server answers to one `-S` transaction
//!   (RowDescription-less prepared result: BindComplete, DataRow,
//!   CommandComplete, ReadyForQuery).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pg_tenant_proxy::guard::{Guard, GuardConfig, TenantScope};
use pg_tenant_proxy::relay::{self, End, RelayCtx};

/// Messages per benchmark iteration.
const N: usize = 1000;

fn msg(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(body);
}

fn bind_execute_sync(out: &mut BytesMut, aid: i32) {
    let mut b = BytesMut::new();
    b.put_slice(b"\0P0_1\0"); // portal "", statement "P0_1"
    b.put_i16(0); // parameter formats
    b.put_i16(1); // one parameter
    let v = aid.to_string();
    b.put_i32(v.len() as i32);
    b.put_slice(v.as_bytes());
    b.put_i16(0); // result formats
    msg(out, b'B', &b);
    msg(out, b'E', b"\0\0\0\0\0");
    msg(out, b'S', b"");
}

fn query(out: &mut BytesMut, sql: &str) {
    let mut b = sql.as_bytes().to_vec();
    b.push(0);
    msg(out, b'Q', &b);
}

fn select_result(out: &mut BytesMut) {
    msg(out, b'2', b"");
    let mut d = BytesMut::new();
    d.put_i16(1);
    d.put_i32(4);
    d.put_slice(b"1234");
    msg(out, b'D', &d);
    msg(out, b'C', b"SELECT 1\0");
    msg(out, b'Z', b"I");
}

fn ctx(guard: &Arc<Guard>) -> (RelayCtx, tokio::sync::watch::Sender<bool>) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let c = RelayCtx {
        guard: guard.clone(),
        scope: TenantScope::new(uuid::Uuid::from_u128(42)),
        max_message: 1 << 20,
        expires_at: None,
        close_now: rx,
    };
    (c, tx)
}

/// Client bytes → upstream sink; the upstream never answers. The input ends
/// without Terminate, as a vanished client.
async fn client_to_upstream(input: &[u8], guard: &Arc<Guard>) {
    let (mut ctx, _tx) = ctx(guard);
    let (mut silent, _keep) = tokio::io::duplex(64);
    let mut cr = input;
    let mut cw = tokio::io::sink();
    let mut uw = tokio::io::sink();
    let end = relay::run(&mut cr, &mut cw, &mut silent, &mut uw, &mut ctx).await;
    assert!(matches!(end, End::ClientVanished), "{end:?}");
}

/// Upstream bytes → client sink; the client stays silent.
async fn upstream_to_client(input: &[u8], guard: &Arc<Guard>) {
    let (mut ctx, _tx) = ctx(guard);
    let (mut silent, _keep) = tokio::io::duplex(64);
    let mut ur = input;
    let mut cw = tokio::io::sink();
    let mut uw = tokio::io::sink();
    let end = relay::run(&mut silent, &mut cw, &mut ur, &mut uw, &mut ctx).await;
    assert!(matches!(end, End::UpstreamClosed { .. }), "{end:?}");
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let guard = Arc::new(Guard::new(&GuardConfig::default()).unwrap());

    let mut prepared = BytesMut::new();
    let mut repeated = BytesMut::new();
    let mut distinct = BytesMut::new();
    let mut distinct_two = BytesMut::new();
    let mut results = BytesMut::new();
    for i in 0..N {
        bind_execute_sync(&mut prepared, 1 + (i as i32 * 7919) % 1_000_000);
        query(&mut repeated, "SELECT abalance FROM pgbench_accounts WHERE aid = 4242;");
        query(
            &mut distinct,
            &format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                1 + (i * 7919) % 1_000_000
            ),
        );
        query(
            &mut distinct_two,
            &format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {}; SELECT 1;",
                1 + (i * 7919) % 1_000_000
            ),
        );
        select_result(&mut results);
    }

    let mut g = c.benchmark_group("c2u");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("prepared_bind_execute", |b| {
        b.iter(|| rt.block_on(client_to_upstream(&prepared, &guard)))
    });
    g.bench_function("simple_query_repeated", |b| {
        b.iter(|| rt.block_on(client_to_upstream(&repeated, &guard)))
    });
    // Fresh guard per iteration so every statement misses the cache.
    g.bench_function("simple_query_distinct", |b| {
        b.iter_batched(
            || Arc::new(Guard::new(&GuardConfig::default()).unwrap()),
            |fresh| rt.block_on(client_to_upstream(&distinct, &fresh)),
            criterion::BatchSize::PerIteration,
        )
    });
    g.bench_function("simple_query_distinct_two", |b| {
        b.iter_batched(
            || Arc::new(Guard::new(&GuardConfig::default()).unwrap()),
            |fresh| rt.block_on(client_to_upstream(&distinct_two, &fresh)),
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("u2c");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("select_result", |b| {
        b.iter(|| rt.block_on(upstream_to_client(&results, &guard)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
