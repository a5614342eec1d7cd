//! Token keys from an identity provider's JWKS URL (`--jwks-url`).
//!
//! The document is fetched over HTTPS only, with hyper's HTTP/1 client over
//! tokio-rustls; the provider's certificate must chain to webpki-roots or
//! to `--jwks-ca-file`. Every fetch has one deadline ([`FETCH_TIMEOUT`]) for
//! connect, TLS, headers and body, and the body is capped at
//! [`MAX_JWKS_BYTES`]; redirects are not followed. The document goes through
//! the same parser as `--jwks-file` ([`super::jwt::parse_jwks`]).
//!
//! When keys are fetched:
//! - at start ([`start`]); the proxy refuses to start if that fails or
//!   yields no signing key;
//! - every `--jwks-refresh-secs` in the background;
//! - when a token names a `kid` the cache lacks, at most once per
//!   [`UNKNOWN_KID_REFETCH_INTERVAL`] for the whole process; the session
//!   that asked waits for that fetch (bounded by [`FETCH_TIMEOUT`]) and
//!   tries its token once more.
//!
//! A failed fetch keeps the cached keys, logs one warning per streak of
//! failures and counts `pgtp_jwks_refresh_total{outcome="failed"}`. Only the
//! configured URL is ever fetched: `jku`, `x5u` and the like in a token's
//! header are ignored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use jsonwebtoken::Algorithm;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::time::Instant;
use tracing::{info, warn};

use super::jwt::{parse_jwks, KeyMap};
use crate::config::{JwksUrl, JwtConfig, KeySource};

/// Deadline of one fetch: connect, TLS handshake, response headers and body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// Unknown `kid`s trigger at most one fetch per this interval.
pub const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// The cached key set of one JWKS URL and what keeps it fresh.
pub struct RemoteJwks {
    source: JwksUrl,
    narrowed: Vec<Algorithm>,
    host: String,
    port: u16,
    host_header: String,
    path: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    keys: RwLock<Arc<KeyMap>>,
    /// Serializes fetches (background and unknown-kid ones).
    fetching: tokio::sync::Mutex<()>,
    /// When an unknown `kid` last caused a fetch.
    last_kid_refetch: Mutex<Option<Instant>>,
    /// A fetch has succeeded.
    loaded: AtomicBool,
    /// The last fetch failed (a failure streak is under way).
    failing: AtomicBool,
    refresher_started: AtomicBool,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.source.url)
            .finish_non_exhaustive()
    }
}

/// The process's current JWKS URL cache: configuration reloads that keep the
/// same settings keep the same cache (and its refresher).
static CURRENT: Mutex<Option<Arc<RemoteJwks>>> = Mutex::new(None);

impl RemoteJwks {
    /// The cache for `source` (shared with earlier verifiers built from the
    /// same settings). Checks the URL and the CA file; fetches nothing.
    pub fn handle(source: &JwksUrl, narrowed: &[Algorithm]) -> Result<Arc<RemoteJwks>, String> {
        let mut current = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = current.as_ref() {
            if r.source == *source && r.narrowed == narrowed {
                return Ok(r.clone());
            }
        }
        let r = Arc::new(RemoteJwks::new(source, narrowed)?);
        *current = Some(r.clone());
        Ok(r)
    }

