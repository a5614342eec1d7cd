// The transaction pool mode tests, included by `tests/pooling.rs` (the
// default pin form) and `tests/pooling_set_local.rs` (the `set_local` pin
// form); each defines `PIN_FORM` and `mod common`.

use std::time::Duration;

use common::*;
use tokio_postgres::SimpleQueryMessage;

fn first_value(msgs: &[SimpleQueryMessage]) -> Option<String> {
    msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

/// The proxy's arguments for transaction pool mode in this file's pin
/// form, then `extra`.
fn pool_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--pool-mode", "transaction", "--pool-pin-form", PIN_FORM];
    args.extend_from_slice(extra);
    args
}

async fn pooled(size: &str) -> Proxy {
    Proxy::start(&pool_args(&["--pool-size", size])).await
}

/// The agent ids the client sees among both tenants' fixture rows.
async fn agents(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT agent_id FROM agent_instances WHERE agent_id LIKE 'a-agent-%' OR agent_id LIKE 'b-agent-%' ORDER BY agent_id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn agents_simple(c: &tokio_postgres::Client) -> Vec<String> {
    c.simple_query(
        "SELECT agent_id FROM agent_instances WHERE agent_id LIKE 'a-agent-%' OR agent_id LIKE 'b-agent-%' ORDER BY agent_id",
    )
    .await
    .unwrap()
    .iter()
    .filter_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
    .collect()
}

#[tokio::test]
async fn two_tenants_on_one_backend_see_only_their_own_rows() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    for _ in 0..3 {
        assert_eq!(agents(&a).await, ["a-agent-1", "a-agent-2"]);
        assert_eq!(agents(&b).await, ["b-agent-1"]);
        assert_eq!(agents_simple(&a).await, ["a-agent-1", "a-agent-2"]);
        assert_eq!(agents_simple(&b).await, ["b-agent-1"]);
    }
}

#[tokio::test]
async fn between_transactions_a_backend_carries_no_tenant() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    // The statement after COMMIT runs in a transaction of its own, which the
    // proxy did not pin: it shows what a pooled backend carries by itself.
    let rows = a
        .simple_query(
            "BEGIN; SELECT 1; COMMIT; SELECT coalesce(current_setting('app.current_organization_id', true), '') || '|' || (SELECT count(*) FROM agent_instances)",
        )
        .await
        .unwrap();
    let last = rows
        .iter()
        .rev()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap();
    assert_eq!(last, "|0");
    // The next transaction is pinned again.
    assert_eq!(agents_simple(&a).await, ["a-agent-1", "a-agent-2"]);
}

async fn value(c: &tokio_postgres::Client, sql: &str) -> String {
    first_value(&c.simple_query(sql).await.unwrap()).unwrap()
}

#[tokio::test]
async fn explicit_transactions_hold_the_backend_and_other_tenants_wait() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    a.batch_execute("BEGIN").await.unwrap();
    assert_eq!(agents(&a).await, ["a-agent-1", "a-agent-2"]);
    let waiting = tokio::spawn(async move { (agents(&b).await, b) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the other tenant ran inside this transaction's backend"
    );
    assert_eq!(agents_simple(&a).await, ["a-agent-1", "a-agent-2"]);
    a.batch_execute("COMMIT").await.unwrap();
    let (rows, b) = waiting.await.unwrap();
    assert_eq!(rows, ["b-agent-1"]);
    assert_eq!(agents(&b).await, ["b-agent-1"]);
}

#[tokio::test]
async fn errors_inside_a_transaction_and_rollback_behave_as_in_postgresql() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    a.batch_execute("BEGIN").await.unwrap();
    let err = a.query("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "22012");
    let err = a.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02");
    let err = a.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02");
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(agents(&a).await, ["a-agent-1", "a-agent-2"]);
    assert_eq!(agents(&b).await, ["b-agent-1"]);
    // Extended-protocol ROLLBACK after an error, too.
    a.batch_execute("BEGIN").await.unwrap();
    assert_eq!(sqlstate(&a.query("SELECT 1/0", &[]).await.unwrap_err()), "22012");
    a.execute("ROLLBACK", &[]).await.unwrap();
    assert_eq!(agents(&a).await, ["a-agent-1", "a-agent-2"]);
}

