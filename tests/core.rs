//! Proxy core behaviour through a real `pg-tenant-proxy` process in front of
//! a real PostgreSQL 15, with real clients (tokio-postgres and raw sockets).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::wire::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::{AsyncMessage, NoTls, SimpleQueryMessage};

fn first_value(msgs: &[SimpleQueryMessage]) -> Option<String> {
    msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

async fn setting(c: &tokio_postgres::Client, name: &str) -> String {
    let q = format!("SELECT current_setting('{name}')");
    first_value(&c.simple_query(&q).await.unwrap()).unwrap()
}

#[tokio::test]
async fn tenant_and_user_are_pinned_from_the_token_and_survive_reset() {
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    assert_eq!(setting(&c, "app.current_organization_id").await, ORG_A);
    assert_eq!(setting(&c, "app.current_user_id").await, USER_A);
    let row = c.query_one("SELECT current_user::text", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "proxy_login");
    for reset in ["RESET ALL", "DISCARD ALL", "RESET ROLE", "SET ROLE NONE"] {
        c.batch_execute(reset).await.unwrap();
        assert_eq!(setting(&c, "app.current_organization_id").await, ORG_A, "after {reset}");
        assert_eq!(setting(&c, "app.current_user_id").await, USER_A, "after {reset}");
    }
}

#[tokio::test]
async fn rows_flow_both_ways_and_only_the_tenants_rows_are_visible() {
    let p = Proxy::start(&[]).await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    let rows = a.query("SELECT agent_id FROM agent_instances WHERE agent_id LIKE 'a-agent-%' OR agent_id LIKE 'b-agent-%' ORDER BY agent_id", &[]).await.unwrap();
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec!["a-agent-1", "a-agent-2"]);
    let inserted = a
        .query_one(
            "INSERT INTO agent_instances (agent_id, agent_type, status) VALUES ($1, 'chat', 'new') RETURNING organization_id::text, created_by_id::text",
            &[&"core-rows-1"],
        )
        .await
        .unwrap();
    assert_eq!(inserted.get::<_, String>(0), ORG_A);
    assert_eq!(inserted.get::<_, String>(1), USER_A);
    let seen_by_b = b
        .query("SELECT 1 FROM agent_instances WHERE agent_id = 'core-rows-1'", &[])
        .await
        .unwrap();
    assert!(seen_by_b.is_empty(), "tenant B saw tenant A's new row");
    // A large value travels both ways unchanged (frames bigger than a read).
    let big = "x".repeat(300_000);
    let echoed = a.query_one("SELECT $1::text", &[&big]).await.unwrap();
    assert_eq!(echoed.get::<_, String>(0), big);
}

#[tokio::test]
async fn pipelined_extended_protocol_keeps_order() {
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    let stmt = c.prepare("SELECT $1::int * 2").await.unwrap();
    // tokio-postgres pipelines concurrent queries on one connection.
    let futs: Vec<_> = (0..50i32)
        .map(|i| {
            let c = &c;
            let s = &stmt;
            async move { c.query_one(s, &[&i]).await }
        })
        .collect();
    let results = futures_util::future::join_all(futs).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap().get::<_, i32>(0), i as i32 * 2);
    }
}

