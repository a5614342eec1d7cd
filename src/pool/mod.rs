//! Transaction pooling: the layer between a client session and the upstream
//! in `pool_mode = "transaction"`. Client sessions share a small set of
//! backends; a session holds one only for a transaction (or one autocommit
//! statement, or one extended-protocol sequence up to Sync), and the tenant
//! is pinned inside each of those transactions ([`relay`]).
//!
//! Backends log in as the configured role with no tenant at all, so a
//! transaction the proxy did not pin reads as no tenant: no rows, and writes
//! fail `WITH CHECK`. Each backend prepares the proxy's pin statement once
//! and carries the proxy-wide prepared statements of [`statements`].
//!
//! - [`backend`]: one pooled connection and the little protocol the pool
//!   speaks on it itself (setup, settings read-back).
//! - [`relay`]: a client session's traffic, one transaction at a time.
//! - [`statements`]: named prepared statements across backends.

pub mod backend;
pub mod relay;
pub mod statements;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::config::PoolConfig;
use crate::error::{ClientError, Severity, SqlState};
use crate::metrics;
use crate::upstream::{Connector, UpstreamError};
pub use backend::Backend;

/// How often idle backends are checked against the idle timeout.
const REAP_EVERY: Duration = Duration::from_secs(10);
/// Organizations tracked before unused entries are swept.
const MAX_TRACKED_ORGANIZATIONS: usize = 4096;

/// Backends held per organization: each organization gets its own
/// semaphore of `limit` permits, taken before a pool permit, so one
/// organization waits for itself and never takes the last backends from
/// the others.
struct OrgShare {
    limit: usize,
    map: Mutex<std::collections::HashMap<uuid::Uuid, Arc<Semaphore>>>,
}

impl OrgShare {
    fn slot(&self, org: uuid::Uuid) -> Arc<Semaphore> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED_ORGANIZATIONS {
            let limit = self.limit;
            map.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < limit);
        }
        map.entry(org)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
            .clone()
    }
}

/// The backends of one proxy process.
pub struct Pool {
    connector: Connector,
    cfg: PoolConfig,
    permits: Arc<Semaphore>,
    /// Idle backends, most recently used last (handed out first).
    idle: Mutex<Vec<Backend>>,
    next_id: AtomicU64,
    /// ParameterStatus values of the first backend's login (server version,
    /// encodings, ...), the base of every client's greeting.
    server_params: Mutex<Vec<(String, String)>>,
    /// Backends held per organization.
    orgs: OrgShare,
    /// Proxy-wide prepared statements.
    pub statements: statements::Registry,
}

/// Why no backend could be had.
#[derive(Debug)]
pub enum PoolError {
    /// None became free within the checkout timeout.
    Timeout(Duration, usize),
    /// Opening a new one failed.
    Connect(UpstreamError),
}

impl PoolError {
    /// What the client is told (an ERROR: the session goes on).
    pub fn to_client(&self) -> ClientError {
        match self {
            PoolError::Timeout(t, size) => ClientError::error(
                SqlState::TooManyConnections,
                format!(
                    "no database connection became free within {} s (transaction pool of {size})",
                    t.as_secs()
                ),
            )
            .with_hint("Retry; if it persists, raise pool_size or shorten long transactions."),
            PoolError::Connect(e) => {
                let mut ce = e.to_client();
                ce.severity = Severity::Error;
                ce
            }
        }
    }
}

/// A backend held by one client session. Dropped without
/// [`Lease::release`], the backend is closed, never reused.
pub struct Lease {
    pool: Arc<Pool>,
    backend: Option<Backend>,
    _permit: OwnedSemaphorePermit,
    _org_permit: OwnedSemaphorePermit,
}

impl Lease {
    /// The backend.
    pub fn backend(&mut self) -> &mut Backend {
        // Only `release` and `Drop` take it out.
        self.backend
            .as_mut()
            .unwrap_or_else(|| unreachable!("lease without a backend"))
    }