#[tokio::test]
async fn named_prepared_statements_of_two_tenants_never_collide_and_each_sees_its_rows() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    // tokio-postgres names statements s0, s1, ... in every connection.
    let sql = "SELECT agent_id FROM agent_instances WHERE agent_id LIKE $1 ORDER BY agent_id";
    let sa = a.prepare(sql).await.unwrap();
    let sb = b
        .prepare("SELECT count(*) FROM agent_instances WHERE agent_id LIKE $1")
        .await
        .unwrap();
    let sb2 = b.prepare(sql).await.unwrap();
    // Same text: one proxy-wide statement on the one backend, run by both
    // tenants; past five runs PostgreSQL may switch to its generic plan.
    for _ in 0..8 {
        let ra: Vec<String> = a
            .query(&sa, &[&"%-agent-%"])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(ra, ["a-agent-1", "a-agent-2"]);
        let nb: i64 = b.query_one(&sb, &[&"%-agent-%"]).await.unwrap().get(0);
        assert_eq!(nb, 1);
        let rb: Vec<String> = b
            .query(&sb2, &[&"%-agent-%"])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(rb, ["b-agent-1"]);
    }
    // Closing a statement forgets it for that client only.
    drop(sa);
    let rb: Vec<String> = b
        .query(&sb2, &[&"%-agent-%"])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rb, ["b-agent-1"]);
}

#[tokio::test]
async fn statements_prepared_on_one_backend_are_prepared_again_on_another() {
    let p = pooled("2").await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    let s = a
        .prepare("SELECT count(*) FROM agent_instances WHERE agent_id LIKE 'a-agent-%'")
        .await
        .unwrap();
    // Keep one backend busy with B's open transaction so A moves between both.
    for round in 0..4 {
        if round % 2 == 0 {
            b.batch_execute("BEGIN").await.unwrap();
            assert_eq!(agents(&b).await, ["b-agent-1"]);
        }
        let n: i64 = a.query_one(&s, &[]).await.unwrap().get(0);
        assert_eq!(n, 2, "round {round}");
        if round % 2 == 0 {
            b.batch_execute("COMMIT").await.unwrap();
        }
    }
}

#[tokio::test]
async fn session_state_that_would_outlive_the_transaction_is_refused_with_0a000() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    for sql in [
        "LISTEN jobs",
        "CREATE TEMP TABLE t (a int)",
        "SET work_mem = '8MB'",
        "PREPARE p AS SELECT 1",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "VACUUM agent_instances",
    ] {
        let err = a.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), "0A000", "{sql}");
        assert!(
            db_message(&err).contains("transaction pool mode"),
            "{sql}: {}",
            db_message(&err)
        );
        let err = a.execute(sql, &[]).await.unwrap_err();
        assert_eq!(sqlstate(&err), "0A000", "{sql} (extended)");
    }
    // Transaction-scoped forms work.
    a.batch_execute("BEGIN; SET LOCAL work_mem = '8MB'; DECLARE c CURSOR FOR SELECT 1; FETCH c; COMMIT")
        .await
        .unwrap();
    assert_eq!(agents(&a).await, ["a-agent-1", "a-agent-2"]);
}

#[tokio::test]
async fn tracked_settings_follow_the_client_from_backend_to_backend() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    a.batch_execute("SET application_name = 'tenant-a-app'").await.unwrap();
    a.batch_execute("SET statement_timeout = '1234ms'").await.unwrap();
    b.batch_execute("SET search_path = public").await.unwrap();
    for _ in 0..2 {
        assert_eq!(value(&a, "SHOW application_name").await, "tenant-a-app");
        assert_eq!(value(&a, "SHOW statement_timeout").await, "1234ms");
        assert_eq!(value(&b, "SHOW statement_timeout").await, "0");
        assert_eq!(value(&b, "SHOW search_path").await, "public");
        assert_ne!(value(&b, "SHOW application_name").await, "tenant-a-app");
    }
    // A SET rolled back is rolled back for the client too.
    a.batch_execute("BEGIN; SET statement_timeout = '5s'; ROLLBACK")
        .await
        .unwrap();
    assert_eq!(value(&b, "SHOW statement_timeout").await, "0");
    assert_eq!(value(&a, "SHOW statement_timeout").await, "1234ms");
    // RESET ALL and DISCARD ALL return to the client's startup values.
    a.batch_execute("RESET ALL").await.unwrap();
    assert_eq!(value(&b, "SHOW search_path").await, "public");
    assert_eq!(value(&a, "SHOW statement_timeout").await, "0");
    b.batch_execute("DISCARD ALL").await.unwrap();
    assert_ne!(value(&b, "SHOW search_path").await, "public");
    assert_eq!(agents(&b).await, ["b-agent-1"]);
}

