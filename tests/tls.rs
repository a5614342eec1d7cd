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

/// An untagged startup packet for `user`/`database` app, protocol 3.0.
fn startup_packet() -> Vec<u8> {
    let body = b"\0\x03\0\0user\0app\0database\0app\0\0";
    let mut pkt = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    pkt.extend_from_slice(body);
    pkt
}

const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A field of an ErrorResponse body (`b'C'` code, `b'M'` message).
fn error_field(body: &[u8], field: u8) -> String {
    body.split(|b| *b == 0)
        .find(|f| f.first() == Some(&field))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_default()
}

/// TLS over `tcp` after the proxy answered an SSLRequest with `S`.
async fn tls_over(pki: &Pki, mut tcp: tokio::net::TcpStream) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tcp.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'S');
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(client_config(pki)))
        .connect(name, tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn ssl_after_a_refused_gssenc_request_gets_a_tls_session() {
    // libpq with gssencmode=prefer and pgjdbc with gssEncMode=prefer ask for
    // GSS first, then for SSL after the 'N'.
    let pki = make_pki();
    let p = tls_proxy(&pki).await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    tcp.write_all(&GSSENC_REQUEST).await.unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'N');
    let mut s = tls_over(&pki, tcp).await;
    s.write_all(&startup_packet()).await.unwrap();
    assert_eq!(wire::read_msg(&mut s).await, (b'R', 3i32.to_be_bytes().to_vec()));
    let token = p.token(ORG_A, Some(USER_A), 600);
    let mut pw = token.into_bytes();
    pw.push(0);
    s.write_all(&wire::msg(b'p', |b| b.extend_from_slice(&pw)))
        .await
        .unwrap();
    wire::read_until_ready(&mut s).await;
    s.write_all(&wire::query_msg(
        b"SELECT current_setting('app.current_organization_id')",
    ))
    .await
    .unwrap();
    let msgs = wire::read_until_ready(&mut s).await;
    assert_eq!(wire::tags(&msgs), b"TDCZ");
    let row = &msgs[1].1;
    assert_eq!(&row[6..], ORG_A.as_bytes(), "one column holding tenant A");
}

#[tokio::test]
async fn encryption_requests_after_tls_or_twice_are_refused() {
    let pki = make_pki();
    let p = tls_proxy(&pki).await;
    // GSS inside TLS, SSL inside TLS: refused over the TLS session.
    for second in [GSSENC_REQUEST, SSL_REQUEST] {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        let mut s = tls_over(&pki, tcp).await;
        s.write_all(&second).await.unwrap();
        let (tag, body) = wire::read_msg(&mut s).await;
        assert_eq!(
            (tag, error_field(&body, b'C'), error_field(&body, b'M')),
            (b'E', "08P01".into(), "encryption was already negotiated".into())
        );
    }
    // GSS twice, and SSL then GSS then SSL, in plaintext.
    let sequences: [&[[u8; 8]]; 2] = [
        &[GSSENC_REQUEST, GSSENC_REQUEST],
        &[GSSENC_REQUEST, SSL_REQUEST, GSSENC_REQUEST],
    ];
    let plain = Proxy::start(&[]).await;
    for seq in sequences {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", plain.port)).await.unwrap();
        for req in &seq[..seq.len() - 1] {
            tcp.write_all(req).await.unwrap();
            assert_eq!(tcp.read_u8().await.unwrap(), b'N');
        }
        tcp.write_all(&seq[seq.len() - 1]).await.unwrap();
        let (tag, body) = wire::read_msg(&mut tcp).await;
        assert_eq!(
            (tag, error_field(&body, b'C'), error_field(&body, b'M')),
            (b'E', "08P01".into(), "encryption was already negotiated".into()),
            "{seq:?}"
        );
    }
}

#[tokio::test]
async fn cancel_request_inside_tls_cancels_and_ends_with_close_notify() {
    // libpq 17 and psycopg 3's cancel_safe() send the CancelRequest over TLS
    // and take a close without close_notify as a failed cancel.
    let pki = make_pki();
    let p = tls_proxy(&pki).await;
    let mut session = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    wire::raw_startup(&mut session, 3 << 16, &[("user", "app"), ("database", "app")]).await;
    assert_eq!(wire::read_msg(&mut session).await.0, b'R');
    let mut pw = p.token(ORG_A, Some(USER_A), 600).into_bytes();
    pw.push(0);
    session
        .write_all(&wire::msg(b'p', |b| b.extend_from_slice(&pw)))
        .await
        .unwrap();
    let hello = wire::read_until_ready(&mut session).await;
    let key = &hello.iter().find(|m| m.0 == b'K').expect("BackendKeyData").1;
    session
        .write_all(&wire::query_msg(b"SELECT pg_sleep(30)"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = std::time::Instant::now();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    let mut tls = tls_over(&pki, tcp).await;
    let mut cancel = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
    cancel.extend_from_slice(key);
    tls.write_all(&cancel).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = [0u8; 64];
    let end = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
        .await
        .expect("the proxy did not close the cancel connection");
    // tokio-rustls reads 0 only after close_notify; a bare TCP close is an
    // UnexpectedEof error.
    assert_eq!(end.map_err(|e| e.kind()), Ok(0), "no close_notify");

    let msgs = wire::read_until_ready(&mut session).await;
    let err = &msgs
        .iter()
        .find(|m| m.0 == b'E')
        .expect("the query was not cancelled")
        .1;
    assert_eq!(
        (error_field(err, b'C'), error_field(err, b'M')),
        ("57014".into(), "canceling statement due to user request".into())
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