#[tokio::test]
async fn copy_in_and_out_through_the_proxy() {
    // PostgreSQL refuses COPY FROM into tables under row level security, so
    // the sink is a plain table the tenant role may write.
    let su = superuser("app").await;
    su.batch_execute(
        "CREATE TABLE IF NOT EXISTS core_copy_sink (agent_id text, agent_type text, status text);
         GRANT SELECT, INSERT ON core_copy_sink TO tenant_app;",
    )
    .await
    .unwrap();
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    let sink = c
        .copy_in("COPY core_copy_sink (agent_id, agent_type, status) FROM STDIN")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..2000 {
        data.push_str(&format!("copy-{i}\tbatch\tnew\n"));
    }
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 2000);
    // Move the rows into a tenant table with INSERT ... SELECT, then COPY them out.
    c.batch_execute("INSERT INTO agent_instances (agent_id, agent_type, status) SELECT agent_id, agent_type, status FROM core_copy_sink")
        .await
        .unwrap();
    let stream = c
        .copy_out("COPY (SELECT agent_id, organization_id FROM agent_instances WHERE agent_type = 'batch' ORDER BY agent_id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.map(|r| r.unwrap()).collect().await;
    let text: String = chunks.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2000);
    assert!(
        lines.iter().all(|l| l.ends_with(ORG_A)),
        "copied rows got the session's organization"
    );
    // The session is still in sync afterwards.
    assert_eq!(first_value(&c.simple_query("SELECT 42").await.unwrap()).unwrap(), "42");
}

async fn connect_with_notifications(
    p: &Proxy,
    org: &str,
    user: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
) {
    let token = p.token(org, Some(user), 600);
    let (client, mut conn) = p.config(&token).connect(NoTls).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(msg)) = stream.next().await {
            if let AsyncMessage::Notification(n) = msg {
                let _ = tx.send(n);
            }
        }
    });
    (client, rx)
}

#[tokio::test]
async fn listen_notify_works_within_a_tenant_and_never_crosses_tenants() {
    let p = Proxy::start(&[]).await;
    let (a1, mut a1_rx) = connect_with_notifications(&p, ORG_A, USER_A).await;
    let (a2, _a2_rx) = connect_with_notifications(&p, ORG_A, USER_A).await;
    let (b, mut b_rx) = connect_with_notifications(&p, ORG_B, USER_B).await;
    a1.batch_execute("LISTEN jobs").await.unwrap();
    b.batch_execute("LISTEN jobs").await.unwrap();
    // Same session, and another session of the same tenant.
    a1.batch_execute("NOTIFY jobs, 'from-a1'").await.unwrap();
    a2.batch_execute("NOTIFY jobs, 'from-a2'").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let n = tokio::time::timeout(Duration::from_secs(5), a1_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n.channel(), "jobs");
        got.push(n.payload().to_owned());
    }
    got.sort();
    assert_eq!(got, vec!["from-a1", "from-a2"]);
    // Tenant B listens on the same name but hears nothing of tenant A.
    b.batch_execute("SELECT 1").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), b_rx.recv())
            .await
            .is_err(),
        "tenant B heard tenant A"
    );
    b.batch_execute("NOTIFY jobs, 'from-b'").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), b_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((n.channel(), n.payload()), ("jobs", "from-b"));
    a1.batch_execute("SELECT 1").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), a1_rx.recv())
            .await
            .is_err(),
        "tenant A heard tenant B"
    );
}

#[tokio::test]
async fn cancel_request_stops_a_long_query() {
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    let token = c.cancel_token();
    let started = Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await.unwrap();
    });
    let err = c.simple_query("SELECT pg_sleep(30)").await.unwrap_err();
    canceller.await.unwrap();
    assert_eq!(sqlstate(&err), "57014");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(first_value(&c.simple_query("SELECT 1").await.unwrap()).unwrap(), "1");
}

#[tokio::test]
async fn cancel_with_an_unknown_key_does_nothing() {
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    let mut pkt = BytesMut::new();
    pkt.put_i32(16);
    pkt.put_i32(80_877_102);
    pkt.put_i32(12345);
    pkt.put_i32(67890);
    s.write_all(&pkt).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the proxy closes a cancel connection without a reply");
    let r = c.simple_query("SELECT pg_sleep(0.5)::text, 7").await.unwrap();
    let row = r.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(1).map(str::to_owned),
        _ => None,
    });
    assert_eq!(row.as_deref(), Some("7"), "the running session was not disturbed");
}