#[tokio::test]
async fn startup_parameters_are_the_clients_own_values() {
    let p = pooled("1").await;
    let t = p.token(ORG_A, Some(USER_A), 600);
    let mut cfg = p.config(&t);
    cfg.application_name("startup-app").options("-c statement_timeout=4321");
    let (a, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let b = p.connect(ORG_B, USER_B).await;
    assert_eq!(value(&a, "SHOW application_name").await, "startup-app");
    assert_eq!(value(&b, "SHOW statement_timeout").await, "0");
    assert_eq!(value(&a, "SHOW statement_timeout").await, "4321ms");
    a.batch_execute("DISCARD ALL").await.unwrap();
    assert_eq!(value(&a, "SHOW application_name").await, "startup-app");
}

#[tokio::test]
async fn the_pin_moves_with_the_proof_and_postgresql_verifies_it() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    for _ in 0..2 {
        assert_eq!(value(&a, "SELECT tenant.current_organization_id()::text").await, ORG_A);
        assert_eq!(value(&b, "SELECT tenant.current_organization_id()::text").await, ORG_B);
        assert_eq!(value(&a, "SELECT tenant.context_status()").await, "verified");
        let row = b.query_one("SELECT tenant.current_user_id()::text", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), USER_B);
    }
}

#[tokio::test]
async fn a_cancel_reaches_only_the_senders_transaction() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    let token = a.cancel_token();
    let slow = tokio::spawn(async move {
        let r = a.simple_query("SELECT pg_sleep(5)").await;
        (r, a)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (r, a) = slow.await.unwrap();
    assert_eq!(sqlstate(&r.unwrap_err()), "57014");
    // A late cancel (A holds nothing now) does not touch B's work.
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    assert_eq!(
        value(
            &b,
            "SELECT count(*) FROM pg_sleep(0.3), agent_instances WHERE agent_id LIKE 'b-agent-%'"
        )
        .await,
        "1"
    );
    assert_eq!(agents(&a).await, ["a-agent-1", "a-agent-2"]);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_transaction_leaves_nothing_behind() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    a.batch_execute("BEGIN; SET LOCAL statement_timeout = '1ms'")
        .await
        .unwrap();
    drop(a);
    let b = p.connect(ORG_B, USER_B).await;
    assert_eq!(agents(&b).await, ["b-agent-1"]);
    assert_eq!(value(&b, "SHOW statement_timeout").await, "0");
    assert_eq!(
        value(&b, "SELECT current_setting('transaction_isolation')").await,
        "read committed"
    );
}

#[tokio::test]
async fn hundreds_of_tenant_sessions_share_a_few_backends() {
    let p = pooled("3").await;
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let (org, user, want): (&str, &str, Vec<&str>) = if i % 2 == 0 {
            (ORG_A, USER_A, vec!["a-agent-1", "a-agent-2"])
        } else {
            (ORG_B, USER_B, vec!["b-agent-1"])
        };
        let c = p.connect(org, user).await;
        tasks.push(tokio::spawn(async move {
            for round in 0..5 {
                let got = if round % 2 == 0 {
                    agents(&c).await
                } else {
                    agents_simple(&c).await
                };
                assert_eq!(got, want);
                if round == 3 {
                    c.batch_execute("BEGIN").await.unwrap();
                    assert_eq!(agents(&c).await, want);
                    let _ = c.simple_query("SELECT 1/0").await.unwrap_err();
                    c.batch_execute("ROLLBACK").await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn pipelines_copy_and_flush_behave_as_in_postgresql() {
    use common::wire::*;
    use futures_util::future::join_all;
    use tokio::io::AsyncWriteExt;
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    // tokio-postgres pipelines concurrent queries: many Syncs in flight.
    let stmt = a
        .prepare("SELECT count(*) FROM agent_instances WHERE agent_id LIKE $1")
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(
        join_all((0..20).map(|_| a.query_one(&stmt, &[&"%-agent-%"]))),
        join_all((0..20).map(|_| b.query_one(
            "SELECT count(*) FROM agent_instances WHERE agent_id LIKE $1",
            &[&"%-agent-%"]
        )))
    );
    assert!(ra.into_iter().all(|r| r.unwrap().get::<_, i64>(0) == 2));
    assert!(rb.into_iter().all(|r| r.unwrap().get::<_, i64>(0) == 1));
    // COPY TO STDOUT carries the tenant's rows only.
    let out = a
        .copy_out("COPY (SELECT agent_id FROM agent_instances WHERE agent_id LIKE '%-agent-%' ORDER BY 1) TO STDOUT")
        .await
        .unwrap();
    futures_util::pin_mut!(out);
    let mut text = Vec::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut out).await {
        text.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(text).unwrap(), "a-agent-1\na-agent-2\n");
    // Flush: the replies so far arrive before Sync, then the Sync's.
    let mut s = authenticated_socket(&p).await;
    let mut out = bytes::BytesMut::new();
    out.extend_from_slice(&msg(b'P', |m| {
        m.extend_from_slice(b"\0SELECT count(*) FROM agent_instances WHERE agent_id LIKE 'a-agent-%'\0\0\0");
    }));
    out.extend_from_slice(&msg(b'B', |m| m.extend_from_slice(b"\0\0\0\0\0\0\0\0")));
    out.extend_from_slice(&msg(b'D', |m| m.extend_from_slice(b"P\0")));
    out.extend_from_slice(&msg(b'E', |m| m.extend_from_slice(b"\0\0\0\0\0")));
    out.extend_from_slice(&msg(b'H', |_| {}));
    s.write_all(&out).await.unwrap();
    let mut got = Vec::new();
    while got.last().map(|(t, _): &(u8, Vec<u8>)| *t) != Some(b'C') {
        got.push(read_msg(&mut s).await);
    }
    assert_eq!(tags(&got), b"12TDC");
    s.write_all(&msg(b'S', |_| {})).await.unwrap();
    assert_eq!(read_msg(&mut s).await, (b'Z', b"I".to_vec()));
    // Describe of a statement before its Bind, in one pipeline with an error
    // in the middle: the server's skip-to-Sync is kept.
    let mut out = bytes::BytesMut::new();
    out.extend_from_slice(&msg(b'P', |m| m.extend_from_slice(b"s1\0SELECT $1::int + 1\0\0\0")));
    out.extend_from_slice(&msg(b'D', |m| m.extend_from_slice(b"Ss1\0")));
    out.extend_from_slice(&msg(b'B', |m| m.extend_from_slice(b"\0s1\0\0\0\0\x01\0\0\0\x01x\0\0")));
    out.extend_from_slice(&msg(b'E', |m| m.extend_from_slice(b"\0\0\0\0\0")));
    out.extend_from_slice(&msg(b'S', |_| {}));
    out.extend_from_slice(&msg(b'B', |m| m.extend_from_slice(b"\0s1\0\0\0\0\x01\0\0\0\x012\0\0")));
    out.extend_from_slice(&msg(b'E', |m| m.extend_from_slice(b"\0\0\0\0\0")));
    out.extend_from_slice(&msg(b'S', |_| {}));
    s.write_all(&out).await.unwrap();
    let first = read_until_ready(&mut s).await;
    assert_eq!(tags(&first), b"1tTEZ");
    assert_eq!(error_code(&first[3].1), "22P02");
    let second = read_until_ready(&mut s).await;
    assert_eq!(tags(&second), b"2DCZ");
    assert_eq!(second[1].1[6..], *b"3");
}

#[tokio::test]
async fn discard_all_in_the_extended_protocol_is_answered_for_the_session() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    a.batch_execute("SET application_name = 'before-discard'")
        .await
        .unwrap();
    let s = a.prepare("SELECT 1").await.unwrap();
    a.execute("DISCARD ALL", &[]).await.unwrap();
    assert_ne!(value(&a, "SHOW application_name").await, "before-discard");
    // The statement prepared before DISCARD ALL is gone, as in PostgreSQL.
    let err = a.query(&s, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "26000");
    assert_eq!(agents(&a).await, ["a-agent-1", "a-agent-2"]);
}

#[tokio::test]
async fn a_client_idle_in_a_transaction_is_closed_so_others_get_the_backend() {
    let p = Proxy::start(&pool_args(&["--pool-size", "1", "--pool-idle-transaction-timeout", "1"])).await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    a.batch_execute("BEGIN").await.unwrap();
    // B waits for the only backend; A's idle transaction is ended after 1 s.
    let started = std::time::Instant::now();
    assert_eq!(agents(&b).await, ["b-agent-1"]);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    let err = a.simple_query("SELECT 1").await.unwrap_err();
    assert!(a.is_closed(), "{err}");
    assert!(
        p.log_text().contains("25P03"),
        "the proxy logs why it closed the session"
    );
    // A long statement is not idleness.
    let c = p.connect(ORG_A, USER_A).await;
    assert_eq!(value(&c, "SELECT count(*) FROM pg_sleep(1.5)").await, "1");
}

#[tokio::test]
async fn with_every_backend_busy_a_client_gets_53300_after_the_checkout_timeout_and_goes_on() {
    let p = Proxy::start(&pool_args(&["--pool-size", "1", "--pool-checkout-timeout", "1"])).await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    a.batch_execute("BEGIN").await.unwrap();
    let err = b.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "53300");
    assert!(
        db_message(&err).contains("no database connection became free"),
        "{}",
        db_message(&err)
    );
    let err = b.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "53300");
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(agents(&b).await, ["b-agent-1"]);
    assert_eq!(agents_simple(&b).await, ["b-agent-1"]);
}

/// A proxy in transaction pool mode with `size` backends that log in as
/// `role`, a login role of its own, so a test can terminate exactly this
/// proxy's backends.
async fn pooled_as_own_login(su: &tokio_postgres::Client, role: &str, size: &str) -> Proxy {
    su.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE {role} LOGIN PASSWORD '{LOGIN_PASSWORD}' IN ROLE tenant_app; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    ))
    .await
    .unwrap();
    let upstream = format!("postgresql://{role}@127.0.0.1:{}/app?sslmode=disable", pg().port);
    Proxy::start_with_upstream(&upstream, &pool_args(&["--pool-size", size])).await
}

#[tokio::test]
async fn backends_closed_by_the_server_while_idle_are_replaced() {
    let su = superuser("app").await;
    let p = pooled_as_own_login(&su, "pool_restart_login", "2").await;
    let a = p.connect(ORG_A, USER_A).await;
    // Simple protocol first: tokio-postgres closes an extended query's
    // statement after returning its rows, and that Close could still be on
    // the backend when it is terminated (the next test covers that case).
    assert_eq!(agents_simple(&a).await, ["a-agent-1", "a-agent-2"]);
    let killed = su
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'pool_restart_login'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(killed, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(agents(&a).await, ["a-agent-1", "a-agent-2"]);
    let b = p.connect(ORG_B, USER_B).await;
    assert_eq!(agents_simple(&b).await, ["b-agent-1"]);
}

#[tokio::test]
async fn a_backend_terminated_inside_a_transaction_ends_that_session_only() {
    let su = superuser("app").await;
    let p = pooled_as_own_login(&su, "pool_fatal_login", "2").await;
    let token = p.token(ORG_A, Some(USER_A), 600);
    let (a, conn) = p.config(&token).connect(tokio_postgres::NoTls).await.unwrap();
    let conn = tokio::spawn(conn);
    // Inside a transaction the session holds its backend.
    a.batch_execute("BEGIN").await.unwrap();
    assert_eq!(agents_simple(&a).await, ["a-agent-1", "a-agent-2"]);
    let killed = su
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'pool_fatal_login'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(killed, 1);
    // The server's FATAL reaches the client, and its connection ends, as on
    // a direct connection.
    let err = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the session did not end after its backend was terminated")
        .unwrap()
        .unwrap_err();
    let db = err.as_db_error().expect("the server's error");
    assert_eq!(db.code().code(), "57P01");
    assert_eq!(db.message(), "terminating connection due to administrator command");
    assert!(a.is_closed());
    // Other sessions go on over a new backend.
    let b = p.connect(ORG_B, USER_B).await;
    assert_eq!(agents(&b).await, ["b-agent-1"]);
    let a2 = p.connect(ORG_A, USER_A).await;
    assert_eq!(agents(&a2).await, ["a-agent-1", "a-agent-2"]);
}

#[tokio::test]
async fn a_backend_terminated_under_a_request_ends_that_session_with_the_server_error() {
    let su = superuser("app").await;
    let p = pooled_as_own_login(&su, "pool_busy_login", "2").await;
    let a = p.connect(ORG_A, USER_A).await;
    let sleeper = tokio::spawn(async move { a.query("SELECT pg_sleep(30)", &[]).await });
    // Wait until the statement sleeps (not while it is still being
    // prepared: the backend could be idle in the pool by the time the
    // signal lands), then terminate its backend.
    let mut killed = 0;
    for _ in 0..100 {
        killed = su
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE usename = 'pool_busy_login' AND query LIKE 'SELECT pg_sleep%' AND state = 'active' \
                 AND wait_event = 'PgSleep'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if killed == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(killed, 1);
    let err = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("the request was not answered after its backend was terminated")
        .unwrap()
        .unwrap_err();
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not the server's error: {err:?}"));
    assert_eq!(db.code().code(), "57P01");
    assert_eq!(db.message(), "terminating connection due to administrator command");
    let b = p.connect(ORG_B, USER_B).await;
    assert_eq!(agents(&b).await, ["b-agent-1"]);
}

#[tokio::test]
async fn a_backend_that_dies_answering_a_lone_sync_ends_the_session_and_is_not_reused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A client's request that reaches the backend as a lone Sync (what a
    // driver's Close and Sync become when the proxy answers the Close). The
    // backend is stopped (SIGSTOP) and terminated before that Sync arrives,
    // so its FATAL is the Sync's only reply.
    let su = superuser("app").await;
    let p = pooled_as_own_login(&su, "pool_stop_login", "1").await;
    let mut a = wire::authenticated_socket(&p).await;
    a.write_all(&wire::query_msg(b"SELECT 1")).await.unwrap();
    assert_eq!(wire::tags(&wire::read_until_ready(&mut a).await), b"TDCZ");
    let pid: i32 = su
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE usename = 'pool_stop_login'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let signal = |sig: &str| {
        // The shell's own kill: no procps needed.
        let ok = std::process::Command::new("sh")
            .args(["-c", &format!("kill {sig} {pid}")])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let killed: bool = su
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    a.write_all(&wire::msg(b'S', |_| {})).await.unwrap();
    // Let the Sync reach the stopped backend.
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal("-CONT");
    // The client gets the server's FATAL, then the end of its connection.
    let (tag, body) = tokio::time::timeout(Duration::from_secs(10), wire::read_msg(&mut a))
        .await
        .expect("no reply to the Sync");
    assert_eq!(tag, b'E');
    assert_eq!(wire::error_code(&body), "57P01");
    assert!(String::from_utf8_lossy(&body).contains("\0Mterminating connection due to administrator command\0"));
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), a.read_to_end(&mut rest))
        .await
        .expect("the session went on after its backend's FATAL")
        .unwrap();
    assert_eq!(n, 0, "more after the FATAL: {rest:?}");
    // The pool's only backend was not given back: the next session gets a
    // new one and its rows.
    let b = p.connect(ORG_B, USER_B).await;
    assert_eq!(agents(&b).await, ["b-agent-1"]);
}

#[tokio::test]
async fn copy_from_stdin_streams_through_the_pooled_backend() {
    use futures_util::SinkExt;
    // Tenant tables refuse COPY FROM (row level security); a plain table
    // shows the protocol path.
    let su = superuser("app").await;
    su.batch_execute(
        "CREATE TABLE IF NOT EXISTS pool_copy_in (n int, t text); GRANT SELECT, INSERT ON pool_copy_in TO tenant_app",
    )
    .await
    .unwrap();
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    let sink = a.copy_in("COPY pool_copy_in (n, t) FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    for i in 0..1000 {
        sink.send(bytes::Bytes::from(format!("{i}\trow {i}\n"))).await.unwrap();
    }
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 1000);
    assert_eq!(agents(&b).await, ["b-agent-1"]);
    assert_eq!(
        value(&a, "SELECT count(*) FROM pool_copy_in WHERE t LIKE 'row %'").await,
        "1000"
    );
    // A tenant table refuses it, as PostgreSQL does, and the session goes on.
    // (Simple protocol: tokio-postgres's extended-protocol copy_in leaves its
    // connection unusable after this refusal even against PostgreSQL itself.)
    let err = a
        .simple_query("COPY agent_instances (agent_id) FROM STDIN")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
    assert_eq!(agents(&a).await, ["a-agent-1", "a-agent-2"]);
}