    fn new(source: &JwksUrl, narrowed: &[Algorithm]) -> Result<RemoteJwks, String> {
        let url = url::Url::parse(&source.url).map_err(|e| format!("jwks_url {:?}: {e}", source.url))?;
        if url.scheme() != "https" {
            return Err(format!("jwks_url {:?} must start with https://", source.url));
        }
        let host_str = url.host_str().unwrap_or_default();
        let host = host_str.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url.port().unwrap_or(443);
        let host_header = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_owned(),
        };
        let path = url[url::Position::BeforePath..url::Position::AfterQuery].to_owned();
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| format!("jwks_url {:?}: host is not a valid TLS name: {e}", source.url))?;
        Ok(RemoteJwks {
            tls: client_config(source.ca_file.as_deref())?,
            source: source.clone(),
            narrowed: narrowed.to_vec(),
            host,
            port,
            host_header,
            path,
            server_name,
            keys: RwLock::new(Arc::new(KeyMap::new())),
            fetching: tokio::sync::Mutex::new(()),
            last_kid_refetch: Mutex::new(None),
            loaded: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            refresher_started: AtomicBool::new(false),
        })
    }

    /// The keys cached now.
    pub fn keys(&self) -> Arc<KeyMap> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Called when a token's `kid` is not cached: fetches the configured URL
    /// again unless an unknown kid already did within
    /// [`UNKNOWN_KID_REFETCH_INTERVAL`], waiting at most [`FETCH_TIMEOUT`]
    /// (also for a fetch already under way). Returns whether the keys may
    /// have changed since the caller looked, so a retry is worth it.
    pub async fn refetch_for_unknown_kid(&self) -> bool {
        let attempt = async {
            let _one_at_a_time = self.fetching.lock().await;
            {
                let mut last = self.last_kid_refetch.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_REFETCH_INTERVAL) {
                    // Another session's fetch may have just brought the kid.
                    return true;
                }
                *last = Some(Instant::now());
            }
            self.refresh().await.is_ok()
        };
        tokio::time::timeout(FETCH_TIMEOUT, attempt).await.unwrap_or(false)
    }

    /// Fetches and parses the document; on success it replaces the cache, on
    /// failure the cache stays. Counts the outcome; warns once per streak.
    async fn refresh(&self) -> Result<usize, String> {
        let what = format!("JWKS {}", self.source.url);
        let result = match tokio::time::timeout(FETCH_TIMEOUT, self.get()).await {
            Ok(r) => r.map_err(|e| format!("cannot fetch {what}: {e}")),
            Err(_) => Err(format!(
                "cannot fetch {what}: no complete answer within {} seconds",
                FETCH_TIMEOUT.as_secs()
            )),
        }
        .and_then(|body| {
            let text = std::str::from_utf8(&body).map_err(|_| format!("{what} is not UTF-8"))?;
            parse_jwks(text, &what, &self.narrowed)
        });
        let m = crate::metrics::get();
        match result {
            Ok(map) => {
                let n = map.len();
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
                self.loaded.store(true, Ordering::Release);
                crate::metrics::jwks_refresh(crate::metrics::JwksRefresh::Ok);
                m.jwks_keys.set(i64::try_from(n).unwrap_or(i64::MAX));
                if self.failing.swap(false, Ordering::AcqRel) {
                    info!(url = %self.source.url, keys = n, "JWKS fetch works again");
                }
                Ok(n)
            }
            Err(e) => {
                crate::metrics::jwks_refresh(crate::metrics::JwksRefresh::Failed);
                if !self.failing.swap(true, Ordering::AcqRel) {
                    warn!(url = %self.source.url, error = %e, "JWKS fetch failed; serving the cached keys until a fetch succeeds");
                }
                Err(e)
            }
        }
    }

    /// One GET of the URL: the body, if the answer is 200 and small enough.
    async fn get(&self) -> Result<Bytes, String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let _driver = AbortOnDrop(tokio::spawn(conn));
        let req = hyper::Request::get(self.path.as_str())
            .header(hyper::header::HOST, self.host_header.as_str())
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("pg-tenant-proxy/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let resp = send.send_request(req).await.map_err(|e| format!("HTTP: {e}"))?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(format!("HTTP status {} (redirects are not followed)", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("the document is larger than {MAX_JWKS_BYTES} bytes")
                } else {
                    format!("HTTP body: {e}")
                }
            })?
            .to_bytes();
        Ok(body)
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// TLS to the provider: webpki-roots plus the certificates of `ca_file`.
fn client_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(p) = ca_file {
        let pem = std::fs::read(p).map_err(|e| format!("cannot read jwks_ca_file {}: {e}", p.display()))?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("jwks_ca_file {} is not valid PEM: {e}", p.display()))?;
        if certs.is_empty() {
            return Err(format!("jwks_ca_file {} holds no certificate", p.display()));
        }
        for c in certs {
            roots.add(c).map_err(|e| format!("jwks_ca_file {}: {e}", p.display()))?;
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// With `--jwks-url`: makes sure the keys were fetched once (the first call
/// fetches; failure or no signing key is an error) and that the background
/// refresher runs. Does nothing for the other key sources. Called at start
/// and on reload, from inside the runtime.
pub async fn start(cfg: &JwtConfig) -> Result<(), String> {
    let KeySource::JwksUrl(source) = &cfg.key else {
        return Ok(());
    };
    let narrowed: Vec<Algorithm> = cfg
        .algorithms
        .iter()
        .map(|a| a.parse().map_err(|_| format!("unknown JWT algorithm {a:?}")))
        .collect::<Result<_, _>>()?;
    let remote = RemoteJwks::handle(source, &narrowed)?;
    if !remote.loaded.load(Ordering::Acquire) {
        let _one_at_a_time = remote.fetching.lock().await;
        if !remote.loaded.load(Ordering::Acquire) {
            let n = remote
                .refresh()
                .await
                .map_err(|e| format!("cannot load token keys: {e}"))?;
            info!(url = %source.url, keys = n, "JWKS fetched");
        }
    }
    if !remote.refresher_started.swap(true, Ordering::AcqRel) {
        let every = Duration::from_secs(source.refresh_secs.max(1));
        tokio::spawn(refresher(Arc::downgrade(&remote), every));
    }
    Ok(())
}

/// Refetches every `every` while the cache is in use.
async fn refresher(remote: Weak<RemoteJwks>, every: Duration) {
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(r) = remote.upgrade() else {
            return;
        };
        let _one_at_a_time = r.fetching.lock().await;
        // Failures are counted and logged inside; the cache stays.
        let _ = r.refresh().await;
    }
}