fn jwt(claims: serde_json::Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_right_sqlstate_and_never_echoed() {
    let p = Proxy::start(&[]).await;
    let s = SECRET.as_bytes();
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "not-a-jwt".into(), "28P01"),
        (
            "expired",
            jwt(serde_json::json!({"organization_id": ORG_A, "exp": now() - 3600}), s),
            "28P01",
        ),
        (
            "wrong key",
            jwt(
                serde_json::json!({"organization_id": ORG_A, "exp": now() + 600}),
                b"some-other-secret-some-other-secret!!",
            ),
            "28P01",
        ),
        ("no exp", jwt(serde_json::json!({"organization_id": ORG_A}), s), "28P01"),
        (
            "future nbf",
            jwt(
                serde_json::json!({"organization_id": ORG_A, "exp": now() + 900, "nbf": now() + 600}),
                s,
            ),
            "28P01",
        ),
        (
            "no organization",
            jwt(serde_json::json!({"sub": USER_A, "exp": now() + 600}), s),
            "28000",
        ),
        (
            "nil organization",
            jwt(
                serde_json::json!({"organization_id": "00000000-0000-0000-0000-000000000000", "exp": now() + 600}),
                s,
            ),
            "28000",
        ),
        (
            "injection in organization",
            jwt(
                serde_json::json!({"organization_id": "'; SET ROLE postgres; --", "exp": now() + 600}),
                s,
            ),
            "28000",
        ),
        (
            "organization as number",
            jwt(serde_json::json!({"organization_id": 7, "exp": now() + 600}), s),
            "28000",
        ),
        (
            "user not a uuid",
            jwt(
                serde_json::json!({"organization_id": ORG_A, "sub": "admin", "exp": now() + 600}),
                s,
            ),
            "28000",
        ),
        ("oversized", "a".repeat(70_000), "28P01"),
    ];
    for (name, token, code) in cases {
        let err = p
            .try_connect(&token)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(sqlstate(&err), code, "{name}: {}", db_message(&err));
        let msg = db_message(&err);
        assert!(token.len() < 20 || !msg.contains(&token[..20]), "{name}: token echoed");
    }
    let log = p.log_text();
    let good = p.token(ORG_A, Some(USER_A), 60);
    let _ = p.try_connect(&good).await.unwrap();
    assert!(!p.log_text().contains(&good[..30]), "a token reached the log");
    assert!(!log.contains(LOGIN_PASSWORD), "the upstream password reached the log");
}

#[tokio::test]
async fn startup_parameters_cannot_choose_the_tenant_or_role() {
    let p = Proxy::start(&[]).await;
    let t = p.token(ORG_A, Some(USER_A), 600);
    for opts in [
        format!("-c app.current_organization_id={ORG_B}"),
        "-c role=postgres".into(),
        "-c session_authorization=postgres".into(),
        "-c standard_conforming_strings=off".into(),
    ] {
        let mut cfg = p.config(&t);
        cfg.options(&opts);
        let err = cfg
            .connect(NoTls)
            .await
            .err()
            .unwrap_or_else(|| panic!("{opts} accepted"));
        assert_eq!(sqlstate(&err), "28000", "{opts}");
    }
    // Allowed settings in options pass through.
    let mut cfg = p.config(&t);
    cfg.options("-c statement_timeout=1234").application_name("core-test");
    let (c, conn) = cfg.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(setting(&c, "statement_timeout").await, "1234ms");
    assert_eq!(setting(&c, "application_name").await, "core-test");
    assert_eq!(setting(&c, "app.current_organization_id").await, ORG_A);
    // Unknown database: 3D000.
    let mut cfg = p.config(&t);
    cfg.dbname("postgres");
    assert_eq!(sqlstate(&cfg.connect(NoTls).await.err().unwrap()), "3D000");
}