#[tokio::test]
async fn one_organization_cannot_take_every_backend() {
    // Pool of 2: each organization may hold 1 (half, rounded up).
    let p = pooled("2").await;
    let a1 = p.connect(ORG_A, USER_A).await;
    let a2 = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    a1.batch_execute("BEGIN").await.unwrap();
    let waiting = tokio::spawn(async move { (agents(&a2).await, a2) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the organization's second session got a second backend"
    );
    // The other organization is served at once.
    let started = std::time::Instant::now();
    assert_eq!(agents(&b).await, ["b-agent-1"]);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    a1.batch_execute("COMMIT").await.unwrap();
    let (rows, _a2) = waiting.await.unwrap();
    assert_eq!(rows, ["a-agent-1", "a-agent-2"]);
}

#[tokio::test]
async fn statement_names_behave_as_in_postgresql() {
    use common::wire::*;
    use tokio::io::AsyncWriteExt;
    let p = pooled("1").await;
    let mut s = authenticated_socket(&p).await;
    let parse = |name: &[u8]| {
        msg(b'P', |m| {
            m.extend_from_slice(name);
            m.extend_from_slice(b"\0SELECT 1\0\0\0");
        })
    };
    let sync = msg(b'S', |_| {});
    // A second Parse of the same name: 42P05, as PostgreSQL answers.
    let mut out = bytes::BytesMut::new();
    out.extend_from_slice(&parse(b"s1"));
    out.extend_from_slice(&sync);
    out.extend_from_slice(&parse(b"s1"));
    out.extend_from_slice(&sync);
    s.write_all(&out).await.unwrap();
    assert_eq!(tags(&read_until_ready(&mut s).await), b"1Z");
    let second = read_until_ready(&mut s).await;
    assert_eq!(tags(&second), b"EZ");
    assert_eq!(error_code(&second[0].1), "42P05");
    // Binding a name never prepared: 26000; after Close, the name is free.
    let mut out = bytes::BytesMut::new();
    out.extend_from_slice(&msg(b'B', |m| m.extend_from_slice(b"\0nope\0\0\0\0\0\0\0")));
    out.extend_from_slice(&sync);
    out.extend_from_slice(&msg(b'C', |m| m.extend_from_slice(b"Ss1\0")));
    out.extend_from_slice(&parse(b"s1"));
    out.extend_from_slice(&sync);
    s.write_all(&out).await.unwrap();
    let bound = read_until_ready(&mut s).await;
    assert_eq!(tags(&bound), b"EZ");
    assert_eq!(error_code(&bound[0].1), "26000");
    assert_eq!(tags(&read_until_ready(&mut s).await), b"31Z");
}
