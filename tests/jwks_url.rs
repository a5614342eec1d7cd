//! `--jwks-url` against a local HTTPS identity provider that the test starts
//! (hyper over tokio-rustls, certificate from a test CA made with rcgen and
//! trusted through `--jwks-ca-file`), through the real proxy and real
//! PostgreSQL: the start-up fetch, key rotation picked up on an unknown kid,
//! a removed key refused after a refresh, an outage served from the cache
//! (logged once, counted at /metrics), the bound on unknown-kid refetches,
//! refusal to start without keys, and `jku` never fetched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

const UNKNOWN_KID: &str = "password authentication failed: token kid names no known key";

/// A test CA and a server certificate for 127.0.0.1 signed by it.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn make_pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pg-tenant-proxy test IdP CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let ca_path = dir.path().join("idp-ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    Pki {
        ca: ca_path,
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
        _dir: dir,
    }
}

/// The local identity provider: serves `jwks` at any path, counts requests.
struct Idp {
    port: u16,
    jwks: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Idp {
    async fn start(pki: &Pki, jwks: String) -> Idp {
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(pki.cert_der.clone())],
                rustls::pki_types::PrivateKeyDer::Pkcs8(pki.key_der.clone().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let jwks = Arc::new(Mutex::new(jwks));
        let hits = Arc::new(AtomicUsize::new(0));
        let (j, h) = (jwks.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, j, h) = (acceptor.clone(), j.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |_req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let body = j.lock().unwrap().clone();
                        async move {
                            let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Idp { port, jwks, hits, task }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/.well-known/jwks.json", self.port)
    }

    fn serve(&self, jwks: String) {
        *self.jwks.lock().unwrap() = jwks;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops accepting: from now on connections are refused.
    fn stop(&self) {
        self.task.abort();
    }
}

/// An ES256 signing key with its public JWK.
struct SigningKey {
    enc: EncodingKey,
    jwk: Jwk,
}

fn signing_key(kid: &str) -> SigningKey {
    let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let enc = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap();
    let dk = DecodingKey::from_ec_pem(kp.public_key_pem().as_bytes()).unwrap();
    let mut jwk = Jwk::from_decoding_key(&dk, Some(Algorithm::ES256)).unwrap();
    jwk.common.key_id = Some(kid.into());
    SigningKey { enc, jwk }
}

fn jwks(keys: &[&SigningKey]) -> String {
    let keys: Vec<&Jwk> = keys.iter().map(|k| &k.jwk).collect();
    serde_json::json!({ "keys": keys }).to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for tenant A signed by `key`, whose header says `kid` (and
/// whatever `header` adds).
fn token_with(key: &SigningKey, kid: &str, header: impl FnOnce(&mut Header)) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    header(&mut h);
    let claims = serde_json::json!({"organization_id": ORG_A, "sub": USER_A, "exp": now() + 600});
    jsonwebtoken::encode(&h, &claims, &key.enc).unwrap()
}

fn token(key: &SigningKey) -> String {
    let kid = key.jwk.common.key_id.clone().unwrap();
    token_with(key, &kid, |_| {})
}

fn upstream() -> String {
    format!("postgresql://proxy_login@127.0.0.1:{}/app?sslmode=disable", pg().port)
}

async fn proxy(idp: &Idp, pki: &Pki, extra: &[&str]) -> Proxy {
    let url = idp.url();
    let mut flags = vec!["--jwks-url", &url, "--jwks-ca-file", pki.ca.to_str().unwrap()];
    flags.extend_from_slice(extra);
    Proxy::start_with_upstream_keys(&upstream(), &flags).await
}

/// Connects with `token` and checks the pinned tenant.
async fn accepted(p: &Proxy, token: &str) {
    let c = p.try_connect(token).await.expect("token accepted");
    let rows = c
        .simple_query("SELECT current_setting('app.current_organization_id')")
        .await
        .unwrap();
    let org = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap();
    assert_eq!(org, ORG_A);
}

/// Connects with `token` and expects FATAL 28P01 with `message`.
async fn refused(p: &Proxy, token: &str, message: &str) {
    let err = p.try_connect(token).await.expect_err("token refused");
    assert_eq!(sqlstate(&err), "28P01");
    assert_eq!(db_message(&err), message);
}

/// Waits until `cond` holds, up to `limit`.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

/// GET `path` from the admin listener: the body.
async fn admin_get(port: u16, path: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_at_start_and_rotation_is_picked_up_on_an_unknown_kid() {
    let pki = make_pki();
    let k1 = signing_key("k1");
    let k2 = signing_key("k2");
    let idp = Idp::start(&pki, jwks(&[&k1])).await;
    // Default refresh interval (300 s): only the unknown kid can explain a fetch.
    let p = proxy(&idp, &pki, &[]).await;
    assert_eq!(idp.hits(), 1, "one fetch at start");
    accepted(&p, &token(&k1)).await;
    assert_eq!(idp.hits(), 1, "a known kid fetches nothing");

    // The provider rotates: k2 is published and signs new tokens.
    idp.serve(jwks(&[&k1, &k2]));
    accepted(&p, &token(&k2)).await;
    assert_eq!(idp.hits(), 2, "one refetch for the unknown kid");
    accepted(&p, &token(&k1)).await;
    assert_eq!(idp.hits(), 2);
    let log = p.log_text();
    assert!(!log.contains(&token(&k2)[..40]), "a token reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_key_is_refused_after_a_refresh_and_an_outage_serves_the_cache() {
    let pki = make_pki();
    let k1 = signing_key("k1");
    let k2 = signing_key("k2");
    let idp = Idp::start(&pki, jwks(&[&k1, &k2])).await;
    let admin = free_port();
    let admin_flag = format!("127.0.0.1:{admin}");
    let p = proxy(&idp, &pki, &["--jwks-refresh-secs", "1", "--admin-listen", &admin_flag]).await;
    let t1 = token(&k1);
    let t2 = token(&k2);
    accepted(&p, &t1).await;
    let metrics = admin_get(admin, "/metrics").await;
    assert_eq!(sample(&metrics, "pgtp_jwks_keys"), 2.0, "{metrics}");
    assert!(sample(&metrics, "pgtp_jwks_refresh_total{outcome=\"ok\"}") >= 1.0);

    // k1 is withdrawn; after the next background refresh it no longer verifies.
    idp.serve(jwks(&[&k2]));
    let seen = idp.hits();
    assert!(eventually(Duration::from_secs(10), || idp.hits() > seen).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    refused(&p, &t1, UNKNOWN_KID).await;
    accepted(&p, &t2).await;
    assert_eq!(sample(&admin_get(admin, "/metrics").await, "pgtp_jwks_keys"), 1.0);

    // Outage: the provider stops answering; cached keys keep working.
    idp.stop();
    let mut failed = 0.0;
    for _ in 0..100 {
        failed = sample(
            &admin_get(admin, "/metrics").await,
            "pgtp_jwks_refresh_total{outcome=\"failed\"}",
        );
        if failed >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed >= 2.0, "failed fetches are counted: {failed}");
    accepted(&p, &t2).await;
    refused(&p, &t1, UNKNOWN_KID).await;
    let log = p.log_text();
    assert_eq!(
        log.matches("JWKS fetch failed; serving the cached keys until a fetch succeeds")
            .count(),
        1,
        "one warning per failure streak:\n{log}"
    );
    assert!(log.contains("connect"), "{log}");
    assert!(!log.contains(&t1) && !log.contains(&t2), "a token reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_refetch_at_most_once_per_window() {
    let pki = make_pki();
    let k1 = signing_key("k1");
    let idp = Idp::start(&pki, jwks(&[&k1])).await;
    let p = proxy(&idp, &pki, &[]).await;
    assert_eq!(idp.hits(), 1);
    let mut attempts = Vec::new();
    for i in 0..20 {
        let t = token_with(&k1, &format!("unknown-{i}"), |_| {});
        let p = &p;
        attempts.push(async move { p.try_connect(&t).await.expect_err("refused") });
    }
    for err in futures_util::future::join_all(attempts).await {
        assert_eq!(sqlstate(&err), "28P01");
        assert_eq!(db_message(&err), UNKNOWN_KID);
    }
    assert_eq!(idp.hits(), 2, "20 unknown kids caused one refetch");
    // The known kid still works, with no further fetch.
    accepted(&p, &token(&k1)).await;
    assert_eq!(idp.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_named_by_the_token_is_never_fetched() {
    let pki = make_pki();
    let k1 = signing_key("k1");
    let evil_key = signing_key("evil");
    let idp = Idp::start(&pki, jwks(&[&k1])).await;
    // The attacker's server would serve the attacker's key.
    let evil = Idp::start(&pki, jwks(&[&evil_key])).await;
    let p = proxy(&idp, &pki, &[]).await;
    let evil_url = evil.url();
    let forged = token_with(&evil_key, "evil", |h| {
        h.jku = Some(evil_url.clone());
        h.x5u = Some(evil_url.clone());
    });
    refused(&p, &forged, UNKNOWN_KID).await;
    // A token with a known kid and a jku still verifies with the configured key only.
    let good = token_with(&k1, "k1", |h| h.jku = Some(evil_url.clone()));
    accepted(&p, &good).await;
    let forged_k1 = token_with(&evil_key, "k1", |h| h.jku = Some(evil_url.clone()));
    refused(
        &p,
        &forged_k1,
        "password authentication failed: token signature is not valid",
    )
    .await;
    assert_eq!(evil.hits(), 0, "the token's jku/x5u was fetched");
    assert_eq!(
        idp.hits(),
        2,
        "start-up fetch and one unknown-kid refetch of the configured URL"
    );
}

/// Runs `serve` with `flags`, expecting it to exit by itself: status and stderr.
async fn serve_exits(flags: Vec<String>) -> (std::process::ExitStatus, String) {
    let upstream = upstream();
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("context.key");
    std::fs::write(&key_file, CONTEXT_KEY).unwrap();
    // The provider runs on this runtime's other thread while this one waits.
    let out = tokio::task::spawn_blocking(move || {
        let _keep = &key_dir;
        let mut child = std::process::Command::new(bin())
            .arg("serve")
            .args([
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
                "--upstream",
                &upstream,
            ])
            .args(flags)
            .arg("--context-key-file")
            .arg(&key_file)
            .env("PGTP_UPSTREAM_PASSWORD", LOGIN_PASSWORD)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the proxy did not exit by itself");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_refuses_to_start_without_keys_from_the_url() {
    let pki = make_pki();
    let ca = pki.ca.to_str().unwrap().to_owned();

    // Nothing listens there.
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}/jwks.json");
    let (status, stderr) = serve_exits(vec![
        "--jwks-url".into(),
        url.clone(),
        "--jwks-ca-file".into(),
        ca.clone(),
    ])
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pg-tenant-proxy: cannot load token keys: cannot fetch JWKS {url}: connect: "
        )),
        "{stderr}"
    );

    // The provider's certificate is not trusted without --jwks-ca-file.
    let k1 = signing_key("k1");
    let idp = Idp::start(&pki, jwks(&[&k1])).await;
    let (status, stderr) = serve_exits(vec!["--jwks-url".into(), idp.url()]).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot load token keys: cannot fetch JWKS {}: TLS: ",
            idp.url()
        )),
        "{stderr}"
    );

    // A document without signing keys.
    idp.serve(r#"{"keys":[]}"#.into());
    let (status, stderr) = serve_exits(vec![
        "--jwks-url".into(),
        idp.url(),
        "--jwks-ca-file".into(),
        ca.clone(),
    ])
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot load token keys: JWKS {} has no signing keys",
            idp.url()
        )),
        "{stderr}"
    );

    // Plain http is refused as configuration.
    let (status, stderr) = serve_exits(vec!["--jwks-url".into(), format!("http://127.0.0.1:{port}/jwks.json")]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("must start with https://"), "{stderr}");
}
