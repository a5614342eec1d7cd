//! The guard through the running proxy against real PostgreSQL: every attack
//! in the corpus is refused with its SQLSTATE, leaves the pinned settings as
//! they were, and exposes no other tenant's rows; every must-pass statement
//! reaches the server; and refusals are protocol-correct (simple and extended
//! protocol, pipelined, inside and outside transaction blocks).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod guard_corpus;

use bytes::{BufMut, BytesMut};
use common::wire::*;
use common::*;
use guard_corpus::{Case, Expect};
use tokio::io::AsyncWriteExt;
use tokio_postgres::{Client, SimpleQueryMessage};

const PROXY_PREFIX: &str = "pg-tenant-proxy";

async fn pinned(c: &Client) -> (String, String) {
    let rows = c
        .simple_query("SELECT current_setting('app.current_organization_id'), current_setting('app.current_user_id')")
        .await
        .unwrap();
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((r.get(0).unwrap().to_owned(), r.get(1).unwrap().to_owned())),
            _ => None,
        })
        .unwrap()
}

/// Rows of tenant B visible to this session (must always be 0 for tenant A).
async fn foreign_rows(c: &Client) -> i64 {
    let q = format!(
        "SELECT (SELECT count(*) FROM agent_instances WHERE organization_id = '{ORG_B}') + (SELECT count(*) FROM organizations WHERE id = '{ORG_B}')"
    );
    c.query_one(&q, &[]).await.unwrap().get(0)
}

/// The SQLSTATE of an attack's refusal; in transaction pool mode a LISTEN is
/// refused for the mode (0A000) before its channel is looked at.
fn expected_code_in(case: &Case, pooled: bool) -> &str {
    let listen = case
        .sql_str()
        .is_some_and(|s| s.trim_start().to_ascii_lowercase().starts_with("listen"));
    if pooled && listen {
        return "0A000";
    }
    expected_code(case)
}

fn expected_code(case: &Case) -> &str {
    match &case.expect {
        Expect::Deny(code) => code,
        other => panic!("{}: not an attack: {other:?}", case.name),
    }
}

#[tokio::test]
async fn every_attack_is_refused_and_changes_nothing() {
    let p = Proxy::start(&[]).await;
    every_attack(&p, None).await;
}

/// In transaction pool mode, with one backend shared by two tenants: every
/// attack is refused as in session mode, and nothing of it reaches the
/// other tenant's next transaction on the same backend.
#[tokio::test]
async fn every_attack_is_refused_in_transaction_pool_mode_and_nothing_persists() {
    let p = Proxy::start(&["--pool-mode", "transaction", "--pool-size", "1"]).await;
    let b = p.connect(ORG_B, USER_B).await;
    every_attack(&p, Some(&b)).await;
}

/// The same with the tenant pinned in the `set_local` form (the proxy's own
/// BEGIN and SET LOCAL queries around the client's statements).
#[tokio::test]
async fn every_attack_is_refused_in_the_set_local_pin_form_and_nothing_persists() {
    let p = Proxy::start(&[
        "--pool-mode",
        "transaction",
        "--pool-size",
        "1",
        "--pool-pin-form",
        "set_local",
    ])
    .await;
    let b = p.connect(ORG_B, USER_B).await;
    every_attack(&p, Some(&b)).await;
}

