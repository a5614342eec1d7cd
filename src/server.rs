//! The accept loop: a connection cap (a semaphore permit per session), one
//! task per client, accept errors retried with back-off, and a graceful drain
//! on shutdown (stop accepting, let sessions finish, then close the rest
//! with FATAL 57P01).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{error, info, Instrument};

use crate::auth::Verifier;
use crate::cancel::CancelMap;
use crate::config::Config;
use crate::guard::Guard;
use crate::handshake::HandshakePolicy;
use crate::session::{self, Shared};
use crate::upstream::Connector;

/// The configuration new sessions start with: replaced whole by a reload,
/// while every open session keeps the `Arc<Shared>` it started with.
pub struct SharedCell(std::sync::RwLock<Arc<Shared>>);

impl SharedCell {
    /// A cell holding `shared`.
    pub fn new(shared: Arc<Shared>) -> Arc<SharedCell> {
        Arc::new(SharedCell(std::sync::RwLock::new(shared)))
    }

    /// What a session starting now uses.
    pub fn current(&self) -> Arc<Shared> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes `shared` what sessions starting from now on use.
    pub fn replace(&self, shared: Arc<Shared>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = shared;
    }
}

/// Builds what new sessions share from a reloaded configuration: new token
/// keys, guard, limits, TLS files and upstream settings; the cancel keys,
/// the per-organization counts and the drain signal carry over, so open
/// sessions are not touched.
pub fn reload(cfg: &Config, old: &Shared) -> Result<Arc<Shared>, String> {
    let (fresh, _unused_close) = prepare(cfg)?;
    let Ok(mut fresh) = Arc::try_unwrap(fresh) else {
        return Err("internal: a fresh configuration is already shared".into());
    };
    fresh.cancel = old.cancel.clone();
    fresh.close_now = old.close_now.clone();
    old.org_sessions.set_limit(cfg.limits.max_sessions_per_organization);
    fresh.org_sessions = old.org_sessions.clone();
    // The pool and its backends stay; its settings need a restart.
    if fresh.pool.is_some() != old.pool.is_some() {
        return Err("pool_mode cannot change without a restart".into());
    }
    fresh.pool = old.pool.clone();
    Ok(Arc::new(fresh))
}

/// Builds everything sessions share from a validated configuration. Fails
/// with a readable message if keys, certificates or the guard config are bad.
pub fn prepare(cfg: &Config) -> Result<(Arc<Shared>, watch::Sender<bool>), String> {
    let verifier = Verifier::new(&cfg.jwt)?;
    let connector = Connector::new(
        cfg.upstream.clone(),
        cfg.limits.connect_timeout,
        cfg.context.clone(),
        cfg.jwt.leeway_secs,
    )?;
    let pooled = cfg.pool.mode == crate::config::PoolMode::Transaction;
    let guard = Arc::new(Guard::for_mode(&cfg.guard, pooled).map_err(|e| format!("[guard]: {e}"))?);
    let pool = pooled.then(|| crate::pool::Pool::new(connector.clone(), cfg.pool.clone()));
    let tls = cfg.tls.as_ref().map(crate::tls::server_config).transpose()?;
    let (close_tx, close_rx) = watch::channel(false);
    let shared = Shared {
        verifier,
        connector,
        guard,
        handshake: HandshakePolicy {
            tls,
            allow_plaintext_from: cfg.allow_plaintext_from.clone(),
            databases: cfg.databases.clone(),
            passthrough: cfg.passthrough_parameters.clone(),
            setting_limits: crate::guard::SettingLimits::new(cfg.guard.setting_limits.as_ref())
                .map_err(|e| format!("[guard]: {e}"))?,
        },
        cancel: Arc::new(CancelMap::default()),
        auth_timeout: cfg.limits.auth_timeout,
        max_message: cfg.limits.max_message_bytes,
        leeway: Duration::from_secs(cfg.jwt.leeway_secs),
        close_now: close_rx,
        org_sessions: crate::quota::OrgSessions::new(cfg.limits.max_sessions_per_organization),
        pool,
    };
    Ok((Arc::new(shared), close_tx))
}