    /// Gives the backend back to the pool (the caller checked that it is
    /// idle with nothing owed). Too old a backend is closed instead.
    pub fn release(mut self) {
        if let Some(mut b) = self.backend.take() {
            if b.created.elapsed() >= self.pool.cfg.max_lifetime {
                debug!(backend = b.id, "backend reached its maximum lifetime");
                metrics::get().pool_backends.dec();
                return;
            }
            b.idle_since = Instant::now();
            self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).push(b);
        }
        metrics::get().pool_backends_in_use.dec();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(b) = self.backend.take() {
            debug!(backend = b.id, "backend closed instead of returned");
            metrics::get().pool_backends.dec();
            metrics::get().pool_backends_in_use.dec();
        }
    }
}

impl Pool {
    /// A pool that opens backends with `connector`, within `cfg`'s limits.
    /// Starts the idle reaper on the current runtime, if there is one.
    pub fn new(connector: Connector, cfg: PoolConfig) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            permits: Arc::new(Semaphore::new(cfg.size)),
            orgs: OrgShare {
                limit: cfg.max_backends_per_organization.max(1),
                map: Mutex::new(std::collections::HashMap::new()),
            },
            connector,
            cfg,
            idle: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            server_params: Mutex::new(Vec::new()),
            statements: statements::Registry::default(),
        });
        let weak = Arc::downgrade(&pool);
        // Outside a runtime (configuration checks) there is nothing to reap.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return pool;
        };
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(REAP_EVERY);
            loop {
                tick.tick().await;
                let Some(pool) = weak.upgrade() else { return };
                pool.reap();
            }
        });
        pool
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// The connector backends are opened with.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The server's login ParameterStatus values (empty before the first
    /// backend was opened).
    pub fn server_params(&self) -> Vec<(String, String)> {
        self.server_params.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Closes backends idle for longer than the idle timeout.
    fn reap(&self) {
        let timeout = self.cfg.idle_timeout;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let before = idle.len();
        idle.retain(|b| b.idle_since.elapsed() < timeout);
        let closed = before - idle.len();
        if closed > 0 {
            metrics::get().pool_backends.dec_by(closed as i64);
            debug!(closed, "idle backends closed");
        }
    }

    /// A backend for one transaction: an idle one (the most recently used),
    /// or a new one while fewer than `pool_size` are open. Waits up to the
    /// checkout timeout, first come first served.
    /// `org`'s sessions hold at most `max_backends_per_organization` at once.
    pub async fn checkout(self: &Arc<Self>, org: uuid::Uuid) -> Result<Lease, PoolError> {
        let started = Instant::now();
        let timeout = self.cfg.checkout_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || {
            metrics::get().pool_checkout_timeouts.inc();
            PoolError::Timeout(timeout, self.cfg.size)
        };
        let org_permit = match tokio::time::timeout_at(deadline, self.orgs.slot(org).acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => return Err(timed_out()),
        };
        let permit = match tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => return Err(timed_out()),
        };
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let mut found = None;
            while let Some(mut b) = idle.pop() {
                if b.idle_since.elapsed() < self.cfg.idle_timeout && !b.looks_closed() {
                    found = Some(b);
                    break;
                }
                debug!(backend = b.id, "idle backend expired or closed by the server");
                metrics::get().pool_backends.dec();
            }
            found
        };
        let backend = match idle {
            Some(b) => b,
            None => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let connect_started = Instant::now();
                let b = Backend::open(&self.connector, id).await.map_err(|e| {
                    metrics::get().upstream_login_failures.inc();
                    warn!(error = %e, "pooled backend login failed");
                    PoolError::Connect(e)
                })?;
                metrics::get()
                    .upstream_connect_seconds
                    .observe(connect_started.elapsed().as_secs_f64());
                metrics::get().pool_backends.inc();
                {
                    let mut sp = self.server_params.lock().unwrap_or_else(|p| p.into_inner());
                    if sp.is_empty() {
                        *sp = b.login_params.clone();
                    }
                }
                b
            }
        };
        // A cancel still on its way to this backend for its previous holder
        // is delivered before anyone else's work can start on it.
        drop(backend.cancel_lock.lock().await);
        metrics::get().pool_backends_in_use.inc();
        metrics::get().pool_transactions.inc();
        metrics::get()
            .pool_checkout_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(Lease {
            pool: self.clone(),
            backend: Some(backend),
            _permit: permit,
            _org_permit: org_permit,
        })
    }

    /// A backend at once, without waiting: an idle one, when a permit of
    /// the pool and of `org` are free and no cancel is on its way to it.
    /// The common case of a busy proxy; [`Pool::checkout`] otherwise.
    pub fn try_checkout(self: &Arc<Self>, org: uuid::Uuid) -> Option<Lease> {
        let org_permit = self.orgs.slot(org).try_acquire_owned().ok()?;
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        let backend = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let mut found = None;
            while let Some(mut b) = idle.pop() {
                if b.idle_since.elapsed() >= self.cfg.idle_timeout || b.looks_closed() {
                    debug!(backend = b.id, "idle backend expired or closed by the server");
                    metrics::get().pool_backends.dec();
                    continue;
                }
                if b.cancel_lock.try_lock().is_err() {
                    // A cancel is being delivered: leave it for a waiting checkout.
                    idle.push(b);
                    return None;
                }
                found = Some(b);
                break;
            }
            found?
        };
        metrics::get().pool_backends_in_use.inc();
        metrics::get().pool_transactions.inc();
        Some(Lease {
            pool: self.clone(),
            backend: Some(backend),
            _permit: permit,
            _org_permit: org_permit,
        })
    }

    /// Idle backends now (for tests and diagnostics).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or(0)
    }
}

