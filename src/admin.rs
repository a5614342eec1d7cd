//! The admin listener for operators, off unless `--admin-listen` is set:
//! `GET /metrics` (Prometheus text format, see [`crate::metrics`]),
//! `GET /healthz` (the process serves) and `GET /readyz` (token keys loaded,
//! the upstream reachable within [`READY_PROBE_TIMEOUT`], not draining).
//!
//! Input: HTTP requests from whoever can reach the address (bind it to
//! loopback or a pod network). Nothing served here names a tenant, user or
//! statement. HTTP is hyper's; each connection has a header deadline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::config::UpstreamAddr;

/// Longest wait for the upstream in a readiness probe.
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest time one admin connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// What `/readyz` looks at.
pub struct Readiness {
    /// Where the upstream listens (a TCP connect or Unix connect is the probe).
    pub upstream: UpstreamAddr,
    /// Token keys are loaded (they are, once the proxy started; kept as a
    /// flag for key sources that load in the background).
    pub keys_loaded: AtomicBool,
}

impl Readiness {
    /// Whether the proxy should get new sessions now, and if not, why.
    pub async fn check(&self) -> Result<(), &'static str> {
        if crate::metrics::get().draining.get() != 0 {
            return Err("draining");
        }
        if !self.keys_loaded.load(Ordering::Acquire) {
            return Err("token keys not loaded");
        }
        let probe = async {
            match &self.upstream {
                UpstreamAddr::Tcp { host, port } => {
                    tokio::net::TcpStream::connect((host.as_str(), *port)).await.map(drop)
                }
                UpstreamAddr::Unix(path) => tokio::net::UnixStream::connect(path).await.map(drop),
            }
        };
        match tokio::time::timeout(READY_PROBE_TIMEOUT, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("upstream unreachable"),
            Err(_) => Err("upstream did not answer in time"),
        }
    }
}

/// Binds the admin address (so a bad address fails start-up).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on admin address {addr}: {e}"))
}

/// Serves admin requests until the process ends.
pub async fn serve(listener: TcpListener, ready: Arc<Readiness>) {
    if let Ok(addr) = listener.local_addr() {
        info!(admin_listen = %addr, "admin listener ready");
    }
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let ready = ready.clone();
                async move { Ok::<_, Infallible>(route(req, &ready).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Err(e)) => debug!(%peer, error = %e, "admin connection failed"),
                Err(_) => debug!(%peer, "admin connection timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

async fn route(req: Request<Incoming>, ready: &Readiness) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            crate::metrics::encode(),
        ),
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => match ready.check().await {
            Ok(()) => text(StatusCode::OK, PLAIN, "ready\n".into()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, format!("not ready: {why}\n")),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
    }
}
