//! `pg-tenant-proxy audit` against a real PostgreSQL 15 with `sql/` applied:
//! a clean database (exit 0, "no findings"), one with planted mistakes (exit
//! 1, each finding named, text and JSON), and the error cases (exit 2 with a
//! clear message that never shows the password).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::*;

/// Database `audit_bad`: `sql/` applied, then a table with organization_id
/// that tenant_app can read without isolation (critical) and one nobody can
/// reach (warning).
fn bad_database() -> &'static str {
    static DB: OnceLock<()> = OnceLock::new();
    DB.get_or_init(|| {
        let pg = pg();
        let script = format!(
            r#"set -e; source tests/support/pg.sh; PG_DIR={dir}; PG_PORT={port}; PG_SUPER=postgres
            pg_psql -d postgres -c "CREATE DATABASE audit_bad" >/dev/null
            for f in sql/*.sql; do pg_psql -d audit_bad -f "$f" >/dev/null; done
            pg_psql -d audit_bad >/dev/null <<'SQL'
SELECT tenant.add_context_key('1', '{key}');
CREATE TABLE public.leaky (organization_id uuid, note text);
GRANT SELECT ON public.leaky TO tenant_app;
CREATE TABLE public.orphan (organization_id uuid);
SQL"#,
            dir = pg.dir.display(),
            port = pg.port,
            key = CONTEXT_KEY
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "setting up audit_bad failed");
    });
    "audit_bad"
}

fn url(db: &str) -> String {
    format!(
        "postgresql://postgres:{}@127.0.0.1:{}/{db}?sslmode=disable",
        pg().super_password,
        pg().port
    )
}

/// Runs `audit` with `args` and no PG*/PGTP_* variables from the caller.
fn audit(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("audit").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

#[test]
fn clean_database_exits_0_with_no_findings() {
    let out = audit(&["--database-url", &url("app")], &[]);
    assert_eq!(
        text(&out.stdout),
        format!(
            "tenant.audit() on database app at 127.0.0.1:{} as postgres: no findings\n",
            pg().port
        )
    );
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));

    let out = audit(&["--database-url", &url("app"), "--format", "json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["findings"], serde_json::json!([]));
    assert_eq!(json["counts"], serde_json::json!({}));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn planted_mistakes_exit_1_and_are_named() {
    let db = bad_database();
    let out = audit(&["--database-url", &url(db)], &[]);
    assert_eq!(
        text(&out.stdout),
        format!(
            "tenant.audit() on database audit_bad at 127.0.0.1:{} as postgres: 2 findings (1 critical, 1 warning)\n\
             \n\
             CRITICAL (1):\n  \
             - table_not_isolated public.leaky\n      \
             a tenant role can access this table, which is not under tenant.enable_isolation()\n\
             \n\
             WARNING (1):\n  \
             - table_not_isolated public.orphan\n      \
             has an organization_id column but is not under tenant.enable_isolation()\n",
            pg().port
        )
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stdout).contains(&pg().super_password));

    // The environment variable instead of the flag, JSON output.
    let out = audit(&["--format", "json"], &[("PGTP_AUDIT_DATABASE_URL", &url(db))]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "database": "audit_bad",
            "host": format!("127.0.0.1:{}", pg().port),
            "user": "postgres",
            "counts": {"critical": 1, "warning": 1},
            "findings": [
                {"severity": "critical", "check_name": "table_not_isolated", "object_name": "public.leaky",
                 "detail": "a tenant role can access this table, which is not under tenant.enable_isolation()"},
                {"severity": "warning", "check_name": "table_not_isolated", "object_name": "public.orphan",
                 "detail": "has an organization_id column but is not under tenant.enable_isolation()"},
            ]
        })
    );
}

#[test]
fn libpq_variables_reach_the_database_over_the_unix_socket() {
    let dir = pg().dir.display().to_string();
    let port = pg().port.to_string();
    let out = audit(
        &[],
        &[
            ("PGHOST", &dir),
            ("PGPORT", &port),
            ("PGUSER", "postgres"),
            ("PGDATABASE", "app"),
        ],
    );
    assert_eq!(
        text(&out.stdout),
        format!("tenant.audit() on database app at {dir}/.s.PGSQL.{port} as postgres: no findings\n")
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn unreachable_server_exits_2_without_the_password() {
    let port = free_port();
    let out = audit(
        &[
            "--database-url",
            &format!("postgresql://dba:pw-marker-31337@127.0.0.1:{port}/app"),
        ],
        &[],
    );
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        format!(
            "pg-tenant-proxy audit: cannot connect to database app at 127.0.0.1:{port} as dba: \
             error connecting to server: Connection refused (os error 111)\n"
        )
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn wrong_password_missing_schema_tls_and_usage_errors_exit_2() {
    let port = pg().port;
    let wrong = audit(
        &[
            "--database-url",
            &format!("postgresql://postgres:pw-marker-31337@127.0.0.1:{port}/app?sslmode=disable"),
        ],
        &[],
    );
    assert_eq!(
        text(&wrong.stderr),
        format!(
            "pg-tenant-proxy audit: cannot connect to database app at 127.0.0.1:{port} as postgres: \
             password authentication failed for user \"postgres\" (SQLSTATE 28P01)\n"
        )
    );
    assert_eq!(wrong.status.code(), Some(2));

    let no_sql = audit(&["--database-url", &url("postgres")], &[]);
    assert_eq!(
        text(&no_sql.stderr),
        format!(
            "pg-tenant-proxy audit: tenant.audit() failed on database postgres at 127.0.0.1:{port} as postgres: \
             schema \"tenant\" does not exist (SQLSTATE 3F000). Is sql/ applied to this database, and is the role \
             a superuser or a member of tenant_owner?\n"
        )
    );
    assert_eq!(no_sql.status.code(), Some(2));

    // The test cluster has no TLS: sslmode=require must refuse to go on in clear.
    let tls = audit(
        &[
            "--database-url",
            &format!("postgresql://postgres:pw-marker-31337@127.0.0.1:{port}/app?sslmode=require"),
        ],
        &[],
    );
    assert_eq!(
        text(&tls.stderr),
        format!(
            "pg-tenant-proxy audit: cannot connect to database app at 127.0.0.1:{port} as postgres: \
             error performing TLS handshake: server does not support TLS\n"
        )
    );
    assert_eq!(tls.status.code(), Some(2));

    let none = audit(&[], &[]);
    assert_eq!(
        text(&none.stderr),
        "pg-tenant-proxy audit: no database: give --database-url postgresql://ROLE@HOST:PORT/DB \
         (or PGTP_AUDIT_DATABASE_URL, or the libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)\n"
    );
    assert_eq!(none.status.code(), Some(2));

    let bad = audit(
        &[
            "--database-url",
            "postgresql://dba:pw-marker-31337@h/app?sslmode=sometimes",
        ],
        &[],
    );
    assert_eq!(
        text(&bad.stderr),
        "pg-tenant-proxy audit: unknown sslmode \"sometimes\" (use disable, prefer, require, verify-ca or verify-full)\n"
    );
    assert_eq!(bad.status.code(), Some(2));

    for out in [&wrong, &no_sql, &tls, &none, &bad] {
        assert!(!text(&out.stdout).contains("pw-marker-31337"));
        assert!(!text(&out.stderr).contains("pw-marker-31337"));
        assert!(!text(&out.stderr).contains(&pg().super_password));
    }

    // --help must not print the URL (and so the password) from the environment.
    let help = audit(
        &["--help"],
        &[("PGTP_AUDIT_DATABASE_URL", "postgresql://a:pw-marker-31337@h/d")],
    );
    assert!(text(&help.stdout).contains("[env: PGTP_AUDIT_DATABASE_URL]"));
    assert!(!text(&help.stdout).contains("pw-marker-31337"));
    assert_eq!(help.status.code(), Some(0));
}

/// A CA and a server certificate for `localhost`/127.0.0.1; returns the CA file.
fn pki(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let w = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    (
        w("ca.pem", ca.pem()),
        w("server.pem", cert.pem()),
        w("server.key", key.serialize_pem()),
    )
}

/// TLS through the project's rustls setup: verify-full against the test CA
/// gets through the handshake (the proxy then refuses tenant.audit() to a
/// tenant: exit 2 at the query, not at the connection); another CA fails the
/// handshake. The token used as the password is never printed.
#[tokio::test]
async fn verify_full_uses_sslrootcert_and_a_wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = pki(other.path());
    let p = Proxy::start(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]).await;
    let token = p.token(ORG_A, Some(USER_A), 600);
    let url = |root: &std::path::Path| {
        format!(
            "postgresql://app:{token}@localhost:{}/app?sslmode=verify-full&sslrootcert={}",
            p.port,
            root.display()
        )
    };

    let ok = audit(&["--database-url", &url(&ca)], &[]);
    let err = text(&ok.stderr);
    assert!(
        err.starts_with(&format!(
            "pg-tenant-proxy audit: tenant.audit() failed on database app at localhost:{} as app: ",
            p.port
        )),
        "{err}"
    );
    assert!(err.contains("(SQLSTATE 42501)"), "{err}");
    assert_eq!(ok.status.code(), Some(2));

    let bad = audit(&["--database-url", &url(&other_ca)], &[]);
    let err = text(&bad.stderr);
    assert!(
        err.starts_with(&format!(
            "pg-tenant-proxy audit: cannot connect to database app at localhost:{} as app: error performing TLS handshake: invalid peer certificate: ",
            p.port
        )),
        "{err}"
    );
    assert_eq!(bad.status.code(), Some(2));
    for out in [&ok, &bad] {
        assert!(!text(&out.stdout).contains(&token) && !text(&out.stderr).contains(&token));
    }
}
