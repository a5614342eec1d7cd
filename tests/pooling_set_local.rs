//! Transaction pool mode with the tenant pinned in the `set_local` form
//! (`--pool-pin-form set_local`, the form Citus forwards to its workers),
//! through a real proxy in front of a real PostgreSQL 15: every transaction
//! pool test runs again in this form, then what the form does on its own:
//! the proxy opens each transaction with `BEGIN` and one `SET LOCAL` query
//! per setting, commits an autocommit statement's block after it, and the
//! client sees the transaction status, errors and notices it would see on a
//! direct connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

/// The pin form these tests run with.
const PIN_FORM: &str = "set_local";

include!("pooling/cases.rs");

/// A table tenants may write without row level security, created once.
async fn scratch_table(su: &tokio_postgres::Client) {
    su.batch_execute(
        "CREATE TABLE IF NOT EXISTS pool_set_local (n int, t text); \
         CREATE TABLE IF NOT EXISTS pool_set_local_deferred (n int UNIQUE DEFERRABLE INITIALLY DEFERRED); \
         GRANT SELECT, INSERT, DELETE ON pool_set_local, pool_set_local_deferred TO tenant_app",
    )
    .await
    .unwrap();
}

/// The ReadyForQuery status at the end of `msgs`.
fn status(msgs: &[(u8, Vec<u8>)]) -> u8 {
    let (tag, body) = msgs.last().unwrap();
    assert_eq!(*tag, b'Z');
    body[0]
}

/// Parse, Bind and Execute of `sql` as the unnamed statement and portal.
fn unnamed(out: &mut bytes::BytesMut, sql: &[u8]) {
    use common::wire::msg;
    out.extend_from_slice(&msg(b'P', |m| {
        m.extend_from_slice(b"\0");
        m.extend_from_slice(sql);
        m.extend_from_slice(b"\0\0\0");
    }));
    out.extend_from_slice(&msg(b'B', |m| m.extend_from_slice(b"\0\0\0\0\0\0\0\0")));
    out.extend_from_slice(&msg(b'E', |m| m.extend_from_slice(b"\0\0\0\0\0")));
}

#[tokio::test]
async fn each_setting_is_its_own_set_local_query_inside_a_begin() {
    // What Citus needs: SET LOCAL inside an explicit block, each in a query
    // string of its own. PostgreSQL logs every statement of this login role.
    let su = superuser("app").await;
    su.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE pool_set_local_log LOGIN PASSWORD '{LOGIN_PASSWORD}' IN ROLE tenant_app; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         ALTER ROLE pool_set_local_log SET log_statement = 'all'"
    ))
    .await
    .unwrap();
    let p = pooled_as_own_login(&su, "pool_set_local_log", "1").await;
    let a = p.connect(ORG_A, USER_A).await;
    assert_eq!(value(&a, "SELECT 'marker-7f3a'").await, "marker-7f3a");
    let pid: i32 = su
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE usename = 'pool_set_local_log'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let log = std::fs::read_to_string(pg().dir.join("server.log")).unwrap();
    let ours: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("[{pid}]")))
        .filter_map(|l| l.split_once("LOG:  statement: ").map(|(_, s)| s))
        .collect();
    let at = ours
        .iter()
        .position(|s| *s == "SELECT 'marker-7f3a'")
        .unwrap_or_else(|| panic!("{ours:#?}"));
    let proof = ours[at - 1];
    assert!(
        proof.starts_with("SET LOCAL app.context_proof = 'v1,") && proof.ends_with('\''),
        "{proof}"
    );
    assert_eq!(
        ours[at - 4..at - 1],
        [
            "BEGIN".to_owned(),
            format!("SET LOCAL app.current_organization_id = '{ORG_A}'"),
            format!("SET LOCAL app.current_user_id = '{USER_A}'"),
        ]
    );
    assert_eq!(ours.get(at + 1).copied(), Some("COMMIT"), "{ours:#?}");
}

