//! The admin listener against a running proxy and real PostgreSQL: health
//! and readiness answers, and metrics that move as sessions, refusals,
//! cancels and failed logins happen. No label names a tenant.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// GET `path` from the admin listener: status and body.
async fn get(port: u16, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of the sample `name` (with its labels, as exposed), 0 if absent.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

async fn scrape(port: u16) -> String {
    let (status, body) = get(port, "/metrics").await;
    assert_eq!(status, 200);
    body
}

#[tokio::test]
async fn health_readiness_and_metrics_follow_real_sessions() {
    let admin = free_port();
    let admin_flag = format!("127.0.0.1:{admin}");
    let p = Proxy::start(&["--admin-listen", &admin_flag]).await;
    assert_eq!(get(admin, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(admin, "/readyz").await, (200, "ready\n".to_owned()));
    assert_eq!(get(admin, "/nope").await.0, 404);

    let before = scrape(admin).await;
    let c = p.connect(ORG_A, USER_A).await;
    c.simple_query("SELECT 1").await.unwrap();
    let err = c
        .simple_query("SET app.current_organization_id = 'x'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    let Err(bad) = p.try_connect("not-a-token").await else {
        panic!("a bad token was accepted");
    };
    assert_eq!(sqlstate(&bad), "28P01");
    let during = scrape(admin).await;
    let delta = |name: &str| sample(&during, name) - sample(&before, name);
    assert_eq!(delta("pgtp_sessions_started_total"), 1.0);
    assert_eq!(sample(&during, "pgtp_sessions_open"), 1.0);
    assert_eq!(delta("pgtp_statements_refused_total{class=\"protected_setting\"}"), 1.0);
    assert_eq!(delta("pgtp_logins_refused_total{reason=\"token\"}"), 1.0);
    assert!(delta("pgtp_guard_decisions_total{path=\"fast_path\"}") >= 1.0);
    assert!(delta("pgtp_bytes_total{direction=\"client_to_upstream\"}") > 0.0);
    assert!(delta("pgtp_bytes_total{direction=\"upstream_to_client\"}") > 0.0);
    assert_eq!(delta("pgtp_upstream_connect_seconds_count"), 1.0);
    // No label carries a tenant.
    assert!(!during.contains(ORG_A) && !during.contains(USER_A));

    drop(c);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let after = scrape(admin).await;
        if sample(&after, "pgtp_sessions_open") == 0.0 {
            assert_eq!(
                sample(&after, "pgtp_sessions_ended_total{reason=\"client_closed\"}")
                    - sample(&before, "pgtp_sessions_ended_total{reason=\"client_closed\"}"),
                1.0
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "session never counted as ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readiness_fails_when_the_upstream_is_unreachable_and_while_draining() {
    let admin = free_port();
    let admin_flag = format!("127.0.0.1:{admin}");
    let dead = free_port();
    let p = Proxy::start_with_upstream(
        &format!("postgresql://proxy_login@127.0.0.1:{dead}/app?sslmode=disable"),
        &["--admin-listen", &admin_flag],
    )
    .await;
    assert_eq!(get(admin, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(
        get(admin, "/readyz").await,
        (503, "not ready: upstream unreachable\n".to_owned())
    );
    drop(p);

    let admin = free_port();
    let admin_flag = format!("127.0.0.1:{admin}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(&cfg, "[limits]\ndrain_timeout_secs = 5\n").unwrap();
    let p = Proxy::start(&["--admin-listen", &admin_flag, "--config", cfg.to_str().unwrap()]).await;
    let c = p.connect(ORG_A, USER_A).await;
    assert_eq!(get(admin, "/readyz").await.0, 200);
    p.terminate();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (status, body) = get(admin, "/readyz").await;
        if status == 503 {
            assert_eq!(body, "not ready: draining\n");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readyz stayed {status} while draining"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sample(&scrape(admin).await, "pgtp_draining"), 1.0);
    drop(c);
}

#[tokio::test]
async fn json_logs_carry_the_session_span_and_never_a_secret_or_sql_text() {
    let p = Proxy::start(&["--log-format", "json"]).await;
    let token = p.token(ORG_A, Some(USER_A), 600);
    let c = p.try_connect(&token).await.unwrap();
    c.simple_query("SELECT 'sql-text-marker-7f3a'").await.unwrap();
    c.simple_query("SET app.current_organization_id = 'sql-text-marker-8b2c'")
        .await
        .unwrap_err();
    drop(c);
    p.try_connect("not-a-token-marker-9d1e").await.err().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = p.log_text();
    let mut started = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        if v["fields"]["message"] == "session started" {
            started += 1;
            assert_eq!(v["span"]["org"], ORG_A, "{line}");
            assert_eq!(v["span"]["user"], USER_A, "{line}");
            assert!(v["span"]["id"].is_number(), "{line}");
            assert!(v["span"]["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{line}");
        }
    }
    assert_eq!(started, 1, "{log}");
    for secret in [
        token.as_str(),
        LOGIN_PASSWORD,
        "sql-text-marker-7f3a",
        "sql-text-marker-8b2c",
        "not-a-token-marker-9d1e",
    ] {
        assert!(!log.contains(secret), "the log holds {secret:?}");
    }
}
