//! TLS on both sides: clients with sslmode=verify-full (psql and
//! tokio-postgres), PostgreSQL 17 direct TLS, bytes smuggled after
//! SSLRequest, and an upstream reached with sslmode=verify-full.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca_der: Vec<u8>,
}

fn make_pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pg-tenant-proxy test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let w = |name: &str, body: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    Pki {
        ca: w("ca.pem", ca.pem()),
        cert: w("server.pem", cert.pem()),
        key: w("server.key", key.serialize_pem()),
        ca_der: ca.der().to_vec(),
        _dir: dir,
    }
}

/// A rustls client that trusts only the test CA.
fn client_config(pki: &Pki) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(pki.ca_der.clone()))
        .unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

async fn tls_proxy(pki: &Pki) -> Proxy {
    Proxy::start(&[
        "--tls-cert",
        pki.cert.to_str().unwrap(),
        "--tls-key",
        pki.key.to_str().unwrap(),
    ])
    .await
}

fn psql(p: &Proxy, token: &str, sslmode: &str, root: &Path, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            "-X",
            "-At",
            "-h",
            "localhost",
            "-p",
            &p.port.to_string(),
            "-U",
            "app",
            "-d",
            "app",
            "-c",
            sql,
        ])
        .env("PGPASSWORD", token)
        .env("PGSSLMODE", sslmode)
        .env("PGSSLROOTCERT", root)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap()
}

#[tokio::test]
async fn psql_with_verify_full_gets_a_tls_session() {
    let pki = make_pki();
    let p = tls_proxy(&pki).await;
    let token = p.token(ORG_A, Some(USER_A), 600);
    let out = psql(
        &p,
        &token,
        "verify-full",
        &pki.ca,
        "SELECT current_setting('app.current_organization_id')",
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        p.log_text()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ORG_A);
    // A different CA must make verify-full fail.
    let other = make_pki();
    let out = psql(&p, &token, "verify-full", &other.ca, "SELECT 1");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SSL") || err.contains("certificate"), "{err}");
    assert_eq!(
        p.log_text().matches("session started").count(),
        1,
        "the second psql got no session"
    );
}

#[tokio::test]
async fn tokio_postgres_over_rustls_verifies_the_proxy() {
    let pki = make_pki();
    let p = tls_proxy(&pki).await;
    let cfg = client_config(&pki);
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(cfg);
    let mut c = p.config(&p.token(ORG_B, Some(USER_B), 600));
    c.host("localhost").ssl_mode(tokio_postgres::config::SslMode::Require);
    let (client, conn) = c.connect(tls).await.unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one("SELECT current_setting('app.current_organization_id')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), ORG_B);
}

#[tokio::test]
async fn direct_tls_with_alpn_postgresql_is_accepted() {
    let pki = make_pki();
    let p = tls_proxy(&pki).await;
    let mut cfg = client_config(&pki);
    cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let mut pkt = Vec::new();
    let body = b"\0\x03\0\0user\0app\0database\0app\0\0";
    pkt.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    pkt.extend_from_slice(body);
    s.write_all(&pkt).await.unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], b'R');
    assert_eq!(
        &head[5..9],
        &3i32.to_be_bytes(),
        "cleartext password request over direct TLS"
    );
}

#[tokio::test]
async fn bytes_sent_after_sslrequest_are_never_interpreted() {
    let pki = make_pki();
    let p = tls_proxy(&pki).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    // SSLRequest immediately followed by a plaintext startup packet.
    let mut pkt = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let body = b"\0\x03\0\0user\0app\0database\0app\0\0";
    pkt.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    pkt.extend_from_slice(body);
    s.write_all(&pkt).await.unwrap();
    assert_eq!(s.read_u8().await.unwrap(), b'S');
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(!rest.starts_with(b"R"), "the smuggled startup packet was answered");
}

#[tokio::test]
async fn upstream_over_tls_with_verify_full() {
    let pg = pg();
    let pki = make_pki();
    // Give the cluster a certificate and turn TLS on (a reload is enough).
    let crt = pg.dir.join("data/server.crt");
    let key = pg.dir.join("data/server.key");
    std::fs::copy(&pki.cert, &crt).unwrap();
    std::fs::copy(&pki.key, &key).unwrap();
    let chown = |p: &Path| {
        if unsafe_is_root() {
            assert!(Command::new("chown")
                .arg("postgres:")
                .arg(p)
                .status()
                .unwrap()
                .success());
        }
    };
    chown(&crt);
    chown(&key);
    assert!(Command::new("chmod").arg("600").arg(&key).status().unwrap().success());
    let su = superuser("postgres").await;
    su.simple_query("ALTER SYSTEM SET ssl = on").await.unwrap();
    su.simple_query("SELECT pg_reload_conf()").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let url = format!(
        "postgresql://proxy_login@localhost:{}/app?sslmode=verify-full&sslrootcert={}",
        pg.port,
        pki.ca.display()
    );
    let p = Proxy::start_with_upstream(&url, &[]).await;
    let c = p.connect(ORG_A, USER_A).await;
    assert_eq!(c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
    // The context proof is bound to the TCP connection under the TLS layer.
    let status: String = c.query_one("SELECT tenant.context_status()", &[]).await.unwrap().get(0);
    assert_eq!(status, "verified");
    let su_app = superuser("app").await;
    let row = su_app
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'proxy_login'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<bool>>(0),
        Some(true),
        "the upstream session is encrypted"
    );

    // The wrong CA is refused: 08001 for the client.
    let other = make_pki();
    let url = format!(
        "postgresql://proxy_login@localhost:{}/app?sslmode=verify-full&sslrootcert={}",
        pg.port,
        other.ca.display()
    );
    let p2 = Proxy::start_with_upstream(&url, &[]).await;
    let err = p2.try_connect(&p2.token(ORG_A, None, 60)).await.err().unwrap();
    assert_eq!(sqlstate(&err), "08001");
    su.simple_query("ALTER SYSTEM RESET ssl").await.unwrap();
    su.simple_query("SELECT pg_reload_conf()").await.unwrap();
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}