/// A session handed to a worker thread: the accepted socket (already
/// deregistered from the accepting runtime), its peer, its connection permit
/// and its log span.
type Job = (
    std::net::TcpStream,
    SocketAddr,
    OwnedSemaphorePermit,
    tracing::Span,
    Arc<Shared>,
);

/// Where sessions run.
#[derive(Clone)]
pub enum Sessions {
    /// As tasks of the runtime that accepts (tokio's multi-thread runtime).
    Shared,
    /// Round-robin over worker threads, each with its own single-threaded
    /// runtime: a session's two directions and its timers stay on one thread,
    /// so no cross-thread wake-ups or work stealing on the hot path.
    PerThread(Arc<PerThread>),
}

/// The worker threads of [`Sessions::PerThread`].
pub struct PerThread {
    senders: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl PerThread {
    /// Starts `threads` worker threads that run the sessions dispatched to them.
    pub fn start(threads: usize) -> Result<Arc<PerThread>, String> {
        let mut senders = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start worker runtime: {e}"))?;
            std::thread::Builder::new()
                .name(format!("pgtp-worker-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        while let Some((std_tcp, peer, permit, span, shared)) = rx.recv().await {
                            tokio::spawn(
                                async move {
                                    match TcpStream::from_std(std_tcp) {
                                        Ok(tcp) => session::run(tcp, peer, shared).await,
                                        Err(e) => error!(error = %e, "cannot register a connection"),
                                    }
                                    drop(permit);
                                }
                                .instrument(span),
                            );
                        }
                    })
                })
                .map_err(|e| format!("cannot start worker thread: {e}"))?;
            senders.push(tx);
        }
        Ok(Arc::new(PerThread {
            senders,
            next: AtomicUsize::new(0),
        }))
    }

    fn dispatch(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
        span: tracing::Span,
        shared: Arc<Shared>,
    ) {
        let std_tcp = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => return error!(error = %e, "cannot hand a connection to a worker"),
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        if self.senders[i].send((std_tcp, peer, permit, span, shared)).is_err() {
            error!("a worker thread has stopped; connection dropped");
        }
    }
}

/// Serves clients on `listener` until `shutdown` completes, then drains.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    listener: TcpListener,
    sessions: Sessions,
    shared: Arc<SharedCell>,
    close_tx: watch::Sender<bool>,
    max_connections: usize,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut next_id: u64 = 0;
    let mut backoff = Duration::from_millis(5);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(v) => { backoff = Duration::from_millis(5); v }
                Err(e) => {
                    // EMFILE and friends: wait and retry; never end the loop.
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let _ = crate::stream::tune_tcp(&tcp);
        next_id += 1;
        let span = tracing::info_span!(
            "conn",
            id = next_id,
            %peer,
            org = tracing::field::Empty,
            user = tracing::field::Empty
        );
        match permits.clone().try_acquire_owned() {
            Ok(permit) => match &sessions {
                Sessions::PerThread(workers) => workers.dispatch(tcp, peer, permit, span, shared.current()),
                Sessions::Shared => {
                    let shared = shared.current();
                    tokio::spawn(
                        async move {
                            session::run(tcp, peer, shared).await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
            },
            Err(_) => {
                tokio::spawn(session::refuse_busy(tcp).instrument(span));
            }
        }
    }
    drop(listener);
    crate::metrics::get().draining.set(1);
    let open = max_connections - permits.available_permits();
    info!(
        open_sessions = open,
        drain_timeout_secs = drain_timeout.as_secs(),
        "shutting down: no longer accepting"
    );
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain_timeout, permits.acquire_many(all))
        .await
        .is_err()
    {
        info!("drain time is over: closing the remaining sessions");
        let _ = close_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), permits.acquire_many(all)).await;
    }
    info!("stopped");
}