#[tokio::test]
async fn upstream_down_gives_08001_quickly() {
    let dead = free_port();
    let p = Proxy::start_with_upstream(
        &format!("postgresql://proxy_login@127.0.0.1:{dead}/app?sslmode=disable"),
        &[],
    )
    .await;
    let started = Instant::now();
    let err = p.try_connect(&p.token(ORG_A, None, 60)).await.err().unwrap();
    assert_eq!(sqlstate(&err), "08001", "{}", db_message(&err));
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn wrong_upstream_password_gives_08001_without_leaking_it() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "wrong-password\n").unwrap();
    let p = Proxy::start(&["--upstream-password-file", pw.to_str().unwrap()]).await;
    let err = p.try_connect(&p.token(ORG_A, None, 60)).await.err().unwrap();
    assert_eq!(sqlstate(&err), "08001");
    assert!(!db_message(&err).contains("wrong-password"));
}

#[tokio::test]
async fn upstream_login_uses_scram() {
    // The cluster's pg_hba is scram-sha-256 for TCP; the proxy logs in over TCP.
    let su = superuser("app").await;
    let row = su
        .query_one(
            "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'proxy_login'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    let hba = su
        .query(
            "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' AND user_name = '{all}'",
            &[],
        )
        .await
        .unwrap();
    assert!(!hba.is_empty() && hba.iter().all(|r| r.get::<_, String>(0) == "scram-sha-256"));
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    assert_eq!(setting(&c, "app.current_organization_id").await, ORG_A);
}

#[tokio::test]
async fn gssenc_request_gets_n_and_newer_protocol_is_negotiated() {
    let p = Proxy::start(&[]).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]).await.unwrap();
    assert_eq!(s.read_u8().await.unwrap(), b'N');
    raw_startup(
        &mut s,
        (3 << 16) | 2,
        &[("user", "app"), ("database", "app"), ("_pq_.test_option", "1")],
    )
    .await;
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(tag, b'v', "NegotiateProtocolVersion first");
    assert_eq!(i32::from_be_bytes(body[0..4].try_into().unwrap()), 3 << 16);
    assert_eq!(i32::from_be_bytes(body[4..8].try_into().unwrap()), 1);
    assert_eq!(&body[8..], b"_pq_.test_option\0");
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(
        (tag, &body[..]),
        (b'R', &3i32.to_be_bytes()[..]),
        "then a cleartext password request"
    );
}

#[tokio::test]
async fn garbage_and_hostile_frames_do_not_hurt_other_sessions() {
    let p = Proxy::start(&[]).await;
    let good = p.connect(ORG_A, USER_A).await;
    // Random bytes instead of a startup packet.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap();
    assert_eq!(rest.first(), Some(&b'E'));
    assert_eq!(error_code(&rest[5..]), "08P01");
    // A huge declared startup length is refused before reading it.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap();
    assert_eq!(error_code(&rest[5..]), "08P01");
    // After authentication: a negative length, then an unknown message type.
    for (frame, want) in [
        // A negative length and an unknown message type: protocol violations.
        (&[b'Q', 0xff, 0xff, 0xff, 0x00][..], "08P01"),
        (&[b'z', 0, 0, 0, 4][..], "08P01"),
        // A 2 GiB message, over the 64 MiB cap: a limit exceeded.
        (&[b'Q', 0x7f, 0, 0, 0][..], "54000"),
    ] {
        let mut s = authenticated_socket(&p).await;
        s.write_all(frame).await.unwrap();
        let (tag, body) = tokio::time::timeout(Duration::from_secs(5), read_msg(&mut s))
            .await
            .unwrap();
        assert_eq!(tag, b'E');
        assert_eq!(error_code(&body), want, "frame {frame:?}");
    }
    assert_eq!(
        first_value(&good.simple_query("SELECT 'still here'").await.unwrap()).unwrap(),
        "still here"
    );
}

#[tokio::test]
async fn silent_clients_are_dropped_after_the_auth_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, "[limits]\nauth_timeout_secs = 1\n").unwrap();
    let p = Proxy::start(&["--config", cfg.to_str().unwrap()]).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn connections_over_the_cap_get_53300() {
    let p = Proxy::start(&["--max-connections", "1"]).await;
    let c = p.connect(ORG_A, USER_A).await;
    let err = p.try_connect(&p.token(ORG_A, None, 60)).await.err().unwrap();
    assert_eq!(sqlstate(&err), "53300");
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(p.try_connect(&p.token(ORG_A, None, 60)).await.is_ok());
}

