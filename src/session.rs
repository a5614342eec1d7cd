//! One client connection from start to end: handshake, token verification,
//! upstream login with the tenant pinned, the greeting, then the relay.
//! Every failure a client can cause ends with an ErrorResponse it can read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::auth::Verifier;
use crate::cancel::{CancelDecision, CancelMap};
use crate::error::{ClientError, SqlState};
use crate::guard::{Guard, TenantScope};
use crate::handshake::{self, HandshakeError, HandshakePolicy, Outcome};
use crate::metrics::{self, CancelOutcome, EndReason, LoginRefusal};
use crate::protocol::backend;
use crate::quota::OrgSessions;
use crate::relay::{self, End, RelayCtx};
use crate::upstream::Connector;

/// Time allowed to close a finished connection (TLS close_notify included)
/// when the peer does not read.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything sessions share, built once at start-up.
pub struct Shared {
    /// Token verification.
    pub verifier: Verifier,
    /// Upstream connector.
    pub connector: Connector,
    /// Statement policy.
    pub guard: Arc<Guard>,
    /// Handshake policy.
    pub handshake: HandshakePolicy,
    /// Cancel keys.
    pub cancel: Arc<CancelMap>,
    /// Time allowed from connect to authenticated.
    pub auth_timeout: Duration,
    /// Largest client message after authentication.
    pub max_message: usize,
    /// Leeway added to token expiry.
    pub leeway: Duration,
    /// Set to `true` when sessions must close now (end of drain).
    pub close_now: watch::Receiver<bool>,
    /// Open sessions per organization.
    pub org_sessions: Arc<OrgSessions>,
    /// The backend pool, in transaction pool mode.
    pub pool: Option<Arc<crate::pool::Pool>>,
}

/// Runs one client connection to its end.
pub async fn run(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let greeted = match tokio::time::timeout(shared.auth_timeout, handshake::run(tcp, peer, &shared.handshake)).await {
        Err(_) => {
            debug!("authentication timeout");
            return;
        }
        Ok(Err(HandshakeError::Refused(e))) => {
            metrics::login_refused(LoginRefusal::Startup);
            info!(code = e.code.code(), reason = %e.message, "client refused during startup");
            return;
        }
        Ok(Err(HandshakeError::Broken(why))) => {
            debug!(%why, "client left during startup");
            return;
        }
        Ok(Ok(Outcome::Cancel {
            mut stream,
            pid,
            secret,
        })) => {
            forward_cancel(peer, pid, &secret, &shared).await;
            // Like PostgreSQL, close only once the cancel was handled, and
            // properly: a client that sent its CancelRequest inside TLS
            // (libpq 17, psycopg 3) takes a close without close_notify as a
            // failed cancel.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.shutdown()).await;
            return;
        }
        Ok(Ok(Outcome::Greeted(g))) => g,
    };
    let handshake::Greeted {
        mut stream,
        user,
        database,
        params,
        token,
    } = *greeted;

    let identity = match shared.verifier.verify_fetching(&token).await {
        Ok(id) => id,
        Err(e) => {
            let ce = e.to_client();
            // Client-supplied strings are logged with `?`: quoted and escaped.
            metrics::login_refused(LoginRefusal::Token);
            info!(code = ce.code.code(), reason = %e, client_user = ?user, "token refused");
            let _ = handshake::refuse(&mut stream, ce).await;
            return;
        }
    };
    drop(token);
    let span = tracing::Span::current();
    span.record("org", tracing::field::display(identity.organization_id));
    if let Some(user_id) = identity.user_id {
        span.record("user", tracing::field::display(user_id));
    }

    // Held until the session ends: one organization cannot take every slot.
    let _org_permit = match shared.org_sessions.acquire(identity.organization_id) {
        Ok(p) => p,
        Err(ce) => {
            metrics::login_refused(LoginRefusal::OrganizationLimit);
            info!(code = ce.code.code(), "organization session limit reached");
            let _ = handshake::refuse(&mut stream, ce).await;
            return;
        }
    };

    if let Some(pool) = shared.pool.clone() {
        pooled(stream, identity, params, user, database, shared, pool).await;
        return;
    }

    let connect_start = std::time::Instant::now();
    let upstream = match shared.connector.connect(&identity, &params).await {
        Ok(u) => {
            metrics::get()
                .upstream_connect_seconds
                .observe(connect_start.elapsed().as_secs_f64());
            u
        }
        Err(e) => {
            metrics::get().upstream_login_failures.inc();
            metrics::login_refused(LoginRefusal::Upstream);
            warn!(error = %e, "upstream login failed");
            let _ = handshake::refuse(&mut stream, e.to_client()).await;
            return;
        }
    };
    let registration = upstream.key.map(|k| shared.cancel.register(k));
    let (pid, secret) = registration.as_ref().map(|r| r.key()).unwrap_or((0, 0));
    if !greet(&mut stream, &upstream.params, (pid, secret)).await {
        return;
    }
    started(&user, &database, &params);
    let _open = OpenSession::new();
    let mut ctx = RelayCtx {
        guard: shared.guard.clone(),
        scope: TenantScope::new(identity.organization_id),
        max_message: shared.max_message,
        expires_at: expires_at(&identity, shared.leeway),
        close_now: shared.close_now.clone(),
    };
    let (mut cr, mut cw) = tokio::io::split(stream);
    let (mut ur, mut uw) = tokio::io::split(upstream.stream);
    let end = relay::run(&mut cr, &mut cw, &mut ur, &mut uw, &mut ctx).await;
    // Work the client can no longer receive is cancelled, so the backend does
    // not run it to the end (a clean Terminate or a closed upstream leaves
    // nothing running).
    let abandoned = matches!(end, End::ClientVanished | End::Fatal(_) | End::Io(_));
    if abandoned {
        if let Some((upid, usecret)) = upstream.key {
            if let Err(e) = shared.connector.cancel(upid, usecret).await {
                debug!(error = %e, "could not cancel the work of an ended session");
            }
        }
    }
    close(end, &mut cw).await;
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
        uw.write_all(&[b'X', 0, 0, 0, 4]).await?;
        uw.shutdown().await
    })
    .await;
    info!("session ended");
    drop(registration);
}

