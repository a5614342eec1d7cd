//! Hostile or unlucky clients through a real `pg-tenant-proxy` in front of a
//! real PostgreSQL 15: bogus cancel floods from a shared address, tokens with
//! a `crit` header or an absurd `exp`, and client strings that try to forge
//! log lines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::wire::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::NoTls;

/// Sends one CancelRequest with a key no session has, and waits until the
/// proxy has dealt with it (it closes the connection without a reply).
async fn bogus_cancel(port: u16, n: i32) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut pkt = BytesMut::new();
    pkt.put_i32(16);
    pkt.put_i32(80_877_102);
    pkt.put_i32(0x7000_0000 | n);
    pkt.put_i32(n.wrapping_mul(7919));
    s.write_all(&pkt).await.unwrap();
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the proxy did not close a cancel connection")
        .unwrap();
    assert_eq!(read, 0, "a cancel connection gets no reply");
}

const FLOOD_WARNING: &str = "cancel requests with unknown keys over the per-address budget";

#[tokio::test]
async fn bogus_cancels_from_the_same_address_do_not_stop_a_genuine_cancel() {
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    let token = c.cancel_token();
    let sleeper = tokio::spawn(async move {
        let started = Instant::now();
        let r = c.simple_query("SELECT pg_sleep(20)").await;
        (r.map(|_| ()), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 30 unknown keys from 127.0.0.1 (the budget is 20 a second), all within
    // half a second, so the genuine cancel below comes from an address that
    // is over its budget. On a slow run, wait for a fresh window and retry.
    let mut flooded = false;
    for _ in 0..10 {
        let t0 = Instant::now();
        futures_util::future::join_all((0..30).map(|n| bogus_cancel(p.port, n))).await;
        if t0.elapsed() < Duration::from_millis(500) {
            flooded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(flooded, "could not send 30 cancel requests within half a second");
    assert!(
        p.log_text().contains(FLOOD_WARNING),
        "the address was not over its budget:\n{}",
        p.log_text()
    );

    token.cancel_query(NoTls).await.unwrap();
    let (r, elapsed) = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("the genuine cancel was dropped: pg_sleep(20) kept running")
        .unwrap();
    let err = r.unwrap_err();
    assert_eq!(sqlstate(&err), "57014", "{}", db_message(&err));
    assert_eq!(db_message(&err), "canceling statement due to user request");
    assert!(elapsed < Duration::from_secs(10), "cancelled only after {elapsed:?}");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token signed with the test proxies' secret, with exactly this header.
fn token_with_header(header_json: &str, claims: serde_json::Value) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let message = format!("{}.{}", e.encode(header_json), e.encode(claims.to_string()));
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{sig}")
}

#[tokio::test]
async fn a_crit_header_is_refused_with_28p01() {
    let p = Proxy::start(&[]).await;
    let claims = serde_json::json!({"organization_id": ORG_A, "sub": USER_A, "exp": now() + 600});
    // The same token without crit is accepted: only crit decides.
    let plain = token_with_header(r#"{"alg":"HS256","typ":"JWT"}"#, claims.clone());
    p.try_connect(&plain).await.expect("the token without crit");
    for header in [
        r#"{"alg":"HS256","typ":"JWT","crit":["exp-policy"],"exp-policy":"strict"}"#,
        r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
    ] {
        let err = p
            .try_connect(&token_with_header(header, claims.clone()))
            .await
            .err()
            .unwrap_or_else(|| panic!("accepted a token with {header}"));
        assert_eq!(sqlstate(&err), "28P01", "{header}");
        assert_eq!(
            db_message(&err),
            "password authentication failed: token header lists critical extensions (\"crit\"), and this proxy implements none"
        );
    }
}

#[tokio::test]
async fn an_exp_near_2_64_is_refused_cleanly_and_the_proxy_lives_on() {
    let p = Proxy::start(&[]).await;
    for exp in [u64::MAX, u64::MAX - 30, 1u64 << 63] {
        let t = token_with_header(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            serde_json::json!({"organization_id": ORG_A, "sub": USER_A, "exp": exp}),
        );
        let err = p
            .try_connect(&t)
            .await
            .err()
            .unwrap_or_else(|| panic!("accepted exp {exp}"));
        assert_eq!(sqlstate(&err), "28000", "exp {exp}");
        assert_eq!(
            db_message(&err),
            "token not accepted: token lifetime exceeds the proxy's limit of 315360000 seconds (10 years)"
        );
    }
    let c = p.connect(ORG_A, USER_A).await;
    let rows = c.simple_query("SELECT 1").await.unwrap();
    let value = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("1"));
    let log = p.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// Startup with these parameters and this password; returns every message
/// up to the first ReadyForQuery or ErrorResponse.
async fn raw_login(p: &Proxy, params: &[(&str, &str)], password: &str) -> Vec<(u8, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    raw_startup(&mut s, 3 << 16, params).await;
    let first = read_msg(&mut s).await;
    if first.0 == b'E' {
        return vec![first];
    }
    assert_eq!(first.0, b'R');
    s.write_all(&msg(b'p', |b| {
        b.put_slice(password.as_bytes());
        b.put_u8(0);
    }))
    .await
    .unwrap();
    let mut out = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), read_msg(&mut s))
            .await
            .unwrap();
        let done = matches!(m.0, b'Z' | b'E');
        out.push(m);
        if done {
            return out;
        }
    }
}

#[tokio::test]
async fn client_strings_cannot_forge_log_lines() {
    let p = Proxy::start(&[]).await;
    let forged = "FORGED 2026-01-01T00:00:00.000000Z  INFO conn{id=1 peer=10.0.0.1:5432}: \
                  pg_tenant_proxy::session: session started client_user=\"admin\"";
    let user = format!("app\n{forged}");
    let app_name = format!("psql\r\n{forged}\u{1b}[2K\u{2028}");
    let database = format!("app\n{forged}");

    // Unauthenticated: a bad token with a forged user name.
    let m = raw_login(&p, &[("user", &user), ("database", "app")], "not-a-token").await;
    assert_eq!(tags(&m), vec![b'E']);
    assert_eq!(error_code(&m[0].1), "28P01");
    // A forged database name is refused, and quoted in the log line.
    let m = raw_login(&p, &[("user", "app"), ("database", &database)], "unused").await;
    assert_eq!(tags(&m), vec![b'E']);
    assert_eq!(error_code(&m[0].1), "3D000");
    // Authenticated: a valid token, forged user and application_name.
    let token = p.token(ORG_A, Some(USER_A), 600);
    let m = raw_login(
        &p,
        &[("user", &user), ("database", "app"), ("application_name", &app_name)],
        &token,
    )
    .await;
    assert_eq!(m.last().unwrap().0, b'Z', "the session started");

    // The proxy logs "session started" just after the greeting it sent.
    let event = |line: &str| -> String {
        line.split_once(": pg_tenant_proxy::session: ")
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !p.log_text().lines().any(|l| event(l).starts_with("session started")) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = p.log_text();
    for line in log.lines() {
        assert!(!line.starts_with("FORGED"), "a client wrote a log line:\n{log}");
    }
    assert!(
        !log.contains('\r') && !log.contains('\u{1b}') && !log.contains('\u{2028}'),
        "{log}"
    );
    assert_eq!(
        log.lines().filter(|l| event(l).starts_with("session started")).count(),
        1,
        "exactly one genuine session started:\n{log}"
    );
    let user_logged = format!("client_user={user:?}");
    let app_logged = format!("application_name={app_name:?}");
    let refused_db = format!(
        "database \"{}\" does not exist",
        pg_tenant_proxy::logging::escaped(&database)
    );
    for (what, needle) in [
        ("token refused", &user_logged),
        ("session started", &user_logged),
        ("session started", &app_logged),
        ("client refused during startup", &refused_db),
    ] {
        assert!(
            log.lines()
                .any(|l| event(l).starts_with(what) && l.contains(needle.as_str())),
            "no {what:?} line with {needle}:\n{log}"
        );
    }
    assert_eq!(
        user_logged,
        "client_user=\"app\\nFORGED 2026-01-01T00:00:00.000000Z  INFO conn{id=1 peer=10.0.0.1:5432}: \
         pg_tenant_proxy::session: session started client_user=\\\"admin\\\"\""
    );
}

#[test]
fn the_token_command_refuses_an_absurd_ttl_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let out = std::process::Command::new(bin())
        .arg("token")
        .arg("--jwt-secret-file")
        .arg(&secret)
        .args(["--org", ORG_A, "--ttl", &u64::MAX.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "pg-tenant-proxy token: --ttl 18446744073709551615 exceeds the 315360000 seconds (10 years) the proxy accepts\n"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn a_terminate_declaring_a_body_is_waited_for_and_ends_the_session() {
    let p = Proxy::start(&[]).await;
    let mut s = authenticated_socket(&p).await;
    // A Terminate declaring 3 bytes of body, the body arriving later.
    s.write_all(b"X\0\0\0\x07a").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(b"bc").await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the session did not end");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The proxy goes on serving, and its session task ended normally.
    let c = p.connect(ORG_A, USER_A).await;
    c.simple_query("SELECT 1").await.unwrap();
    let log = p.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