#[tokio::test]
async fn session_is_closed_when_the_token_expires() {
    let p = Proxy::start(&["--jwt-leeway", "0"]).await;
    let t = p.token(ORG_A, Some(USER_A), 2);
    let c = p.try_connect(&t).await.unwrap();
    assert_eq!(first_value(&c.simple_query("SELECT 1").await.unwrap()).unwrap(), "1");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let err = c.simple_query("SELECT 1").await.unwrap_err();
    // The FATAL arrives before the close; tokio-postgres reports it or the closed connection.
    if let Some(db) = err.as_db_error() {
        assert_eq!(db.code().code(), "28P01");
    } else {
        assert!(c.is_closed(), "{err}");
    }
    assert!(p.log_text().contains("token has expired"));
}

#[tokio::test]
async fn sigterm_drains_then_closes_sessions_with_57p01() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, "[limits]\ndrain_timeout_secs = 1\n").unwrap();
    let mut p = Proxy::start(&["--config", cfg.to_str().unwrap()]).await;
    let token = p.token(ORG_A, Some(USER_A), 600);
    let (c, conn) = p.config(&token).connect(NoTls).await.unwrap();
    let conn = tokio::spawn(conn);
    p.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Still working during the drain; new clients are no longer accepted:
    // the listener is closed, so they are refused by the operating system.
    assert_eq!(first_value(&c.simple_query("SELECT 5").await.unwrap()).unwrap(), "5");
    let Err(refused) = p.try_connect(&p.token(ORG_A, None, 60)).await else {
        panic!("a new client was accepted during the drain");
    };
    let io = std::error::Error::source(&refused)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("not an I/O error: {refused:?}"));
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    // At the end of the drain the idle session gets FATAL 57P01.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the session outlived the drain")
        .unwrap();
    let err = ended.expect_err("the session ended without an error");
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("57P01"), "{err:?}");
    assert!(c.is_closed());
    assert!(p.log_text().contains("closed by the proxy"), "{}", p.log_text());
    let status = p.wait_exit(Duration::from_secs(10)).expect("proxy exited");
    assert!(status.success());
}

#[tokio::test]
async fn plaintext_is_refused_from_networks_not_allowed() {
    let p = Proxy::start(&["--allow-plaintext-from", "10.0.0.0/8"]).await;
    let err = p.try_connect(&p.token(ORG_A, None, 60)).await.err().unwrap();
    assert_eq!(sqlstate(&err), "28000");
    assert!(db_message(&err).contains("TLS"));
}

