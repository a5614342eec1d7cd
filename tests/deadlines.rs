//! Deadlines a peer cannot hold open, through the running proxy against real
//! PostgreSQL: a client that stops reading still loses its session at token
//! expiry and at the end of a drain, and work a vanished client left running
//! is cancelled rather than run to its end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::BufMut;
use common::wire::*;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A raw session of tenant A with `application_name = app`, after its first
/// ReadyForQuery, with a token valid for `ttl` seconds.
async fn session(p: &Proxy, app: &str, ttl: u64) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    raw_startup(
        &mut s,
        3 << 16,
        &[("user", "app"), ("database", "app"), ("application_name", app)],
    )
    .await;
    assert_eq!(read_msg(&mut s).await.0, b'R');
    let token = p.token(ORG_A, Some(USER_A), ttl);
    s.write_all(&msg(b'p', |b| {
        b.put_slice(token.as_bytes());
        b.put_u8(0);
    }))
    .await
    .unwrap();
    read_until_ready(&mut s).await;
    s
}

/// Backends of `app` on the server, and how many of them are running a query.
async fn backends(app: &str) -> (i64, i64) {
    let su = superuser("app").await;
    let r = su
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity \
             WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// Waits until `app` has `want` backends (and active ones), up to `limit`.
async fn wait_backends(app: &str, want: (i64, i64), limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let now = backends(app).await;
        if now == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{app}: still {now:?} backends (total, active) after {limit:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A query whose result is far larger than every socket buffer on the way.
const FLOOD: &[u8] = b"SELECT repeat('x', 8000) FROM generate_series(1, 1000000)";

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_session_at_token_expiry() {
    let p = Proxy::start(&["--jwt-leeway", "0"]).await;
    let app = "deadline-expiry";
    let mut s = session(&p, app, 4).await;
    s.write_all(&query_msg(FLOOD)).await.unwrap();
    // The server is blocked writing to the proxy, the proxy to the client.
    wait_backends(app, (1, 1), Duration::from_secs(3)).await;
    // Expiry (4 s after the token was minted) ends it although nobody reads.
    let took = wait_backends(app, (0, 0), Duration::from_secs(12)).await;
    assert!(took < Duration::from_secs(12));
    drop(s);
}

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_session_at_the_end_of_a_drain() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(&cfg, "[limits]\ndrain_timeout_secs = 1\n").unwrap();
    let mut p = Proxy::start(&["--config", cfg.to_str().unwrap()]).await;
    let app = "deadline-drain";
    let mut s = session(&p, app, 600).await;
    s.write_all(&query_msg(FLOOD)).await.unwrap();
    wait_backends(app, (1, 1), Duration::from_secs(3)).await;
    let stop = Instant::now();
    p.terminate();
    // The drain lasts 1 s; then the session ends at once, although its client
    // is not reading, so the proxy does not wait out its 5 s grace period.
    let status = p
        .wait_exit(Duration::from_secs(10))
        .expect("proxy did not exit after its drain");
    let took = stop.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(4), "exit took {took:?}");
    wait_backends(app, (0, 0), Duration::from_secs(3)).await;
    drop(s);
}

#[tokio::test]
async fn work_of_a_client_that_vanished_is_cancelled() {
    let p = Proxy::start(&[]).await;
    let app = "deadline-vanished";
    let mut s = session(&p, app, 600).await;
    s.write_all(&query_msg(b"SELECT pg_sleep(30)")).await.unwrap();
    wait_backends(app, (1, 1), Duration::from_secs(3)).await;
    // The client process dies: its socket closes without Terminate.
    drop(s);
    let took = wait_backends(app, (0, 0), Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(5));
}