/// Transaction pool mode: the client's startup settings are applied and
/// read back on a pooled backend (their values as the server spells them
/// become the client's own), the greeting is sent, then the pooled relay
/// runs.
async fn pooled(
    mut stream: crate::stream::Stream,
    identity: crate::auth::Identity,
    params: Vec<(String, String)>,
    user: String,
    database: String,
    shared: Arc<Shared>,
    pool: Arc<crate::pool::Pool>,
) {
    let (baseline, reported) = match crate::pool::startup_settings(&pool, identity.organization_id, &params).await {
        Ok(v) => v,
        Err(e) => {
            metrics::login_refused(LoginRefusal::Upstream);
            info!(code = e.code.code(), reason = %e.message, "pooled session could not start");
            let _ = handshake::refuse(&mut stream, e).await;
            return;
        }
    };
    let target = Arc::new(crate::cancel::PooledTarget::default());
    let registration = shared.cancel.register_pooled(target.clone());
    if !greet(&mut stream, &reported, registration.key()).await {
        return;
    }
    started(&user, &database, &params);
    let _open = OpenSession::new();
    let ctx = crate::pool::relay::PooledCtx {
        guard: shared.guard.clone(),
        scope: TenantScope::new(identity.organization_id),
        expires_at: expires_at(&identity, shared.leeway),
        identity,
        max_message: shared.max_message,
        close_now: shared.close_now.clone(),
        cancel: target,
        session_id: next_session_id(),
        baseline,
    };
    let (mut cr, mut cw) = tokio::io::split(stream);
    let end = crate::pool::relay::run(&mut cr, &mut cw, &pool, ctx).await;
    close(end, &mut cw).await;
    info!("session ended");
    drop(registration);
}

/// A process-wide session number (owner of unnamed statements on pooled
/// backends).
fn next_session_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Sends AuthenticationOk, the ParameterStatus values, BackendKeyData and
/// ReadyForQuery. False if the client is gone.
async fn greet(stream: &mut crate::stream::Stream, params: &[(String, String)], key: (i32, i32)) -> bool {
    let mut hello = BytesMut::with_capacity(512);
    backend::auth_ok(&mut hello);
    for (k, v) in params {
        backend::parameter_status(&mut hello, k, v);
    }
    backend::backend_key_data(&mut hello, key.0, key.1);
    backend::ready_for_query_idle(&mut hello);
    stream.write_all(&hello).await.is_ok() && stream.flush().await.is_ok()
}

/// Logs and counts a started session.
fn started(user: &str, database: &str, params: &[(String, String)]) {
    let application_name = params
        .iter()
        .find(|(k, _)| k == "application_name")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    info!(client_user = ?user, database = ?database, application_name = ?application_name, "session started");
    metrics::get().sessions_started.inc();
}

/// When the session must end: the token's expiry plus leeway.
fn expires_at(identity: &crate::auth::Identity, leeway: Duration) -> Option<tokio::time::Instant> {
    // The verifier caps the lifetime; the arithmetic saturates anyway, so no
    // `exp` can make it overflow.
    let now_unix = crate::auth::jwt::unix_now();
    let lifetime = identity
        .expires_at
        .saturating_sub(now_unix)
        .min(crate::auth::jwt::MAX_TOKEN_LIFETIME_SECS);
    let remaining = Duration::from_secs(lifetime).saturating_add(leeway);
    let start = tokio::time::Instant::now();
    start
        .checked_add(remaining)
        .or_else(|| start.checked_add(Duration::from_secs(crate::auth::jwt::MAX_TOKEN_LIFETIME_SECS)))
}