/// Prepends `lines` to the cluster's pg_hba.conf and reloads it.
async fn prepend_hba(lines: &str) {
    let pg = pg();
    let path = pg.dir.join("data/pg_hba.conf");
    let old = std::fs::read_to_string(&path).unwrap();
    if !old.contains(lines) {
        std::fs::write(&path, format!("{lines}\n{old}")).unwrap();
    }
    let su = superuser("app").await;
    su.simple_query("SELECT pg_reload_conf()").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn upstream_login_with_md5_cleartext_and_trust_over_a_unix_socket() {
    let su = superuser("app").await;
    su.batch_execute(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'proxy_md5') THEN
             SET LOCAL password_encryption = 'md5';
             CREATE ROLE proxy_md5 LOGIN PASSWORD 'md5-secret' IN ROLE tenant_app;
           END IF;
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'proxy_clear') THEN
             CREATE ROLE proxy_clear LOGIN PASSWORD 'clear-secret' IN ROLE tenant_app;
           END IF;
         END $$;",
    )
    .await
    .unwrap();
    prepend_hba("host app proxy_md5 127.0.0.1/32 md5\nhost app proxy_clear 127.0.0.1/32 password").await;
    let pg = pg();
    for (role, pw) in [("proxy_md5", "md5-secret"), ("proxy_clear", "clear-secret")] {
        let url = format!("postgresql://{role}:{pw}@127.0.0.1:{}/app?sslmode=disable", pg.port);
        let dir = tempfile::tempdir().unwrap();
        let pwf = dir.path().join("pw");
        std::fs::write(&pwf, pw).unwrap();
        let p = Proxy::start_with_upstream(&url, &["--upstream-password-file", pwf.to_str().unwrap()]).await;
        let c = p.connect(ORG_A, USER_A).await;
        let row = c
            .query_one(
                "SELECT current_user::text, current_setting('app.current_organization_id')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, String>(0), row.get::<_, String>(1)),
            (role.to_owned(), ORG_A.to_owned())
        );
    }
    // The Unix socket: pg.sh's local auth is trust, so no password is sent.
    let url = format!(
        "postgresql://proxy_login@localhost:{}/app?host={}",
        pg.port,
        pg.dir.display()
    );
    let p = Proxy::start_with_upstream(&url, &[]).await;
    let c = p.connect(ORG_B, USER_B).await;
    let row = c
        .query_one("SELECT current_setting('app.current_organization_id')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), ORG_B);
}