/// A new client's tracked settings: the login role's values overridden by
/// the client's startup parameters (`params`, already validated by the
/// handshake), applied on a pooled backend and read back, so the server
/// checks them and spells them. Returns the values (the client's baseline)
/// and the ParameterStatus list for its greeting. A value the server
/// refuses refuses the login with the server's message (22023).
pub async fn startup_settings(
    pool: &Arc<Pool>,
    org: uuid::Uuid,
    params: &[(String, String)],
) -> Result<(Vec<String>, Vec<(String, String)>), ClientError> {
    use crate::tracked::{readback_sql, replay_sql, TRACKED_SETTINGS};
    let mut lease = pool.checkout(org).await.map_err(|e| {
        let mut ce = e.to_client();
        ce.severity = Severity::Fatal;
        ce
    })?;
    let b = lease.backend();
    let mut changes: Vec<(usize, &str)> = Vec::new();
    for (i, name) in TRACKED_SETTINGS.iter().enumerate() {
        let given = params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        match given {
            Some(v) => changes.push((i, v)),
            None => {
                if let Some(v) = b.login_tracked.get(i).filter(|v| b.tracked.get(i) != Some(*v)) {
                    changes.push((i, v.as_str()));
                }
            }
        }
    }
    debug!(?changes, tracked = ?b.tracked, login = ?b.login_tracked, "startup settings");
    let mut sql = String::new();
    if let Some(replay) = replay_sql(&changes) {
        sql.push_str(&replay);
        sql.push_str("; ");
    }
    sql.push_str(&readback_sql());
    let mut out = bytes::BytesMut::new();
    crate::protocol::frame::write_message(&mut out, b'Q', |m| {
        bytes::BufMut::put_slice(m, sql.as_bytes());
        bytes::BufMut::put_u8(m, 0);
    });
    let replies = match tokio::time::timeout(backend::OWN_EXCHANGE_TIMEOUT, b.exchange(&out, 1)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let mut ce = e.to_client();
            ce.severity = Severity::Fatal;
            return Err(ce);
        }
        Err(_) => {
            return Err(
                ClientError::fatal(SqlState::UnableToConnect, "could not connect to the database server")
                    .with_detail("the database server did not answer in time"),
            )
        }
    };
    if let Some((_, body)) = replies.iter().find(|(t, _)| *t == b'E') {
        // The settings are now unknown: the backend is closed, not returned.
        b.tracked.clear();
        drop(lease);
        let message = backend::error_field(body, b'M').unwrap_or_else(|| "invalid startup parameter".into());
        return Err(ClientError::fatal(SqlState::InvalidParameterValue, message));
    }
    let Some(values) = backend::tracked_values(&replies) else {
        drop(lease);
        return Err(ClientError::fatal(
            SqlState::ConnectionFailure,
            "the database server sent an unexpected reply",
        ));
    };
    b.tracked = values.clone();
    let mut reported = pool.server_params();
    for (name, value) in reported.iter_mut() {
        if let Some(i) = TRACKED_SETTINGS.iter().position(|t| t.eq_ignore_ascii_case(name)) {
            if let Some(v) = values.get(i) {
                value.clone_from(v);
            }
        }
    }
    lease.release();
    Ok((values, reported))
}
