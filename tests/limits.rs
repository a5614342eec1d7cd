//! Limits one tenant cannot push past, through the running proxy against real
//! PostgreSQL: sessions per organization, and ceilings on the resource
//! settings (memory per operation, timeouts the operator set).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tokio_postgres::Client;

async fn show(c: &Client, name: &str) -> String {
    c.query_one(&format!("SHOW {name}"), &[]).await.unwrap().get(0)
}

/// Agent rows the session sees, and how many of them belong to `org`.
async fn rows(c: &Client, org: &str) -> (i64, i64) {
    let r = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE organization_id = $1::text::uuid) FROM agent_instances",
            &[&org],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test]
async fn one_organization_cannot_take_every_session() {
    let p = Proxy::start(&["--max-sessions-per-org", "3"]).await;
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(p.connect(ORG_A, USER_A).await);
    }
    let Err(err) = p.try_connect(&p.token(ORG_A, Some(USER_A), 600)).await else {
        panic!("a fourth session of organization A was accepted");
    };
    assert_eq!(sqlstate(&err), "53300");
    assert_eq!(
        db_message(&err),
        "too many sessions for your organization: the proxy allows 3 at a time"
    );
    // Organization B is not affected, and its rows are its own.
    let b = p.connect(ORG_B, USER_B).await;
    assert_eq!(rows(&b, ORG_B).await, (1, 1));
    // A slot comes back when a session ends.
    drop(a.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let again = loop {
        match p.try_connect(&p.token(ORG_A, Some(USER_A), 600)).await {
            Ok(c) => break c,
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(sqlstate(&e), "53300");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("slot never came back: {e}"),
        }
    };
    assert_eq!(rows(&again, ORG_A).await, (2, 2));
}

#[tokio::test]
async fn memory_settings_have_default_ceilings() {
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    c.batch_execute("SET work_mem = '32MB'").await.unwrap();
    assert_eq!(show(&c, "work_mem").await, "32MB");
    let over = |name: &str, max: &str| {
        format!("pg-tenant-proxy: setting \"{name}\" may be at most {max} through the proxy (and a timeout cannot be turned off)")
    };
    for (sql, name, max) in [
        ("SET work_mem = '600MB'", "work_mem", "64MB"),
        ("SET work_mem = 1048576", "work_mem", "64MB"),
        ("BEGIN; SET LOCAL work_mem TO '1GB'", "work_mem", "64MB"),
        ("SET hash_mem_multiplier = 1000", "hash_mem_multiplier", "4"),
        ("SET maintenance_work_mem = '2GB'", "maintenance_work_mem", "256MB"),
        ("SELECT set_config('work_mem', '1GB', false)", "work_mem", "64MB"),
    ] {
        let err = c
            .simple_query(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql}: allowed"));
        assert_eq!(sqlstate(&err), "42501", "{sql}");
        assert_eq!(db_message(&err), over(name, max), "{sql}");
        c.batch_execute("ROLLBACK").await.unwrap();
    }
    // A spelling the proxy does not read is refused rather than guessed at.
    let err = c.simple_query("SET work_mem = '0x100000'").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    assert_eq!(
        db_message(&err),
        "pg-tenant-proxy: setting \"work_mem\" has a ceiling of 64MB through the proxy: give it as a constant number with a unit, e.g. '64MB'"
    );
    // A value that is not a constant cannot be checked, so it is refused.
    let Err(err) = c.prepare("SELECT set_config('work_mem', $1, false)").await else {
        panic!("set_config with a parameter for a limited setting was allowed");
    };
    assert_eq!(sqlstate(&err), "42501");
    assert_eq!(show(&c, "work_mem").await, "32MB");
    c.batch_execute("RESET work_mem").await.unwrap();
    assert_eq!(show(&c, "work_mem").await, "4MB");
}

#[tokio::test]
async fn a_timeout_the_operator_set_cannot_be_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(
        &cfg,
        "[guard.setting_limits]\nstatement_timeout = \"30s\"\nwork_mem = \"8MB\"\n",
    )
    .unwrap();
    let p = Proxy::start(&["--config", cfg.to_str().unwrap()]).await;
    let c = p.connect(ORG_A, USER_A).await;
    c.batch_execute("SET statement_timeout = '10s'").await.unwrap();
    assert_eq!(show(&c, "statement_timeout").await, "10s");
    for sql in [
        "SET statement_timeout = 0",
        "SET statement_timeout = '1h'",
        "SET SESSION statement_timeout TO 30001",
        "SELECT set_config('statement_timeout', '0', true)",
    ] {
        let err = c
            .simple_query(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql}: allowed"));
        assert_eq!(sqlstate(&err), "42501", "{sql}");
        assert_eq!(
            db_message(&err),
            "pg-tenant-proxy: setting \"statement_timeout\" may be at most 30s through the proxy (and a timeout cannot be turned off)",
            "{sql}"
        );
    }
    assert_eq!(show(&c, "statement_timeout").await, "10s");
    // The configured map replaces the defaults: work_mem is now 8MB at most.
    let err = c.simple_query("SET work_mem = '9MB'").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501");

    // The same ceiling holds for startup parameters.
    let token = p.token(ORG_A, Some(USER_A), 600);
    let mut cfg0 = p.config(&token);
    cfg0.options("-c statement_timeout=0");
    let err = cfg0
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("statement_timeout=0 at startup");
    assert_eq!(sqlstate(&err), "28000");
    assert_eq!(
        db_message(&err),
        "startup parameter \"statement_timeout\" is not allowed through pg-tenant-proxy"
    );
    let mut cfg5 = p.config(&token);
    cfg5.options("-c statement_timeout=5s");
    let (c5, conn) = cfg5.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(show(&c5, "statement_timeout").await, "5s");
}
