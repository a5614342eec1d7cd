//! Process-wide counters for operators, exposed at `/metrics` by
//! [`crate::admin`] in Prometheus text format (the `prometheus-client`
//! crate writes it).
//!
//! Every label is a closed enum, so cardinality is bounded: no label ever
//! carries a tenant, user, peer address, statement or message.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How a client session ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum EndReason {
    /// The client sent Terminate.
    ClientClosed,
    /// The client's connection ended without Terminate.
    ClientVanished,
    /// The upstream closed the session.
    UpstreamClosed,
    /// The token expired.
    TokenExpired,
    /// The proxy's drain ended.
    Drained,
    /// The proxy ended it with another FATAL error.
    Fatal,
    /// A socket failed.
    Io,
}

/// Why a client was turned away before its session started.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum LoginRefusal {
    /// Startup packet, TLS or parameter policy.
    Startup,
    /// The token did not verify.
    Token,
    /// Its organization already holds the session limit.
    OrganizationLimit,
    /// The upstream login failed.
    Upstream,
    /// The proxy's connection limit.
    ConnectionLimit,
}

/// Which way bytes went.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    /// Client to upstream.
    ClientToUpstream,
    /// Upstream to client.
    UpstreamToClient,
}

/// What became of a CancelRequest.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Its key was live: forwarded upstream.
    Forwarded,
    /// Its key matched no session.
    Unknown,
    /// Dropped by the per-address budget for unknown keys.
    RateLimited,
}

/// How the guard decided a statement.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum GuardPath {
    /// From its bytes, without a parse.
    FastPath,
    /// From the verdict cache.
    Cache,
    /// Parsed and walked.
    FullWalk,
}

/// How a fetch of `--jwks-url` ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum JwksRefresh {
    /// Fetched and parsed; the cache was replaced.
    Ok,
    /// Failed; the cached keys stay.
    Failed,
}

/// A label value: the snake_case name of a variant.
pub trait Label: Copy {
    /// The value as it appears in the exposition.
    fn as_str(self) -> &'static str;
}

macro_rules! labels {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl Label for $t {
            fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
        }
    };
}

labels!(EndReason { ClientClosed => "client_closed", ClientVanished => "client_vanished", UpstreamClosed => "upstream_closed", TokenExpired => "token_expired", Drained => "drained", Fatal => "fatal", Io => "io" });
labels!(LoginRefusal { Startup => "startup", Token => "token", OrganizationLimit => "organization_limit", Upstream => "upstream", ConnectionLimit => "connection_limit" });
labels!(Direction { ClientToUpstream => "client_to_upstream", UpstreamToClient => "upstream_to_client" });
labels!(CancelOutcome { Forwarded => "forwarded", Unknown => "unknown", RateLimited => "rate_limited" });
labels!(JwksRefresh { Ok => "ok", Failed => "failed" });
labels!(GuardPath { FastPath => "fast_path", Cache => "cache", FullWalk => "full_walk" });

/// One label `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// The reason.
    pub reason: &'static str,
}

/// One label `class`: the kind of refusal (see `refusal.rs`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Class {
    /// The refusal class, a fixed name.
    pub class: &'static str,
}

/// One label `direction`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Dir {
    /// The direction.
    pub direction: &'static str,
}

/// One label `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// The outcome.
    pub outcome: &'static str,
}

/// One label `path`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Path {
    /// The path.
    pub path: &'static str,
}