fn write_file(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[tokio::test]
async fn public_key_and_jwks_tokens_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let pg = pg();
    let upstream = format!("postgresql://proxy_login@127.0.0.1:{}/app?sslmode=disable", pg.port);
    for (alg, rc_alg) in [
        ("RS256", &rcgen::PKCS_RSA_SHA256),
        ("ES256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("EdDSA", &rcgen::PKCS_ED25519),
    ] {
        let kp = rcgen::KeyPair::generate_for(rc_alg).unwrap();
        let private = write_file(dir.path(), &format!("{alg}.key"), &kp.serialize_pem());
        let public = write_file(dir.path(), &format!("{alg}.pub"), &kp.public_key_pem());
        // The proxy under test reads the public key; the harness's secret file is ignored.
        let p = Proxy::start_with_upstream_keys(&upstream, &["--jwt-public-key-file", public.to_str().unwrap()]).await;
        let mint = |kid: &str| {
            let out = std::process::Command::new(bin())
                .args([
                    "token",
                    "--private-key-file",
                    private.to_str().unwrap(),
                    "--alg",
                    alg,
                    "--org",
                    ORG_B,
                    "--kid",
                    kid,
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        let token = mint("k1");
        let c = p.try_connect(&token).await.unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(setting(&c, "app.current_organization_id").await, ORG_B, "{alg}");
        // An HS256 token signed with the public key's bytes is refused.
        let confused = jwt(
            serde_json::json!({"organization_id": ORG_B, "exp": now() + 600}),
            kp.public_key_pem().as_bytes(),
        );
        assert_eq!(
            sqlstate(&p.try_connect(&confused).await.err().unwrap()),
            "28P01",
            "{alg}"
        );

        // The same key in a JWKS file, selected by kid.
        let dk = match alg {
            "RS256" => jsonwebtoken::DecodingKey::from_rsa_pem(kp.public_key_pem().as_bytes()),
            "ES256" => jsonwebtoken::DecodingKey::from_ec_pem(kp.public_key_pem().as_bytes()),
            _ => jsonwebtoken::DecodingKey::from_ed_pem(kp.public_key_pem().as_bytes()),
        }
        .unwrap();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_decoding_key(&dk, Some(alg.parse().unwrap())).unwrap();
        jwk.common.key_id = Some("k1".into());
        let jwks = write_file(
            dir.path(),
            &format!("{alg}.jwks"),
            &serde_json::json!({"keys": [jwk]}).to_string(),
        );
        let pj = Proxy::start_with_upstream_keys(&upstream, &["--jwks-file", jwks.to_str().unwrap()]).await;
        let c = pj
            .try_connect(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg} via JWKS: {e}"));
        assert_eq!(setting(&c, "app.current_organization_id").await, ORG_B);
        let unknown_kid = mint("unknown");
        let err = pj.try_connect(&unknown_kid).await.err().unwrap();
        assert_eq!(sqlstate(&err), "28P01");
        assert!(db_message(&err).contains("kid"));
    }
}

#[tokio::test]
async fn shared_runtime_serves_sessions_too() {
    let p = Proxy::start(&["--runtime", "shared", "--worker-threads", "2"]).await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    assert_eq!(setting(&a, "app.current_organization_id").await, ORG_A);
    assert_eq!(setting(&b, "app.current_organization_id").await, ORG_B);
    let err = a.batch_execute("SET ROLE tenant_owner").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
}

#[tokio::test]
async fn pg_notify_with_bind_parameters_is_scoped_like_notify() {
    // postgres.js's sql.notify(channel, payload) sends `select pg_notify($1, $2)`.
    // Its own channel name: tests run in parallel on one cluster.
    let p = Proxy::start(&[]).await;
    let (a1, mut a1_rx) = connect_with_notifications(&p, ORG_A, USER_A).await;
    let (a2, _a2_rx) = connect_with_notifications(&p, ORG_A, USER_A).await;
    let (b, mut b_rx) = connect_with_notifications(&p, ORG_B, USER_B).await;
    a1.batch_execute("LISTEN jobs_fn").await.unwrap();
    b.batch_execute("LISTEN jobs_fn").await.unwrap();
    let stmt = a2.prepare("select pg_notify($1, $2)").await.unwrap();
    a2.execute(&stmt, &[&"jobs_fn", &"from-a2"]).await.unwrap();
    a2.batch_execute("SELECT pg_notify('jobs_fn', 'simple-' || 'a2')")
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let n = tokio::time::timeout(Duration::from_secs(5), a1_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n.channel(), "jobs_fn");
        got.push(n.payload().to_owned());
    }
    got.sort();
    assert_eq!(got, vec!["from-a2", "simple-a2"]);
    // B's listener on the same client name hears nothing; a forged upstream
    // name (B's prefix spelled out by A) is itself scoped to A.
    let b_prefix = {
        use base64::Engine as _;
        let id = uuid::Uuid::parse_str(ORG_B).unwrap();
        format!(
            "{}:",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
        )
    };
    a2.execute(&stmt, &[&format!("{b_prefix}jobs_fn"), &"forged"])
        .await
        .unwrap();
    b.batch_execute("SELECT 1").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), b_rx.recv())
            .await
            .is_err(),
        "tenant B heard tenant A"
    );
}

/// Sends a protocol 3.0 startup packet with `params` over any stream.
async fn send_startup<S: tokio::io::AsyncWrite + Unpin>(s: &mut S, params: &[(&str, &str)]) {
    let mut body = BytesMut::new();
    body.put_i32(3 << 16);
    for (k, v) in params {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut pkt = BytesMut::new();
    pkt.put_i32(body.len() as i32 + 4);
    pkt.put_slice(&body);
    s.write_all(&pkt).await.unwrap();
}

/// A field of an ErrorResponse body (`b'C'` code, `b'M'` message).
fn error_field(body: &[u8], field: u8) -> String {
    body.split(|b| *b == 0)
        .find(|f| f.first() == Some(&field))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_default()
}

/// Finishes a login on `s` (answering a cleartext request with `password`)
/// and runs `sql`: its first column, or the (SQLSTATE, message) of the
/// FATAL error that ended the login.
async fn login_and_query<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    password: &str,
    sql: &str,
) -> Result<Vec<String>, (String, String)> {
    loop {
        let (tag, body) = tokio::time::timeout(Duration::from_secs(10), read_msg(s))
            .await
            .unwrap();
        match tag {
            b'E' => return Err((error_field(&body, b'C'), error_field(&body, b'M'))),
            b'R' if body == 3i32.to_be_bytes() => {
                let mut pw = password.as_bytes().to_vec();
                pw.push(0);
                s.write_all(&msg(b'p', |b| b.put_slice(&pw))).await.unwrap();
            }
            b'Z' => break,
            _ => {}
        }
    }
    s.write_all(&query_msg(sql.as_bytes())).await.unwrap();
    let msgs = read_until_ready(s).await;
    let row = &msgs.iter().find(|m| m.0 == b'D').expect("a row").1;
    // DataRow: int16 count, then int32 length and bytes per column.
    let mut cols = Vec::new();
    let mut at = 2;
    while at < row.len() {
        let len = i32::from_be_bytes(row[at..at + 4].try_into().unwrap()) as usize;
        cols.push(String::from_utf8_lossy(&row[at + 4..at + 4 + len]).into_owned());
        at += 4 + len;
    }
    Ok(cols)
}