async fn every_attack(p: &Proxy, other: Option<&Client>) {
    let pooled = other.is_some();
    let attacks = guard_corpus::attacks();
    assert!(attacks.len() >= 60, "attack corpus has {} cases", attacks.len());
    let mut checked = 0;
    for case in &attacks {
        let Some(sql) = case.sql_str().filter(|s| !s.contains('\0')) else {
            continue;
        };
        let c = p.connect(ORG_A, USER_A).await;
        // Simple protocol.
        let err = c
            .simple_query(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{}: was not refused", case.name));
        let db = err.as_db_error().unwrap_or_else(|| panic!("{}: {err}", case.name));
        assert_eq!(
            db.code().code(),
            expected_code_in(case, pooled),
            "{}: {}",
            case.name,
            db.message()
        );
        assert!(
            db.message().starts_with(PROXY_PREFIX),
            "{}: refused by the server, not the proxy: {}",
            case.name,
            db.message()
        );
        // Extended protocol (Parse) is refused too.
        let err = c
            .prepare(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{}: Parse was not refused", case.name));
        let db = err.as_db_error().unwrap();
        assert_eq!(
            db.code().code(),
            expected_code_in(case, pooled),
            "{}: Parse: {}",
            case.name,
            db.message()
        );
        assert!(
            db.message().starts_with(PROXY_PREFIX),
            "{}: Parse refused by the server, not the proxy: {}",
            case.name,
            db.message()
        );
        // Nothing moved.
        c.batch_execute("ROLLBACK").await.ok();
        assert_eq!(
            pinned(&c).await,
            (ORG_A.to_owned(), USER_A.to_owned()),
            "{}: pinned settings moved",
            case.name
        );
        assert_eq!(
            foreign_rows(&c).await,
            0,
            "{}: tenant B's rows became visible",
            case.name
        );
        assert_eq!(
            c.query_one("SELECT current_user::text", &[])
                .await
                .unwrap()
                .get::<_, String>(0),
            "proxy_login",
            "{}",
            case.name
        );
        if let Some(b) = other {
            // The other tenant, next on the same backend.
            assert_eq!(
                pinned(b).await,
                (ORG_B.to_owned(), USER_B.to_owned()),
                "{}: the next tenant's pin moved",
                case.name
            );
            let q = format!("SELECT count(*) FROM agent_instances WHERE organization_id <> '{ORG_B}'");
            let n: i64 = b.query_one(&q, &[]).await.unwrap().get(0);
            assert_eq!(n, 0, "{}: the next tenant sees other rows", case.name);
        }
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} attacks ran through the proxy");
}

#[tokio::test]
async fn attacks_with_bytes_a_driver_cannot_send_are_refused() {
    // Invalid UTF-8 and embedded NULs go over a raw socket.
    let p = Proxy::start(&[]).await;
    let hex: Vec<Case> = guard_corpus::attacks()
        .into_iter()
        .filter(|c| c.sql_str().is_none() || c.sql.contains(&0))
        .collect();
    assert!(!hex.is_empty());
    for case in &hex {
        let mut s = authenticated_socket(&p).await;
        s.write_all(&query_msg(&case.sql)).await.unwrap();
        let msgs = read_until_ready(&mut s).await;
        assert_eq!(tags(&msgs), vec![b'E', b'Z'], "{}", case.name);
        // A NUL inside a Query makes the message malformed before any SQL is
        // read: the relay answers 08P01 as PostgreSQL would.
        let want = if case.sql.contains(&0) {
            "08P01"
        } else {
            expected_code(case)
        };
        assert_eq!(error_code(&msgs[0].1), want, "{}", case.name);
    }
}

#[tokio::test]
async fn every_must_pass_statement_reaches_the_server() {
    let p = Proxy::start(&[]).await;
    let cases = guard_corpus::must_pass();
    assert!(cases.len() >= 80);
    for case in &cases {
        let sql = case.sql_str().unwrap();
        let c = p.connect(ORG_A, USER_A).await;
        match c.simple_query(sql).await {
            Ok(_) => {}
            Err(e) => {
                // The server may refuse a statement (a table the corpus names
                // may not exist here); the proxy must not.
                let msg = db_message(&e);
                assert!(
                    !msg.starts_with(PROXY_PREFIX),
                    "{}: refused by the proxy: {msg}",
                    case.name
                );
            }
        }
        c.batch_execute("ROLLBACK").await.ok();
        assert_eq!(pinned(&c).await.0, ORG_A, "{}", case.name);
    }
}

#[tokio::test]
async fn refusal_inside_a_transaction_aborts_it_like_a_server_error() {
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("INSERT INTO agent_instances (agent_id, agent_type, status) VALUES ('guard-tx-1', 'chat', 'new')")
        .await
        .unwrap();
    let err = c
        .batch_execute(&format!("SET app.current_organization_id = '{ORG_B}'"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    let err = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02", "the transaction must be aborted");
    c.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM agent_instances WHERE agent_id = 'guard-tx-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the aborted transaction's insert is gone");
    assert_eq!(pinned(&c).await.0, ORG_A);
    // Extended protocol inside a transaction behaves the same.
    c.batch_execute("BEGIN").await.unwrap();
    let err = c
        .query("SELECT set_config('app.current_organization_id', $1, false)", &[&ORG_B])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    let err = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(c.query_one("SELECT 2", &[]).await.unwrap().get::<_, i32>(0), 2);
}

#[tokio::test]
async fn refused_multi_statement_query_runs_none_of_it() {
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    let err = c
        .batch_execute("INSERT INTO agent_instances (agent_id, agent_type, status) VALUES ('guard-multi-1', 'chat', 'new'); SET ROLE tenant_owner")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM agent_instances WHERE agent_id = 'guard-multi-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn pipelined_queries_around_a_refusal_stay_in_order() {
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    let bad = format!("SELECT set_config('app.current_organization_id', '{ORG_B}', false)");
    let (r1, r2, r3, r4) = tokio::join!(
        c.query_one("SELECT 1::int", &[]),
        c.query_one(bad.as_str(), &[]),
        c.query_one("SELECT 3::int", &[]),
        c.simple_query("SET ROLE tenant_owner"),
    );
    assert_eq!(r1.unwrap().get::<_, i32>(0), 1);
    assert_eq!(sqlstate(&r2.unwrap_err()), "42501");
    assert_eq!(r3.unwrap().get::<_, i32>(0), 3);
    assert_eq!(sqlstate(&r4.unwrap_err()), "42501");
    assert_eq!(pinned(&c).await.0, ORG_A);
}

fn parse_bind_execute(sql: &str) -> BytesMut {
    let mut out = msg(b'P', |b| {
        b.put_u8(0);
        b.put_slice(sql.as_bytes());
        b.put_u8(0);
        b.put_i16(0);
    });
    out.extend_from_slice(&msg(b'B', |b| {
        b.put_u8(0);
        b.put_u8(0);
        b.put_i16(0);
        b.put_i16(0);
        b.put_i16(0);
    }));
    out.extend_from_slice(&msg(b'E', |b| {
        b.put_u8(0);
        b.put_i32(0);
    }));
    out
}

#[tokio::test]
async fn refused_parse_discards_until_sync_like_postgresql() {
    let p = Proxy::start(&[]).await;
    let mut s = authenticated_socket(&p).await;
    // Pipeline without Sync: a refused Parse, then a good statement; one Sync.
    let mut batch = parse_bind_execute("SELECT set_config('app.current_organization_id', 'x', false)");
    batch.extend_from_slice(&parse_bind_execute("SELECT 42"));
    batch.extend_from_slice(&msg(b'S', |_| {}));
    s.write_all(&batch).await.unwrap();
    let msgs = read_until_ready(&mut s).await;
    assert_eq!(
        tags(&msgs),
        vec![b'E', b'Z'],
        "everything after the refusal is discarded until Sync"
    );
    assert_eq!(error_code(&msgs[0].1), "42501");
    assert_eq!(msgs[1].1, b"I");
    // The session is in sync: the same good statement now runs.
    let mut batch = parse_bind_execute("SELECT 42");
    batch.extend_from_slice(&msg(b'S', |_| {}));
    s.write_all(&batch).await.unwrap();
    let msgs = read_until_ready(&mut s).await;
    assert_eq!(tags(&msgs), vec![b'1', b'2', b'D', b'C', b'Z']);
    // In a transaction block, ReadyForQuery reports the failed state.
    s.write_all(&query_msg(b"BEGIN")).await.unwrap();
    read_until_ready(&mut s).await;
    let mut batch = parse_bind_execute("SET ROLE tenant_owner");
    batch.extend_from_slice(&msg(b'S', |_| {}));
    s.write_all(&batch).await.unwrap();
    let msgs = read_until_ready(&mut s).await;
    assert_eq!(tags(&msgs), vec![b'E', b'Z']);
    assert_eq!(msgs[1].1, b"E", "transaction status is failed");
}

#[tokio::test]
async fn fast_path_function_call_is_refused() {
    let p = Proxy::start(&[]).await;
    let mut s = authenticated_socket(&p).await;
    // FunctionCall of set_config (OID 2078) with three text arguments.
    let call = msg(b'F', |b| {
        b.put_i32(2078);
        b.put_i16(1);
        b.put_i16(0);
        b.put_i16(3);
        for a in ["app.current_organization_id", ORG_B, "false"] {
            b.put_i32(a.len() as i32);
            b.put_slice(a.as_bytes());
        }
        b.put_i16(0);
    });
    s.write_all(&call).await.unwrap();
    let msgs = read_until_ready(&mut s).await;
    assert_eq!(tags(&msgs), vec![b'E', b'Z']);
    assert_eq!(error_code(&msgs[0].1), "42501");
    s.write_all(&query_msg(b"SELECT current_setting('app.current_organization_id')"))
        .await
        .unwrap();
    let msgs = read_until_ready(&mut s).await;
    let row = msgs.iter().find(|m| m.0 == b'D').unwrap();
    assert!(String::from_utf8_lossy(&row.1).contains(ORG_A));
}

#[tokio::test]
async fn statement_over_the_size_limit_is_refused_and_the_session_goes_on() {
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    // Just over the default guard.max_statement_bytes (1 MiB).
    let long = format!("SELECT length('{}')", "x".repeat(1 << 20));
    let err = c.simple_query(&long).await.unwrap_err();
    assert_eq!(sqlstate(&err), "54000");
    let msg = err.as_db_error().unwrap().message();
    assert!(
        msg.starts_with(PROXY_PREFIX) && msg.contains("up to 1048576 bytes"),
        "{msg}"
    );
    // Under the limit the same statement runs.
    let fits = format!("SELECT length('{}')", "x".repeat((1 << 20) - 100));
    let rows = c.simple_query(&fits).await.unwrap();
    let n = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(n.as_deref(), Some("1048476"));
    assert_eq!(pinned(&c).await.0, ORG_A);
}

#[tokio::test]
async fn plain_statements_decided_without_a_parse_behave_like_postgresql() {
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    let first_value = |rows: Vec<SimpleQueryMessage>| {
        rows.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
    };
    // One plain statement with trailing semicolons and whitespace runs.
    let rows = c.simple_query("SELECT 'a;' || 'b' AS x ;\n ;").await.unwrap();
    assert_eq!(first_value(rows).as_deref(), Some("a;b"));
    // A plain statement that does not parse reaches the server, which
    // refuses it with its own syntax error; the session goes on.
    let err = c.simple_query("SELECT FROM WHERE (").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42601");
    let msg = err.as_db_error().unwrap().message();
    assert!(msg.starts_with("syntax error"), "{msg}");
    let rows = c.simple_query("SELECT 7").await.unwrap();
    assert_eq!(first_value(rows).as_deref(), Some("7"));
    // A protected name after a second statement is still found and refused.
    let err = c
        .simple_query("SELECT 1; SELECT set_config('app.current_organization_id', 'x', false)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    assert_eq!(pinned(&c).await, (ORG_A.to_owned(), USER_A.to_owned()));
}

/// The message text of an ErrorResponse body.
fn error_message(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .split('\0')
        .find_map(|f| f.strip_prefix('M'))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn oversized_statement_is_refused_before_it_is_buffered() {
    let p = Proxy::start(&[]).await;
    let mut s = authenticated_socket(&p).await;
    // A Query that declares 48 MiB (under the 64 MiB frame cap, far over the
    // 1 MiB statement limit): the refusal must come back after only its first
    // 256 KiB, so the proxy never holds the rest.
    let declared: usize = 48 << 20;
    let mut head = BytesMut::new();
    head.put_u8(b'Q');
    head.put_i32(i32::try_from(declared).unwrap());
    head.put_slice(b"SELECT '");
    let first = vec![b'x'; 256 << 10];
    s.write_all(&head).await.unwrap();
    s.write_all(&first).await.unwrap();
    let msgs = tokio::time::timeout(std::time::Duration::from_secs(10), read_until_ready(&mut s))
        .await
        .expect("no refusal before the statement was complete");
    assert_eq!(tags(&msgs), vec![b'E', b'Z']);
    assert_eq!(error_code(&msgs[0].1), "54000");
    let text = error_message(&msgs[0].1);
    assert!(
        text.starts_with(PROXY_PREFIX) && text.contains("up to 1048576 bytes"),
        "{text}"
    );
    // The rest of the frame is dropped as it arrives; the session goes on.
    let sent = head.len() - 1 + first.len();
    let mut rest = vec![b'x'; declared - sent - 2];
    rest.extend_from_slice(b"'\0");
    s.write_all(&rest).await.unwrap();
    s.write_all(&query_msg(b"SELECT current_setting('app.current_organization_id')"))
        .await
        .unwrap();
    let msgs = read_until_ready(&mut s).await;
    assert_eq!(tags(&msgs), vec![b'T', b'D', b'C', b'Z']);
    assert!(String::from_utf8_lossy(&msgs[1].1).contains(ORG_A));
}

#[tokio::test]
async fn refusals_pipelined_past_the_kept_limit_never_show_the_marker() {
    let p = Proxy::start(&[]).await;
    let mut s = authenticated_socket(&p).await;
    // 1,500 refused statements in one write, then one that runs.
    let mut batch = BytesMut::new();
    for _ in 0..1500 {
        batch.extend_from_slice(&query_msg(b"SET app.current_organization_id = 'x'"));
    }
    batch.extend_from_slice(&query_msg(b"SELECT current_setting('app.current_organization_id')"));
    s.write_all(&batch).await.unwrap();
    for n in 0..1500 {
        let msgs = read_until_ready(&mut s).await;
        assert_eq!(tags(&msgs), vec![b'E', b'Z'], "statement {n}");
        assert_eq!(error_code(&msgs[0].1), "42501", "statement {n}");
        let text = error_message(&msgs[0].1);
        assert!(text.starts_with(PROXY_PREFIX), "statement {n}: {text}");
        assert!(!text.contains("pgtp_refused"), "statement {n}: {text}");
    }
    let msgs = read_until_ready(&mut s).await;
    assert_eq!(tags(&msgs), vec![b'T', b'D', b'C', b'Z']);
    assert!(String::from_utf8_lossy(&msgs[1].1).contains(ORG_A));
}

#[tokio::test]
async fn cr_ended_comment_cannot_move_the_tenant_in_either_protocol() {
    // The reported bypass: PostgreSQL ends a `--` comment at CR, so the
    // server reads `/* ... */ SET ...` where a LF-only screen saw a SELECT.
    let p = Proxy::start(&[]).await;
    let attack = format!("-- x\r/*\nSELECT */ SET app.current_organization_id = '{ORG_B}'");
    let c = p.connect(ORG_A, USER_A).await;
    let err = c.simple_query(&attack).await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    assert_eq!(
        db_message(&err),
        "pg-tenant-proxy: setting \"app.current_organization_id\" is pinned by the proxy and cannot be changed"
    );
    let Err(err) = c.prepare(&attack).await else {
        panic!("Parse of the attack was allowed");
    };
    assert_eq!(sqlstate(&err), "42501");
    assert_eq!(pinned(&c).await, (ORG_A.to_owned(), USER_A.to_owned()));
    assert_eq!(foreign_rows(&c).await, 0);
    let own: i64 = c
        .query_one("SELECT count(*) FROM agent_instances", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(own, 2);
}

#[tokio::test]
async fn pg_notify_too_deep_once_scoped_is_refused_and_the_session_goes_on() {
    use pg_tenant_proxy::guard::{Guard, GuardConfig, TenantScope, Verdict};
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    // The shallowest call the guard refuses: its scoped form,
    // '<prefix>' || (+...+1), would be nested deeper than the guard reads.
    let sql = |n: usize| format!("SELECT pg_notify({}1, 'p')", "+".repeat(n));
    let guard = Guard::new(&GuardConfig::default()).unwrap();
    let scope = TenantScope::new(uuid::Uuid::parse_str(ORG_A).unwrap());
    let n = (0..200)
        .find(|n| matches!(guard.check_query(sql(*n).as_bytes(), &scope), Verdict::Deny(_)))
        .unwrap();
    // Refused for its scoped form: its own tree still decodes.
    assert!(pg_query::parse(&sql(n), 0).is_ok(), "{}", sql(n));
    let err = c.simple_query(&sql(n)).await.unwrap_err();
    assert_eq!(sqlstate(&err), "54000");
    assert!(db_message(&err).starts_with(PROXY_PREFIX), "{}", db_message(&err));
    // One level less is scoped and runs (the prefix makes the channel text).
    c.simple_query(&sql(n - 1)).await.unwrap();
    assert_eq!(pinned(&c).await, (ORG_A.to_owned(), USER_A.to_owned()));
}