/// Counts how the session ended and closes the client side: its FATAL
/// error if any, then the close (every write bounded: the client may not
/// be reading).
async fn close<W: tokio::io::AsyncWrite + Unpin>(end: End, cw: &mut W) {
    let reason = end_reason(&end);
    metrics::session_ended(reason);
    if reason == EndReason::TokenExpired {
        metrics::get().token_expiries.inc();
    }
    let fatal = match end {
        End::ClientClosed | End::ClientVanished => None,
        End::UpstreamClosed { told_client: true } => None,
        End::UpstreamClosed { told_client: false } => Some(ClientError::fatal(
            SqlState::ConnectionFailure,
            "the database server closed the connection unexpectedly",
        )),
        End::Fatal(e) => Some(e),
        End::Io(why) => {
            debug!(%why, "session ended by a socket error");
            None
        }
    };
    if let Some(e) = fatal {
        info!(code = e.code.code(), reason = %e.message, "session closed by the proxy");
        let mut out = BytesMut::new();
        backend::error_response(&mut out, &e);
        let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
            cw.write_all(&out).await?;
            cw.flush().await
        })
        .await;
    }
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, cw.shutdown()).await;
}

/// Longest wait for the last writes of a session (its FATAL error, TLS
/// close_notify, the upstream Terminate): a peer that does not read cannot
/// hold the session open.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

async fn forward_cancel(peer: SocketAddr, pid: i32, secret: &[u8], shared: &Shared) {
    match shared.cancel.admit(peer.ip(), pid, secret) {
        CancelDecision::Forward((upid, usecret)) => {
            metrics::cancel(CancelOutcome::Forwarded);
            if let Err(e) = shared.connector.cancel(upid, usecret).await {
                warn!(error = %e, "could not forward a cancel request");
            }
        }
        CancelDecision::ForwardPooled(target) => {
            // Only to the backend the session holds, and only while it holds
            // it: the backend's cancel lock keeps the pool from handing it to
            // another session until this cancel is delivered.
            let Some(held) = target.0.get() else {
                metrics::cancel(CancelOutcome::Forwarded);
                debug!("cancel request for a pooled session between transactions: nothing to cancel");
                return;
            };
            let _delivering = held.cancel_lock.lock().await;
            if target.0.get().map(|h| h.backend_id) != Some(held.backend_id) {
                metrics::cancel(CancelOutcome::Forwarded);
                debug!("cancel request arrived after the transaction ended: nothing to cancel");
                return;
            }
            metrics::cancel(CancelOutcome::Forwarded);
            if let Err(e) = shared.connector.cancel(held.key.0, held.key.1).await {
                warn!(error = %e, "could not forward a cancel request");
            }
        }
        CancelDecision::Unknown => {
            metrics::cancel(CancelOutcome::Unknown);
            debug!("cancel request with an unknown key ignored")
        }
        CancelDecision::UnknownOverBudget { first: true } => {
            metrics::cancel(CancelOutcome::RateLimited);
            warn!(%peer, "cancel requests with unknown keys over the per-address budget; ignoring them for the rest of this second")
        }
        CancelDecision::UnknownOverBudget { first: false } => metrics::cancel(CancelOutcome::RateLimited),
    }
}

/// Counts a session as open while it lives.
struct OpenSession;

impl OpenSession {
    fn new() -> OpenSession {
        metrics::get().sessions_open.inc();
        OpenSession
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        metrics::get().sessions_open.dec();
    }
}

/// The metrics label for how a relay ended.
fn end_reason(end: &End) -> EndReason {
    match end {
        End::ClientClosed => EndReason::ClientClosed,
        End::ClientVanished => EndReason::ClientVanished,
        End::UpstreamClosed { .. } => EndReason::UpstreamClosed,
        End::Fatal(e) if e.code == SqlState::InvalidPassword => EndReason::TokenExpired,
        End::Fatal(e) if e.code == SqlState::AdminShutdown => EndReason::Drained,
        End::Fatal(_) => EndReason::Fatal,
        End::Io(_) => EndReason::Io,
    }
}

/// Tells a client over the connection cap why it is turned away.
pub async fn refuse_busy(mut tcp: TcpStream) {
    metrics::login_refused(LoginRefusal::ConnectionLimit);
    let mut out = BytesMut::new();
    backend::error_response(
        &mut out,
        &ClientError::fatal(SqlState::TooManyConnections, "sorry, too many clients already"),
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&out)).await;
    let _ = tcp.shutdown().await;
}
