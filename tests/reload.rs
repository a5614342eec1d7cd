//! Reload without restart (SIGHUP), through a running proxy against real
//! PostgreSQL: a rotated token key and changed guard limits apply to new
//! sessions at once while open sessions keep theirs; a configuration that
//! does not validate is refused and the running one stays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tokio_postgres::Client;

async fn org_of(c: &Client) -> String {
    c.query_one("SELECT current_setting('app.current_organization_id')", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_rotated_token_key_applies_to_new_sessions_and_open_ones_keep_working() {
    let p = Proxy::start(&[]).await;
    let old_token = p.token(ORG_A, Some(USER_A), 600);
    let open = p.try_connect(&old_token).await.unwrap();
    std::fs::write(&p.secret_file, "a-new-secret-for-the-rotation-test-0123456789").unwrap();
    assert!(p.reload().await, "{}", p.log_text());
    // The open session is not touched.
    assert_eq!(org_of(&open).await, ORG_A);
    // A token signed with the removed key is refused; one with the new key works.
    let Err(err) = p.try_connect(&old_token).await else {
        panic!("a token of the removed key was accepted");
    };
    assert_eq!(sqlstate(&err), "28P01");
    let new = p.try_connect(&p.token(ORG_B, Some(USER_B), 600)).await.unwrap();
    assert_eq!(org_of(&new).await, ORG_B);
    assert_eq!(org_of(&open).await, ORG_A);
}

#[tokio::test]
async fn guard_limits_change_for_new_sessions_and_a_broken_reload_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(&cfg, "[guard.setting_limits]\nwork_mem = \"64MB\"\n").unwrap();
    let p = Proxy::start(&["--config", cfg.to_str().unwrap()]).await;
    let before = p.connect(ORG_A, USER_A).await;

    std::fs::write(&cfg, "[guard.setting_limits]\nwork_mem = \"8MB\"\n").unwrap();
    assert!(p.reload().await, "{}", p.log_text());
    let after = p.connect(ORG_A, USER_A).await;
    let err = after.simple_query("SET work_mem = '16MB'").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    // The session opened before the reload keeps the ceiling it started with.
    before.simple_query("SET work_mem = '16MB'").await.unwrap();

    // A broken file: refused with the file and the key named; nothing changes.
    std::fs::write(&cfg, "[guard.setting_limits]\nwork_mem = \"lots\"\n").unwrap();
    assert!(!p.reload().await);
    let log = p.log_text();
    let line = log
        .lines()
        .rfind(|l| l.contains("configuration reload refused"))
        .unwrap();
    assert!(line.contains(cfg.to_str().unwrap()), "{line}");
    assert!(line.contains("guard.setting_limits.work_mem"), "{line}");
    let still = p.connect(ORG_A, USER_A).await;
    let err = still.simple_query("SET work_mem = '16MB'").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    still.simple_query("SET work_mem = '8MB'").await.unwrap();
}