#[tokio::test]
async fn an_autocommit_statement_runs_pinned_in_a_block_that_is_committed() {
    use common::wire::*;
    use tokio::io::AsyncWriteExt;
    let su = superuser("app").await;
    scratch_table(&su).await;
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    // LOCK TABLE runs only in a transaction block: PostgreSQL refuses it
    // as an autocommit statement on a direct connection (25P01).
    a.batch_execute("LOCK TABLE pool_set_local IN ACCESS SHARE MODE")
        .await
        .unwrap();
    a.execute("LOCK TABLE pool_set_local IN ACCESS SHARE MODE", &[])
        .await
        .unwrap();
    // Writes are committed: another connection sees them at once.
    a.batch_execute("INSERT INTO pool_set_local VALUES (1, 'simple-commit')")
        .await
        .unwrap();
    a.execute("INSERT INTO pool_set_local VALUES (2, 'extended-commit')", &[])
        .await
        .unwrap();
    let n: i64 = su
        .query_one(
            "SELECT count(*) FROM pool_set_local WHERE t IN ('simple-commit', 'extended-commit')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(n >= 2, "{n}");
    // The client is told its session is idle, simple and extended.
    let mut s = authenticated_socket(&p).await;
    s.write_all(&query_msg(b"SELECT tenant.current_organization_id()::text"))
        .await
        .unwrap();
    let got = read_until_ready(&mut s).await;
    assert_eq!(tags(&got), b"TDCZ");
    assert_eq!(got[1].1[6..], *ORG_A.as_bytes());
    assert_eq!(status(&got), b'I');
    let mut out = bytes::BytesMut::new();
    unnamed(&mut out, b"SELECT tenant.current_organization_id()::text");
    out.extend_from_slice(&msg(b'S', |_| {}));
    s.write_all(&out).await.unwrap();
    let got = read_until_ready(&mut s).await;
    assert_eq!(tags(&got), b"12DCZ");
    assert_eq!(got[2].1[6..], *ORG_A.as_bytes());
    assert_eq!(status(&got), b'I');
}

#[tokio::test]
async fn the_clients_own_begin_opens_its_transaction_without_a_warning() {
    use common::wire::*;
    use tokio::io::AsyncWriteExt;
    let p = pooled("1").await;
    let mut s = authenticated_socket(&p).await;
    // Simple protocol: BEGIN gets CommandComplete and `T`, no notice.
    s.write_all(&query_msg(b"BEGIN ISOLATION LEVEL REPEATABLE READ"))
        .await
        .unwrap();
    let got = read_until_ready(&mut s).await;
    assert_eq!(tags(&got), b"CZ");
    assert_eq!(status(&got), b'T');
    s.write_all(&query_msg(b"SHOW transaction_isolation")).await.unwrap();
    let got = read_until_ready(&mut s).await;
    assert_eq!(got[1].1[6..], *b"repeatable read");
    assert_eq!(status(&got), b'T');
    // A second BEGIN inside the client's transaction warns, as PostgreSQL does.
    s.write_all(&query_msg(b"BEGIN")).await.unwrap();
    let got = read_until_ready(&mut s).await;
    assert_eq!(tags(&got), b"NCZ");
    assert_eq!(error_code(&got[0].1), "25001");
    s.write_all(&query_msg(b"COMMIT")).await.unwrap();
    let got = read_until_ready(&mut s).await;
    assert_eq!(tags(&got), b"CZ");
    assert_eq!(status(&got), b'I');
    // Extended protocol: the same.
    let mut out = bytes::BytesMut::new();
    unnamed(&mut out, b"BEGIN");
    out.extend_from_slice(&msg(b'S', |_| {}));
    s.write_all(&out).await.unwrap();
    let got = read_until_ready(&mut s).await;
    assert_eq!(tags(&got), b"12CZ");
    assert_eq!(status(&got), b'T');
    s.write_all(&query_msg(b"SELECT tenant.current_organization_id()::text; COMMIT"))
        .await
        .unwrap();
    let got = read_until_ready(&mut s).await;
    assert_eq!(tags(&got), b"TDCCZ");
    assert_eq!(got[1].1[6..], *ORG_A.as_bytes());
    assert_eq!(status(&got), b'I');
}

#[tokio::test]
async fn an_error_in_an_autocommit_statement_rolls_its_block_back() {
    use common::wire::*;
    use tokio::io::AsyncWriteExt;
    let su = superuser("app").await;
    scratch_table(&su).await;
    let p = pooled("1").await;
    let mut s = authenticated_socket(&p).await;
    s.write_all(&query_msg(
        b"INSERT INTO pool_set_local VALUES (3, 'rolled-back'); SELECT 1/0",
    ))
    .await
    .unwrap();
    let got = read_until_ready(&mut s).await;
    assert_eq!(tags(&got), b"CEZ");
    assert_eq!(error_code(&got[1].1), "22012");
    assert_eq!(status(&got), b'I');
    // Extended protocol: an error skips the rest of the block; `I` after.
    let mut out = bytes::BytesMut::new();
    unnamed(&mut out, b"INSERT INTO pool_set_local VALUES (4, 'rolled-back')");
    unnamed(&mut out, b"SELECT 1/0");
    out.extend_from_slice(&msg(b'S', |_| {}));
    s.write_all(&out).await.unwrap();
    let got = read_until_ready(&mut s).await;
    // PostgreSQL folds 1/0 when it plans the statement, at Bind.
    assert_eq!(tags(&got), b"12C1EZ");
    assert_eq!(error_code(&got[4].1), "22012");
    assert_eq!(status(&got), b'I');
    let n: i64 = su
        .query_one("SELECT count(*) FROM pool_set_local WHERE t = 'rolled-back'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // The session goes on, pinned.
    s.write_all(&query_msg(b"SELECT tenant.current_organization_id()::text"))
        .await
        .unwrap();
    let got = read_until_ready(&mut s).await;
    assert_eq!(got[1].1[6..], *ORG_A.as_bytes());
}

#[tokio::test]
async fn a_constraint_that_fails_at_commit_is_the_clients_error() {
    let su = superuser("app").await;
    scratch_table(&su).await;
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    let err = a
        .batch_execute("INSERT INTO pool_set_local_deferred VALUES (41), (41)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23505");
    let err = a
        .execute("INSERT INTO pool_set_local_deferred VALUES (42), (42)", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23505");
    let n: i64 = su
        .query_one("SELECT count(*) FROM pool_set_local_deferred WHERE n IN (41, 42)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    assert_eq!(agents(&a).await, ["a-agent-1", "a-agent-2"]);
}

#[tokio::test]
async fn a_statement_after_commit_in_the_same_sync_block_is_refused() {
    use common::wire::*;
    use tokio::io::AsyncWriteExt;
    let p = pooled("1").await;
    let mut s = authenticated_socket(&p).await;
    s.write_all(&query_msg(b"BEGIN")).await.unwrap();
    assert_eq!(status(&read_until_ready(&mut s).await), b'T');
    let mut out = bytes::BytesMut::new();
    unnamed(&mut out, b"COMMIT");
    unnamed(&mut out, b"SELECT count(*) FROM agent_instances");
    out.extend_from_slice(&msg(b'S', |_| {}));
    s.write_all(&out).await.unwrap();
    let got = read_until_ready(&mut s).await;
    assert_eq!(tags(&got), b"12C12EZ");
    assert_eq!(error_code(&got[5].1), "0A000");
    assert!(
        String::from_utf8_lossy(&got[5].1).contains("pin form set_local"),
        "{:?}",
        String::from_utf8_lossy(&got[5].1)
    );
    assert_eq!(status(&got), b'I');
    // ROLLBACK TO SAVEPOINT does not end the transaction: what follows runs,
    // still pinned.
    s.write_all(&query_msg(b"BEGIN")).await.unwrap();
    read_until_ready(&mut s).await;
    let mut out = bytes::BytesMut::new();
    unnamed(&mut out, b"SAVEPOINT a");
    unnamed(&mut out, b"ROLLBACK TO SAVEPOINT a");
    unnamed(&mut out, b"SELECT tenant.current_organization_id()::text");
    out.extend_from_slice(&msg(b'S', |_| {}));
    s.write_all(&out).await.unwrap();
    let got = read_until_ready(&mut s).await;
    assert_eq!(tags(&got), b"12C12C12DCZ");
    assert_eq!(got[8].1[6..], *ORG_A.as_bytes());
    assert_eq!(status(&got), b'T');
}