/// Every metric the proxy keeps.
pub struct Metrics {
    registry: Registry,
    /// Client sessions open now (authenticated, upstream logged in).
    pub sessions_open: Gauge,
    /// Sessions started.
    pub sessions_started: Counter,
    /// Sessions ended, by reason.
    pub sessions_ended: Family<Reason, Counter>,
    /// Clients turned away before their session started, by reason.
    pub logins_refused: Family<Reason, Counter>,
    /// Statements the guard refused, by class.
    pub statements_refused: Family<Class, Counter>,
    /// Seconds to connect and log in upstream.
    pub upstream_connect_seconds: Histogram,
    /// Upstream logins that failed.
    pub upstream_login_failures: Counter,
    /// Bytes relayed, by direction.
    pub bytes: Family<Dir, Counter>,
    /// CancelRequests, by outcome.
    pub cancel_requests: Family<Outcome, Counter>,
    /// Statements decided by the guard, by path.
    pub guard_decisions: Family<Path, Counter>,
    /// Seconds the guard's full parse and walk took (the other paths take
    /// well under a microsecond and are only counted).
    pub guard_walk_seconds: Histogram,
    /// Sessions closed because their token expired.
    pub token_expiries: Counter,
    /// 1 while the proxy drains (no longer accepting), else 0.
    pub draining: Gauge,
    /// Fetches of `--jwks-url`, by outcome.
    pub jwks_refreshes: Family<Outcome, Counter>,
    /// Signing keys in the cache of `--jwks-url`.
    pub jwks_keys: Gauge,
    /// Transaction pool mode: backends open (idle or in use).
    pub pool_backends: Gauge,
    /// Transaction pool mode: backends held by a client now.
    pub pool_backends_in_use: Gauge,
    /// Transaction pool mode: time a client waited for a backend.
    pub pool_checkout_seconds: Histogram,
    /// Transaction pool mode: clients that waited past the checkout timeout.
    pub pool_checkout_timeouts: Counter,
    /// Transaction pool mode: transactions run on pooled backends.
    pub pool_transactions: Counter,
    /// Transaction pool mode: writes to a backend after which the relay
    /// waited for its replies (upstream round trips).
    pub pool_backend_flushes: Counter,
    /// The per-statement and per-read counters, looked up once here so the
    /// relay's hot path makes one atomic add, not a family lookup.
    hot: Hot,
}

/// Handles to the family members the relay and the guard count into.
#[derive(Default)]
struct Hot {
    fast_path: Counter,
    cache: Counter,
    full_walk: Counter,
    client_to_upstream: Counter,
    upstream_to_client: Counter,
}

fn build() -> Metrics {
    let mut registry = Registry::with_prefix("pgtp");
    let m = Metrics {
        sessions_open: Gauge::default(),
        sessions_started: Counter::default(),
        sessions_ended: Family::default(),
        logins_refused: Family::default(),
        statements_refused: Family::default(),
        upstream_connect_seconds: Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]),
        upstream_login_failures: Counter::default(),
        bytes: Family::default(),
        cancel_requests: Family::default(),
        guard_decisions: Family::default(),
        guard_walk_seconds: Histogram::new([
            0.000_002, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.001, 0.01, 0.1,
        ]),
        token_expiries: Counter::default(),
        draining: Gauge::default(),
        hot: Hot::default(),
        jwks_refreshes: Family::default(),
        jwks_keys: Gauge::default(),
        pool_backends: Gauge::default(),
        pool_backends_in_use: Gauge::default(),
        pool_checkout_seconds: Histogram::new([
            0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
        ]),
        pool_checkout_timeouts: Counter::default(),
        pool_transactions: Counter::default(),
        pool_backend_flushes: Counter::default(),
        registry: Registry::default(),
    };
    registry.register("sessions_open", "Client sessions open now", m.sessions_open.clone());
    registry.register(
        "sessions_started",
        "Client sessions started",
        m.sessions_started.clone(),
    );
    registry.register(
        "sessions_ended",
        "Client sessions ended, by reason",
        m.sessions_ended.clone(),
    );
    registry.register(
        "logins_refused",
        "Clients turned away before their session started, by reason",
        m.logins_refused.clone(),
    );
    registry.register(
        "statements_refused",
        "Statements the guard refused, by class",
        m.statements_refused.clone(),
    );
    registry.register(
        "upstream_connect_seconds",
        "Time to connect and log in upstream",
        m.upstream_connect_seconds.clone(),
    );
    registry.register(
        "upstream_login_failures",
        "Upstream logins that failed",
        m.upstream_login_failures.clone(),
    );
    registry.register("bytes", "Bytes relayed, by direction", m.bytes.clone());
    registry.register(
        "cancel_requests",
        "CancelRequests, by outcome",
        m.cancel_requests.clone(),
    );
    registry.register(
        "guard_decisions",
        "Statements decided by the guard, by path",
        m.guard_decisions.clone(),
    );
    registry.register(
        "guard_walk_seconds",
        "Time of the guard's full parse and walk",
        m.guard_walk_seconds.clone(),
    );
    registry.register(
        "token_expiries",
        "Sessions closed because their token expired",
        m.token_expiries.clone(),
    );
    registry.register("draining", "1 while the proxy drains", m.draining.clone());
    registry.register(
        "jwks_refresh",
        "Fetches of the JWKS URL, by outcome",
        m.jwks_refreshes.clone(),
    );
    registry.register(
        "jwks_keys",
        "Signing keys cached from the JWKS URL",
        m.jwks_keys.clone(),
    );
    registry.register(
        "pool_backends",
        "Transaction pool mode: upstream backends open",
        m.pool_backends.clone(),
    );
    registry.register(
        "pool_backends_in_use",
        "Transaction pool mode: upstream backends held by a client",
        m.pool_backends_in_use.clone(),
    );
    registry.register(
        "pool_checkout_seconds",
        "Transaction pool mode: time a client waited for a backend",
        m.pool_checkout_seconds.clone(),
    );
    registry.register(
        "pool_checkout_timeouts",
        "Transaction pool mode: clients that got no backend within the checkout timeout",
        m.pool_checkout_timeouts.clone(),
    );
    registry.register(
        "pool_transactions",
        "Transaction pool mode: backend checkouts (transactions) served",
        m.pool_transactions.clone(),
    );
    registry.register(
        "pool_backend_flushes",
        "Transaction pool mode: writes to a backend the relay then waited on (upstream round trips)",
        m.pool_backend_flushes.clone(),
    );
    let path = |p: GuardPath| m.guard_decisions.get_or_create(&Path { path: p.as_str() }).clone();
    let dir = |d: Direction| m.bytes.get_or_create(&Dir { direction: d.as_str() }).clone();
    let hot = Hot {
        fast_path: path(GuardPath::FastPath),
        cache: path(GuardPath::Cache),
        full_walk: path(GuardPath::FullWalk),
        client_to_upstream: dir(Direction::ClientToUpstream),
        upstream_to_client: dir(Direction::UpstreamToClient),
    };
    Metrics { registry, hot, ..m }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(build);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Counts a statement refused with `class`.
