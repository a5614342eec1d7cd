//! The verified tenant context end to end: what the proxy sends, what
//! PostgreSQL accepts, and how the proxy refuses to run without a key. A real
//! `pg-tenant-proxy` in front of a real PostgreSQL 15 with `sql/` applied and
//! context key 1 installed (tests/common).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;

async fn status_and_rows(c: &tokio_postgres::Client) -> (String, i64) {
    let row = c
        .query_one(
            "SELECT tenant.context_status(), (SELECT count(*) FROM agent_instances WHERE agent_id LIKE '_-agent-_')",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn sessions_over_tcp_and_unix_sockets_verify() {
    let pg = pg();
    let tcp = Proxy::start(&[]).await;
    let unix_url = format!(
        "postgresql://proxy_login@localhost:{}/app?host={}",
        pg.port,
        pg.dir.display()
    );
    let unix = Proxy::start_with_upstream(&unix_url, &[]).await;
    for (name, p) in [("tcp", &tcp), ("unix", &unix)] {
        let c = p.connect(ORG_A, USER_A).await;
        assert_eq!(status_and_rows(&c).await, ("verified".to_owned(), 2), "{name}");
        let proof: String = c
            .query_one("SELECT current_setting('app.context_proof')", &[])
            .await
            .unwrap()
            .get(0);
        let fields: Vec<&str> = proof.split(',').collect();
        assert_eq!(fields.len(), 6, "{name}: {proof}");
        assert_eq!((fields[0], fields[1]), ("v1", "1"), "{name}");
        if name == "unix" {
            assert_eq!((fields[3], fields[4]), ("unix", ""));
        } else {
            // The binding is what the server sees of this connection.
            let row = c
                .query_one("SELECT host(inet_client_addr()), inet_client_port()::text", &[])
                .await
                .unwrap();
            assert_eq!(
                (fields[3].to_owned(), fields[4].to_owned()),
                (row.get::<_, String>(0), row.get::<_, String>(1))
            );
        }
    }
}

#[tokio::test]
async fn proof_expires_with_the_token_plus_leeway() {
    let p = Proxy::start(&["--jwt-leeway", "7"]).await;
    let before = pg_tenant_proxy::auth::jwt::unix_now();
    let token = p.token(ORG_B, Some(USER_B), 600);
    let c = p.try_connect(&token).await.unwrap();
    let proof: String = c
        .query_one("SELECT current_setting('app.context_proof')", &[])
        .await
        .unwrap()
        .get(0);
    let expires: u64 = proof.split(',').nth(2).unwrap().parse().unwrap();
    let after = pg_tenant_proxy::auth::jwt::unix_now();
    assert!(
        (before + 600 + 7..=after + 600 + 7).contains(&expires),
        "{expires} not in {before}..{after} + 607"
    );
}

#[tokio::test]
async fn a_proxy_with_verification_off_gets_no_rows_from_a_verifying_database() {
    let p = Proxy::start(&["--context-verification", "off"]).await;
    let c = p.connect(ORG_A, USER_A).await;
    assert_eq!(status_and_rows(&c).await, ("no proof".to_owned(), 0));
    let err = c
        .execute(
            "INSERT INTO agent_instances (agent_id, agent_type, status) VALUES ('ctx-off', 'chat', 'new')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    assert_eq!(
        db_message(&err),
        "new row violates row-level security policy for table \"agent_instances\""
    );
    assert!(p.log_text().contains("context verification is OFF"));
}

#[tokio::test]
async fn a_proxy_with_another_key_gets_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("other.key");
    std::fs::write(&key, "another-context-key-0123456789abcdef\n").unwrap();
    let p = Proxy::start(&["--context-key-file", key.to_str().unwrap()]).await;
    let c = p.connect(ORG_A, USER_A).await;
    assert_eq!(status_and_rows(&c).await, ("bad signature".to_owned(), 0));
    let p2 = Proxy::start(&[
        "--context-key-file",
        key.to_str().unwrap(),
        "--context-key-id",
        "not-installed",
    ])
    .await;
    let c2 = p2.connect(ORG_A, USER_A).await;
    assert_eq!(status_and_rows(&c2).await, ("unknown key".to_owned(), 0));
}

/// Runs `pg-tenant-proxy ARGS` with only the given environment and returns
/// (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_a_key_the_proxy_refuses_to_start_unless_verification_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt");
    std::fs::write(&secret, SECRET).unwrap();
    let base = [
        "serve",
        "--listen",
        "127.0.0.1:1",
        "--upstream",
        "postgresql://proxy_login@127.0.0.1:1/app",
        "--jwt-secret-file",
        secret.to_str().unwrap(),
    ];
    let (code, _, err) = run(&base, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid configuration: no context key: give --context-key-file FILE"),
        "{err}"
    );

    let short = dir.path().join("short.key");
    std::fs::write(&short, format!("{}\n", "k".repeat(31))).unwrap();
    let (code, _, err) = run(&base, &[("PGTP_CONTEXT_KEY_FILE", short.to_str().unwrap())]);
    assert_eq!(code, 2);
    assert!(
        err.contains("the context key must be at least 32 bytes (it has 31)"),
        "{err}"
    );

    // check-config names the mode and the key's fingerprint, never the key.
    let mut check = base;
    check[0] = "check-config";
    let good = dir.path().join("good.key");
    std::fs::write(&good, format!("{CONTEXT_KEY}\n")).unwrap();
    let (code, out, err) = run(
        &check,
        &[
            ("PGTP_CONTEXT_KEY_FILE", good.to_str().unwrap()),
            ("PGTP_CONTEXT_KEY_ID", "7"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let fingerprint = pg_tenant_proxy::context::ContextKey::new("7", CONTEXT_KEY.as_bytes())
        .unwrap()
        .fingerprint()
        .to_owned();
    assert!(
        out.contains(&format!(
            "context verification on (key id \"7\", fingerprint {fingerprint})"
        )),
        "{out}"
    );
    assert!(!out.contains(CONTEXT_KEY) && !err.contains(CONTEXT_KEY));

    let (code, out, err) = run(&check, &[("PGTP_CONTEXT_VERIFICATION", "off")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("context verification OFF"), "{out}");
}

#[tokio::test]
async fn the_key_never_reaches_the_log() {
    let p = Proxy::start(&[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    status_and_rows(&c).await;
    drop(c);
    let log = p.log_text();
    assert!(log.contains("context verification on"), "{log}");
    assert!(!log.contains(CONTEXT_KEY));
    assert!(!log.contains("app.context_proof="));
}