/// Backslash-escapes a value for libpq's `options` (`-c name=value`).
fn options_escape(v: &str) -> String {
    v.chars()
        .flat_map(|c| match c {
            '\\' | ' ' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

#[tokio::test]
async fn client_encoding_spellings_are_accepted_exactly_when_postgres_reads_them_as_utf8_or_sql_ascii() {
    // asyncpg sends 'utf-8' with the quotes; PostgreSQL ignores case and every
    // non-alphanumeric character, and knows UNICODE as UTF8.
    let pg = pg();
    let p = Proxy::start(&[]).await;
    // PostgreSQL 15 reads names of any length (newer releases refuse 64
    // bytes or more: the proxy then accepts more than they do, harmlessly).
    let long = format!("utf8{}", "-".repeat(300));
    let cases = [
        "UTF8",
        "utf8",
        "utf-8",
        "'utf-8'",
        "\"UTF-8\"",
        "Unicode",
        "UNICODE",
        "U_T_F_8",
        " utf 8 ",
        long.as_str(),
        "UTF16",
        "utf",
        "SQL_ASCII",
        "sql-ascii",
        "'SqlAscii'",
        "LATIN1",
        "",
    ];
    let socket = pg.dir.join(format!(".s.PGSQL.{}", pg.port));
    let mut mismatches = Vec::new();
    for value in cases {
        for in_options in [false, true] {
            let opts = format!("-c client_encoding={}", options_escape(value));
            let param = if in_options {
                ("options", opts.as_str())
            } else {
                ("client_encoding", value)
            };
            // PostgreSQL 15 itself (superuser over the Unix socket, trust).
            let mut direct = tokio::net::UnixStream::connect(&socket).await.unwrap();
            send_startup(&mut direct, &[("user", "postgres"), ("database", "app"), param]).await;
            let postgres = login_and_query(&mut direct, "", "SELECT pg_client_encoding()").await;
            // UTF8 is the pin; SQL_ASCII is what psql sends in the C locale,
            // accepted and answered with UTF8.
            let accepted = postgres == Ok(vec!["UTF8".to_owned()]) || postgres == Ok(vec!["SQL_ASCII".to_owned()]);
            // The same startup packet through the proxy.
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
            send_startup(&mut s, &[("user", "app"), ("database", "app"), param]).await;
            let token = p.token(ORG_A, Some(USER_A), 600);
            let proxied = login_and_query(
                &mut s,
                &token,
                "SELECT pg_client_encoding(), current_setting('app.current_organization_id')",
            )
            .await;
            let expected = if accepted {
                Ok(vec!["UTF8".to_owned(), ORG_A.to_owned()])
            } else {
                Err((
                    "28000".to_owned(),
                    format!("client_encoding \"{value}\" is not supported through pg-tenant-proxy"),
                ))
            };
            if proxied != expected {
                mismatches.push(format!(
                    "{param:?}: PostgreSQL answered {postgres:?}, the proxy {proxied:?}"
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