pub fn refused(class: &'static str) {
    get().statements_refused.get_or_create(&Class { class }).inc();
}

/// Counts a guard decision taken by `path`.
#[inline]
pub fn guard_path(path: GuardPath) {
    let hot = &get().hot;
    match path {
        GuardPath::FastPath => hot.fast_path.inc(),
        GuardPath::Cache => hot.cache.inc(),
        GuardPath::FullWalk => hot.full_walk.inc(),
    };
}

/// Counts `n` bytes relayed in `direction`.
#[inline]
pub fn relayed(direction: Direction, n: usize) {
    let hot = &get().hot;
    let counter = match direction {
        Direction::ClientToUpstream => &hot.client_to_upstream,
        Direction::UpstreamToClient => &hot.upstream_to_client,
    };
    counter.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
}

/// Counts a client turned away for `reason`.
pub fn login_refused(reason: LoginRefusal) {
    get()
        .logins_refused
        .get_or_create(&Reason {
            reason: reason.as_str(),
        })
        .inc();
}

/// Counts a cancel request with `outcome`.
pub fn cancel(outcome: CancelOutcome) {
    get()
        .cancel_requests
        .get_or_create(&Outcome {
            outcome: outcome.as_str(),
        })
        .inc();
}

/// Counts a session that ended for `reason`.
pub fn session_ended(reason: EndReason) {
    get()
        .sessions_ended
        .get_or_create(&Reason {
            reason: reason.as_str(),
        })
        .inc();
}

/// Counts a fetch of the JWKS URL with `outcome`.
pub fn jwks_refresh(outcome: JwksRefresh) {
    get()
        .jwks_refreshes
        .get_or_create(&Outcome {
            outcome: outcome.as_str(),
        })
        .inc();
}

/// The whole registry in Prometheus text format.
pub fn encode() -> String {
    let mut out = String::with_capacity(8 * 1024);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &get().registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric_with_bounded_labels() {
        refused("pinned_setting");
        guard_path(GuardPath::FastPath);
        relayed(Direction::UpstreamToClient, 10);
        login_refused(LoginRefusal::Token);
        cancel(CancelOutcome::Unknown);
        session_ended(EndReason::ClientVanished);
        jwks_refresh(JwksRefresh::Failed);
        let text = encode();
        for line in [
            "pgtp_statements_refused_total{class=\"pinned_setting\"}",
            "pgtp_guard_decisions_total{path=\"fast_path\"}",
            "pgtp_bytes_total{direction=\"upstream_to_client\"}",
            "pgtp_logins_refused_total{reason=\"token\"}",
            "pgtp_cancel_requests_total{outcome=\"unknown\"}",
            "pgtp_sessions_ended_total{reason=\"client_vanished\"}",
            "# TYPE pgtp_upstream_connect_seconds histogram",
            "# TYPE pgtp_sessions_open gauge",
            "pgtp_jwks_refresh_total{outcome=\"failed\"}",
            "# TYPE pgtp_jwks_keys gauge",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }
}
