//! Configuration: every setting is described once, in [`schema::SETTINGS`]
//! (its TOML key, flag, environment variable and default). A value comes
//! from a flag, else its environment variable, else the TOML file, else the
//! default; the result is validated once into a [`Config`]. `check-config`
//! prints each value with where it came from ([`Resolved::report`]).
//!
//! The file and the environment are trusted (they come from the operator), but
//! still validated so that a mistake fails at start-up with a clear message
//! instead of at the first client.

pub mod schema;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::context::{ContextKey, Verification};
use crate::guard::GuardConfig;
use schema::SETTINGS;
pub use schema::{Resolved, Source};

/// Client startup parameters forwarded upstream as given (after validation).
/// Everything else a client sends at startup is refused, except the few that
/// the proxy pins itself and accepts only with the pinned value.
pub const DEFAULT_PASSTHROUGH_PARAMETERS: &[&str] = &[
    "application_name",
    "datestyle",
    "timezone",
    "extra_float_digits",
    "intervalstyle",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "bytea_output",
];

/// Where the upstream server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// TCP host and port.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix-domain socket file (`DIR/.s.PGSQL.PORT`).
    Unix(PathBuf),
}

/// libpq's `sslmode` for the upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS if the server offers it, without certificate checks.
    Prefer,
    /// TLS required; the certificate is checked only if `sslrootcert` is given
    /// (then as `verify-ca`), like libpq.
    Require,
    /// TLS required; the chain must lead to `sslrootcert` (or the system roots).
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "unknown sslmode {other:?} (use disable, prefer, require, verify-ca or verify-full)"
                ))
            }
        })
    }
}

/// The upstream server and the fixed low-privilege role the proxy logs in as.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// Address.
    pub addr: UpstreamAddr,
    /// Role name for every upstream session.
    pub user: String,
    /// Its password, if the server asks for one.
    pub password: Option<String>,
    /// Database name upstream.
    pub database: String,
    /// TLS policy.
    pub sslmode: SslMode,
    /// CA bundle for verify-ca / verify-full.
    pub sslrootcert: Option<PathBuf>,
    /// Login methods the password may answer (`require_auth` in the URL).
    pub require_auth: crate::upstream_auth::RequireAuth,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("require_auth", &self.require_auth)
            .finish()
    }
}

impl UpstreamConfig {
    /// Parses a libpq-style URL: `postgresql://ROLE[:PASSWORD]@HOST[:PORT]/DB?sslmode=..&sslrootcert=..`.
    /// `host=/dir` in the query (or a percent-encoded path as host) selects a
    /// Unix socket directory.
    pub fn from_url(raw: &str) -> Result<UpstreamConfig, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("upstream URL is not a valid URL: {e}"))?;
        if url.scheme() != "postgresql" && url.scheme() != "postgres" {
            return Err("upstream URL must start with postgresql://".into());
        }
        let decode = |s: &str| -> Result<String, String> {
            percent_decode(s).ok_or_else(|| "upstream URL has bad percent-encoding".to_string())
        };
        let user = decode(url.username())?;
        if user.is_empty() {
            return Err("upstream URL must name the role: postgresql://ROLE@HOST/DB".into());
        }
        let password = url.password().map(decode).transpose()?;
        let database = decode(url.path().trim_start_matches('/'))?;
        if database.is_empty() || database.contains('/') {
            return Err("upstream URL must name one database: postgresql://ROLE@HOST/DB".into());
        }
        let mut host = url.host_str().map(decode).transpose()?.unwrap_or_default();
        let port = url.port().unwrap_or(5432);
        let mut sslmode = SslMode::Prefer;
        let mut sslrootcert = None;
        let mut require_auth = crate::upstream_auth::RequireAuth::default();
        for (k, v) in url.query_pairs() {
            match &*k {
                "sslmode" => sslmode = SslMode::parse(&v)?,
                "sslrootcert" => sslrootcert = Some(PathBuf::from(&*v)),
                "host" => host = v.into_owned(),
                "require_auth" => require_auth = crate::upstream_auth::RequireAuth::parse(&v)?,
                "application_name" | "connect_timeout" => {}
                other => return Err(format!("upstream URL parameter {other:?} is not supported")),
            }
        }
        let addr = if host.starts_with('/') {
            UpstreamAddr::Unix(Path::new(&host).join(format!(".s.PGSQL.{port}")))
        } else if host.is_empty() {
            return Err("upstream URL must name a host".into());
        } else {
            UpstreamAddr::Tcp {
                host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
                port,
            }
        };
        if matches!(addr, UpstreamAddr::Unix(_)) && sslmode != SslMode::Disable && sslmode != SslMode::Prefer {
            return Err("sslmode require/verify-* cannot be used with a Unix socket".into());
        }
        Ok(UpstreamConfig {
            addr,
            user,
            password,
            database,
            sslmode,
            sslrootcert,
            require_auth,
        })
    }
}

/// Decodes a URL component. `percent-encoding` passes a malformed `%`
/// sequence through unchanged; a URL with one is refused instead, since a
/// password or role name must never be silently altered.
fn percent_decode(s: &str) -> Option<String> {
    let malformed = s.match_indices('%').any(|(at, _)| {
        !s.get(at + 1..at + 3)
            .is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
    });
    if malformed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Where token verification keys come from (exactly one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Shared secret for HS256/HS384/HS512 (file contents, trailing newline trimmed).
    SecretFile(PathBuf),
    /// PEM public key: RSA (RS*/PS*), EC (ES256/ES384) or Ed25519 (EdDSA).
    PublicKeyFile(PathBuf),
    /// A JWKS document; tokens pick a key by `kid`.
    JwksFile(PathBuf),
    /// A JWKS fetched over HTTPS from an identity provider, kept fresh in the
    /// background (see [`crate::auth::jwks_url`]).
    JwksUrl(JwksUrl),
}

/// Default of [`JwksUrl::refresh_secs`].
pub const DEFAULT_JWKS_REFRESH_SECS: u64 = 300;

/// `--jwks-url` and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwksUrl {
    /// `https://...` address of the provider's JWKS.
    pub url: String,
    /// Extra PEM CA certificates trusted for the provider (besides webpki-roots).
    pub ca_file: Option<PathBuf>,
    /// Seconds between background refreshes.
    pub refresh_secs: u64,
}

/// Token verification settings.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Key material.
    pub key: KeySource,
    /// Accepted `iss` values (checked, and required, when non-empty).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (checked, and required, when non-empty).
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp`/`nbf`, in seconds.
    pub leeway_secs: u64,
    /// Narrow the algorithms further than the key family allows (empty: all of the family).
    pub algorithms: Vec<String>,
    /// Claim path holding the organization UUID (dotted for nested objects).
    pub organization_claim: String,
    /// Claim path holding the user UUID.
    pub user_claim: String,
    /// Refuse tokens without a user claim.
    pub require_user: bool,
    /// Longest lifetime (`exp` minus `iat`, or minus now) accepted, in seconds; 0 = no cap.
    pub max_ttl_secs: u64,
}

/// Certificate and key for client-facing TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Default of [`Limits::max_sessions_per_organization`].
pub const DEFAULT_MAX_SESSIONS_PER_ORGANIZATION: usize = 100;

/// Resource limits on client sessions.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most concurrent client connections; more get FATAL 53300.
    pub max_client_connections: usize,
    /// Largest client message accepted after authentication, in bytes.
    pub max_message_bytes: usize,
    /// Time a client has from connect to finishing authentication.
    pub auth_timeout: Duration,
    /// Time allowed to connect and log in upstream.
    pub connect_timeout: Duration,
    /// On SIGTERM/SIGINT, how long sessions may run before they are closed.
    pub drain_timeout: Duration,
    /// Most concurrent sessions of one organization (0: no limit); more get
    /// FATAL 53300.
    pub max_sessions_per_organization: usize,
}

/// The validated configuration of `serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address for clients.
    pub listen: SocketAddr,
    /// Upstream server and role.
    pub upstream: UpstreamConfig,
    /// Token verification.
    pub jwt: JwtConfig,
    /// Client-facing TLS; `None` answers SSLRequest with `N`.
    pub tls: Option<TlsFiles>,
    /// Peers allowed to send a token without TLS.
    pub allow_plaintext_from: Vec<IpNet>,
    /// Database names clients may ask for (the upstream database by default).
    pub databases: Vec<String>,
    /// Startup parameters forwarded upstream (lower-case names).
    pub passthrough_parameters: Vec<String>,
    /// Limits.
    pub limits: Limits,
    /// Statement policy.
    pub guard: GuardConfig,
    /// Threads that run sessions (0: one per core).
    pub worker_threads: usize,
    /// How sessions are scheduled over those threads.
    pub runtime: RuntimeKind,
    /// Admin listener (/metrics, /healthz, /readyz), if any.
    pub admin_listen: Option<SocketAddr>,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Whether the proxy signs the tenant context PostgreSQL verifies.
    pub context: Verification,
    /// Session or transaction pooling.
    pub pool: PoolConfig,
}

/// How client sessions map onto upstream backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// Each client session has its own backend for its whole life.
    Session,
    /// A client session holds a backend only for one transaction.
    Transaction,
}

impl PoolMode {
    /// Parses `session` or `transaction`.
    pub fn parse(s: &str) -> Result<PoolMode, String> {
        match s {
            "session" => Ok(PoolMode::Session),
            "transaction" => Ok(PoolMode::Transaction),
            other => Err(format!(
                "pool_mode must be \"session\" or \"transaction\", not {other:?}"
            )),
        }
    }
}

/// Default of [`PoolConfig::size`].
pub const DEFAULT_POOL_SIZE: usize = 20;

/// Transaction pooling settings (unused in session mode).
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Session (default) or transaction.
    pub mode: PoolMode,
    /// Most upstream backends the pool opens.
    pub size: usize,
    /// Longest a client waits for a free backend before 53300.
    pub checkout_timeout: Duration,
    /// A backend idle in the pool this long is closed.
    pub idle_timeout: Duration,
    /// A backend this old is closed when it comes back to the pool.
    pub max_lifetime: Duration,
    /// A client holding a backend idle inside a transaction (or not reading
    /// its replies) this long is disconnected, so it cannot starve others.
    pub idle_transaction_timeout: Duration,
    /// Most backends one organization holds at once (its other sessions
    /// wait), so one tenant cannot take the whole pool.
    pub max_backends_per_organization: usize,
    /// How the tenant is pinned in each transaction.
    pub pin_form: PinForm,
}

/// How the tenant is pinned in each pooled transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinForm {
    /// A prepared `set_config(..., true)` inside the client's transaction.
    SetConfig,
    /// `BEGIN` and one `SET LOCAL` query per setting, opened by the proxy
    /// around the client's statements (what Citus forwards to workers).
    SetLocal,
}

impl PinForm {
    /// Parses `set_config` or `set_local`.
    pub fn parse(s: &str) -> Result<PinForm, String> {
        match s {
            "set_config" => Ok(PinForm::SetConfig),
            "set_local" => Ok(PinForm::SetLocal),
            other => Err(format!(
                "pool pin_form must be \"set_config\" or \"set_local\", not {other:?}"
            )),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log_format must be \"text\" or \"json\", not {other:?}")),
        }
    }
}

/// How sessions are scheduled over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// One single-threaded runtime per worker thread; each session stays on
    /// the thread it was given (round-robin).
    PerThread,
    /// tokio's multi-thread, work-stealing runtime.
    Shared,
}

impl RuntimeKind {
    fn parse(s: &str) -> Result<RuntimeKind, String> {
        match s {
            "per-thread" => Ok(RuntimeKind::PerThread),
            "shared" => Ok(RuntimeKind::Shared),
            other => Err(format!("runtime {other:?} is not per-thread or shared")),
        }
    }
}

/// Flags of `serve` and `check-config`, one per setting of
/// [`schema::SETTINGS`], each also read from its environment variable; the
/// flags are built from the schema, not declared here.
#[derive(Clone, Default)]
pub struct ServeArgs {
    /// Values given by a flag or the environment, by setting key.
    given: BTreeMap<&'static str, (Vec<String>, Source)>,
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut given = BTreeMap::new();
        for s in SETTINGS {
            let Some(flag) = s.flag else {
                // Environment only.
                if let Some(v) = std::env::var(s.env).ok().filter(|v| !v.is_empty()) {
                    given.insert(s.key, (vec![v], Source::Env(s.env)));
                }
                continue;
            };
            let source = match m.value_source(s.key) {
                Some(clap::parser::ValueSource::CommandLine) => Source::Flag(flag),
                Some(clap::parser::ValueSource::EnvVariable) => Source::Env(s.env),
                _ => continue,
            };
            let values = m
                .get_many::<String>(s.key)
                .map(|v| v.cloned().collect())
                .unwrap_or_default();
            given.insert(s.key, (values, source));
        }
        Ok(ServeArgs { given })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for ServeArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        schema::augment(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        schema::augment(cmd)
    }
}

impl ServeArgs {
    /// Sets a setting as if given by its flag (for tests).
    #[cfg(test)]
    fn with(mut self, key: &'static str, values: &[&str]) -> ServeArgs {
        let flag = schema::setting(key).and_then(|s| s.flag).unwrap_or(key);
        self.given.insert(
            key,
            (values.iter().map(|v| (*v).to_owned()).collect(), Source::Flag(flag)),
        );
        self
    }

    /// The configuration file, if `--config` or `PGTP_CONFIG` names one.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.given.get("config").and_then(|(v, _)| v.last()).map(PathBuf::from)
    }

    /// Each setting's value and where it came from: flag, environment,
    /// file, default (the file is read here).
    pub fn resolve(&self) -> Result<Resolved, String> {
        let path = self.config_file();
        let file = match &path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("cannot read config file {}: {e}", p.display()))?;
                schema::parse_file(&text, p)?
            }
            None => BTreeMap::new(),
        };
        Resolved::new(&self.given, file, path.as_deref())
    }

    /// Flags, environment, file and defaults as a validated [`Config`].
    pub fn load(&self) -> Result<Config, String> {
        Ok(self.effective()?.0)
    }

    /// The validated [`Config`] and the values it was made from, with their
    /// sources (what `check-config` prints).
    pub fn effective(&self) -> Result<(Config, Resolved), String> {
        let mut r = self.resolve()?;
        let cfg = build(&mut r)?;
        Ok((cfg, r))
    }
}

/// Validates the resolved values into a [`Config`].
fn build(r: &mut Resolved) -> Result<Config, String> {
    let listen_raw = r.str("listen")?;
    let listen: SocketAddr = listen_raw
        .parse()
        .map_err(|_| format!("listen address {listen_raw:?} is not HOST:PORT with an IP address"))?;

    let url = r
        .opt_str("upstream.url")?
        .ok_or("no upstream: give --upstream postgresql://ROLE@HOST:PORT/DB (or PGTP_UPSTREAM, or [upstream] url)")?;
    let mut upstream = UpstreamConfig::from_url(&url)?;
    if let Some(p) = r.given_path("upstream.password_file")? {
        upstream.password = Some(read_secret(&p, "upstream password file")?);
    } else if let Some(pw) = r.given_str("upstream.password")?.filter(|p| !p.is_empty()) {
        upstream.password = Some(pw);
    }

    let sources = [
        r.given_path("jwt.secret_file")?.map(KeySource::SecretFile),
        r.given_path("jwt.public_key_file")?.map(KeySource::PublicKeyFile),
        r.given_path("jwt.jwks_file")?.map(KeySource::JwksFile),
        jwks_url(
            r.given_str("jwt.jwks_url")?,
            r.given_int("jwt.jwks_refresh_secs")?,
            r.given_path("jwt.jwks_ca_file")?,
        )?
        .map(KeySource::JwksUrl),
    ];
    let mut sources = sources.into_iter().flatten();
    let key = sources
        .next()
        .ok_or("no token key: give one of --jwt-secret-file, --jwt-public-key-file, --jwks-file or --jwks-url")?;
    if sources.next().is_some() {
        return Err("give only one of --jwt-secret-file, --jwt-public-key-file, --jwks-file and --jwks-url".into());
    }
    let jwt = JwtConfig {
        key,
        issuers: r.list("jwt.issuers")?,
        audiences: r.list("jwt.audiences")?,
        leeway_secs: r.int("jwt.leeway_secs")?,
        algorithms: r.list("jwt.algorithms")?,
        organization_claim: r.str("jwt.organization_claim")?,
        user_claim: r.str("jwt.user_claim")?,
        require_user: r.bool("jwt.require_user")?,
        max_ttl_secs: r.int("jwt.max_ttl_secs")?,
    };
    if jwt.leeway_secs > 300 {
        return Err("jwt leeway above 300 seconds is not allowed".into());
    }
    for path in [&jwt.organization_claim, &jwt.user_claim] {
        if path.is_empty() || path.split('.').any(str::is_empty) || path.len() > 200 {
            return Err(format!(
                "claim path {path:?} is not a dotted name like app_metadata.organization_id"
            ));
        }
    }

    let tls = match (r.given_path("tls.cert_file")?, r.given_path("tls.key_file")?) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => return Err("client TLS needs both a certificate and a key (--tls-cert and --tls-key)".into()),
    };

    let allow_plaintext_from = r
        .list("clients.allow_plaintext_from")?
        .iter()
        .map(|n| {
            n.parse::<IpNet>()
                .map_err(|e| format!("allow_plaintext_from {n:?} is not a network: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let databases = match r.given_list("clients.databases")? {
        Some(d) => d,
        None => {
            let d = vec![upstream.database.clone()];
            r.fill_default("clients.databases", schema::Value::List(d.clone()));
            d
        }
    };
    if databases.is_empty() {
        return Err("[clients] databases must name at least one database".into());
    }
    let passthrough_parameters: Vec<String> = r
        .list("clients.passthrough_parameters")?
        .into_iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    for p in &passthrough_parameters {
        if crate::pin::is_pinned_parameter(p) {
            return Err(format!(
                "startup parameter {p:?} is pinned by the proxy and cannot be passed through"
            ));
        }
    }

    let limits = Limits {
        max_client_connections: r.usize("limits.max_client_connections")?,
        max_message_bytes: r.usize("limits.max_message_bytes")?,
        auth_timeout: Duration::from_secs(r.int("limits.auth_timeout_secs")?),
        connect_timeout: Duration::from_secs(r.int("limits.connect_timeout_secs")?),
        drain_timeout: Duration::from_secs(r.int("limits.drain_timeout_secs")?),
        max_sessions_per_organization: r.usize("limits.max_sessions_per_organization")?,
    };
    if limits.max_client_connections == 0 {
        return Err("max_client_connections must be at least 1".into());
    }
    if !(1024..=(1 << 30)).contains(&limits.max_message_bytes) {
        return Err("max_message_bytes must be between 1024 and 1073741824".into());
    }
    if limits.auth_timeout.is_zero() || limits.connect_timeout.is_zero() {
        return Err("auth_timeout_secs and connect_timeout_secs must be at least 1".into());
    }
    let guard = GuardConfig {
        protected_settings: r.list("guard.protected_settings")?,
        allow_do_blocks: r.bool("guard.allow_do_blocks")?,
        allow_create_function: r.bool("guard.allow_create_function")?,
        allow_explain: r.bool("guard.allow_explain")?,
        setting_limits: r.given_map("guard.setting_limits")?,
        verdict_cache_entries: r.usize("guard.verdict_cache_entries")?,
        max_statement_bytes: r.usize("guard.max_statement_bytes")?,
    };
    crate::guard::Guard::new(&guard).map_err(|e| format!("[guard]: {e}"))?;
    let context = context(r)?;
    let pool = pool(r)?;
    let mut runtime = RuntimeKind::parse(&r.str("runtime")?)?;
    if pool.mode == PoolMode::Transaction {
        // A client's transactions run on whichever backend is free, so
        // backends and sessions live on one shared runtime.
        runtime = RuntimeKind::Shared;
        if let Some(p) = passthrough_parameters.iter().find(|p| !crate::tracked::is_tracked(p)) {
            return Err(format!(
                "startup parameter {p:?} cannot be passed through in transaction pool mode: only these \
                 settings are carried from transaction to transaction: {}",
                crate::tracked::TRACKED_SETTINGS.join(", ")
            ));
        }
    }
    Ok(Config {
        listen,
        upstream,
        jwt,
        tls,
        allow_plaintext_from,
        databases,
        passthrough_parameters,
        limits,
        guard,
        worker_threads: r.usize("worker_threads")?,
        runtime,
        admin_listen: r
            .given_str("admin_listen")?
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|e| format!("admin_listen {a:?} is not an address like 127.0.0.1:9187: {e}"))
            })
            .transpose()?,
        log_format: LogFormat::parse(&r.str("log_format")?)?,
        context,
        pool,
    })
}

/// Pool settings.
fn pool(r: &Resolved) -> Result<PoolConfig, String> {
    let mode = PoolMode::parse(&r.str("pool_mode")?)?;
    let size = r.usize("pool_size")?;
    if !(1..=10_000).contains(&size) {
        return Err(format!("pool_size must be between 1 and 10000, not {size}"));
    }
    let secs = |key: &str, what: &str| match r.int(key)? {
        0 => Err(format!("{what} must be at least 1 second")),
        n if n > 86_400 * 7 => Err(format!("{what} must be at most a week")),
        n => Ok(Duration::from_secs(n)),
    };
    Ok(PoolConfig {
        mode,
        size,
        checkout_timeout: secs("pool.checkout_timeout_secs", "pool checkout_timeout_secs")?,
        idle_timeout: secs("pool.idle_timeout_secs", "pool idle_timeout_secs")?,
        max_lifetime: secs("pool.max_lifetime_secs", "pool max_lifetime_secs")?,
        idle_transaction_timeout: secs(
            "pool.idle_transaction_timeout_secs",
            "pool idle_transaction_timeout_secs",
        )?,
        max_backends_per_organization: match r.usize("pool.max_backends_per_organization")? {
            0 => size.div_ceil(2),
            n if n <= size => n,
            n => {
                return Err(format!(
                    "pool max_backends_per_organization ({n}) cannot be larger than pool_size ({size})"
                ))
            }
        },
        pin_form: PinForm::parse(&r.str("pool.pin_form")?)?,
    })
}

/// Context verification: on (the default) needs a key file; off must be
/// asked for and then takes no key.
fn context(r: &Resolved) -> Result<Verification, String> {
    let key_file = r.given_path("context.key_file")?;
    let key_id = r.given_str("context.key_id")?;
    match r.str("context.verification")?.as_str() {
        "on" => {
            let path = key_file.ok_or(
                "no context key: give --context-key-file FILE (PGTP_CONTEXT_KEY_FILE, [context] key_file) \
                 with the key installed by tenant.add_context_key, or turn verification off explicitly \
                 with --context-verification off",
            )?;
            let secret = read_secret(&path, "context key file")?;
            let key = ContextKey::new(&r.str("context.key_id")?, secret.as_bytes())
                .map_err(|e| format!("{e} ({})", path.display()))?;
            Ok(Verification::On(std::sync::Arc::new(key)))
        }
        "off" => {
            if key_file.is_some() || key_id.is_some() {
                return Err(
                    "--context-verification off takes no context key: drop --context-key-file and \
                            --context-key-id, or turn verification on"
                        .into(),
                );
            }
            Ok(Verification::Off)
        }
        other => Err(format!("context verification {other:?} is not on or off")),
    }
}

/// Validates `--jwks-url` and its companions: https only, a host, a sane
/// refresh interval; the companions make no sense without the URL.
fn jwks_url(url: Option<String>, refresh: Option<u64>, ca_file: Option<PathBuf>) -> Result<Option<JwksUrl>, String> {
    let Some(url) = url else {
        if refresh.is_some() || ca_file.is_some() {
            return Err("jwks_refresh_secs and jwks_ca_file need jwks_url".into());
        }
        return Ok(None);
    };
    let parsed = url::Url::parse(&url).map_err(|e| format!("jwks_url {url:?} is not a valid URL: {e}"))?;
    if parsed.scheme() != "https" {
        return Err(format!("jwks_url {url:?} must start with https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("jwks_url {url:?} must name a host and no user or password"));
    }
    let refresh_secs = refresh.unwrap_or(DEFAULT_JWKS_REFRESH_SECS);
    if !(1..=86_400).contains(&refresh_secs) {
        return Err("jwks_refresh_secs must be between 1 and 86400".into());
    }
    Ok(Some(JwksUrl {
        url,
        ca_file,
        refresh_secs,
    }))
}

/// Reads a secret from a file, trimming one trailing newline. Refuses empty
/// files and files over 64 KiB.
pub fn read_secret(path: &Path, what: &str) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    if meta.len() > 65_536 {
        return Err(format!("{what} {} is larger than 64 KiB", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(format!("{what} {} is empty", path.display()));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_url_with_sslmode() {
        let u = UpstreamConfig::from_url(
            "postgresql://proxy_login:p%40ss@db.internal:6543/app?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(
            u.addr,
            UpstreamAddr::Tcp {
                host: "db.internal".into(),
                port: 6543
            }
        );
        assert_eq!(u.user, "proxy_login");
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.database, "app");
        assert_eq!(u.sslmode, SslMode::VerifyFull);
        assert_eq!(u.sslrootcert, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn parses_unix_socket_url() {
        let u = UpstreamConfig::from_url("postgresql://r@localhost:5433/app?host=/var/run/postgresql&sslmode=disable")
            .unwrap();
        assert_eq!(
            u.addr,
            UpstreamAddr::Unix(PathBuf::from("/var/run/postgresql/.s.PGSQL.5433"))
        );
        let u = UpstreamConfig::from_url("postgresql://r@%2Ftmp%2Fpg/app").unwrap();
        assert_eq!(u.addr, UpstreamAddr::Unix(PathBuf::from("/tmp/pg/.s.PGSQL.5432")));
    }

    #[test]
    fn percent_encoded_parts_are_decoded_and_malformed_ones_refused() {
        let u = UpstreamConfig::from_url("postgresql://proxy%5Flogin:p%40ss%2Fw%E2%82%AC@db/app%20x").unwrap();
        assert_eq!(u.user, "proxy_login");
        assert_eq!(u.password.as_deref(), Some("p@ss/w€"));
        assert_eq!(u.database, "app x");
        for bad in [
            "postgresql://r:p%zz@db/app",
            "postgresql://r:p%4@db/app",
            "postgresql://r:p%ff@db/app",
        ] {
            assert_eq!(
                UpstreamConfig::from_url(bad).unwrap_err(),
                "upstream URL has bad percent-encoding",
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "mysql://r@h/app",
            "postgresql://h/app",
            "postgresql://r@h/",
            "postgresql://r@h/app?sslmode=sometimes",
            "postgresql://r@h/app?options=-c%20role%3Dpostgres",
        ] {
            assert!(UpstreamConfig::from_url(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn password_never_appears_in_debug_output() {
        let u = UpstreamConfig::from_url("postgresql://r:hunter2@h/app").unwrap();
        assert!(!format!("{u:?}").contains("hunter2"));
    }

    /// `args` with `toml` as the file (named `test.toml`), validated.
    fn merge(args: &ServeArgs, toml: &str) -> Result<Config, String> {
        let path = Path::new("test.toml");
        let file = schema::parse_file(toml, path)?;
        build(&mut Resolved::new(&args.given, file, Some(path))?)
    }

    fn base() -> ServeArgs {
        ServeArgs::default()
            .with("upstream.url", &["postgresql://r@h/app"])
            .with("jwt.secret_file", &["/s"])
            .with("context.verification", &["off"])
    }

    #[test]
    fn flags_win_over_file() {
        let args = base().with("listen", &["127.0.0.1:7000"]);
        let cfg = merge(
            &args,
            "listen = \"127.0.0.1:6000\"\n[upstream]\nurl = \"postgresql://x@y/z\"\n[jwt]\nleeway_secs = 5\n",
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 7000);
        assert_eq!(cfg.upstream.database, "app");
        assert_eq!(cfg.jwt.leeway_secs, 5);
        assert_eq!(cfg.databases, vec!["app".to_string()]);
        assert!(cfg
            .allow_plaintext_from
            .iter()
            .any(|n| n.contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap())));
    }

    #[test]
    fn each_value_names_its_source() {
        let args = base()
            .with("listen", &["127.0.0.1:7000"])
            .with("upstream.url", &["postgresql://r:hunter2@h/app"]);
        let path = Path::new("test.toml");
        let file = schema::parse_file("[limits]\ndrain_timeout_secs = 5\nauth_timeout_secs = 3\n", path).unwrap();
        let mut r = Resolved::new(&args.given, file, Some(path)).unwrap();
        build(&mut r).unwrap();
        let report = r.report();
        for line in [
            "listen = 127.0.0.1:7000  (flag --listen)",
            "upstream.url = postgresql://r:***@h/app  (flag --upstream)",
            "limits.drain_timeout_secs = 5  (file test.toml: limits.drain_timeout_secs)",
            "pool_size = 20  (default)",
            "clients.databases = [app]  (default)",
            "admin_listen = (not set)  (default)",
        ] {
            assert!(report.iter().any(|l| l == line), "{line} not in {report:#?}");
        }
        assert!(!report.concat().contains("hunter2"));
        assert_eq!(report.len(), SETTINGS.len());
    }

    #[test]
    fn settings_only_in_the_file_before_have_flags_now() {
        let args = base()
            .with("jwt.algorithms", &["RS256", "ES256"])
            .with("jwt.require_user", &["true"])
            .with("jwt.max_ttl_secs", &["600"])
            .with("clients.databases", &["app", "app2"])
            .with("clients.passthrough_parameters", &["application_name", "TimeZone"])
            .with("limits.max_message_bytes", &["2048"])
            .with("limits.auth_timeout_secs", &["3"])
            .with("limits.connect_timeout_secs", &["4"])
            .with("limits.drain_timeout_secs", &["6"])
            .with("guard.protected_settings", &["app.x"])
            .with("guard.allow_do_blocks", &["true"])
            .with("guard.allow_create_function", &["true"])
            .with("guard.allow_explain", &["true"])
            .with("guard.setting_limits", &["work_mem=8MB"])
            .with("guard.verdict_cache_entries", &["0"])
            .with("guard.max_statement_bytes", &["4096"])
            .with("pool.max_lifetime_secs", &["60"]);
        let cfg = merge(&args, "").unwrap();
        assert_eq!(cfg.jwt.algorithms, ["RS256", "ES256"]);
        assert!(cfg.jwt.require_user);
        assert_eq!(cfg.jwt.max_ttl_secs, 600);
        assert_eq!(cfg.databases, ["app", "app2"]);
        assert_eq!(cfg.passthrough_parameters, ["application_name", "timezone"]);
        assert_eq!(cfg.limits.max_message_bytes, 2048);
        assert_eq!(cfg.limits.auth_timeout, Duration::from_secs(3));
        assert_eq!(cfg.limits.connect_timeout, Duration::from_secs(4));
        assert_eq!(cfg.limits.drain_timeout, Duration::from_secs(6));
        assert_eq!(cfg.guard.protected_settings, ["app.x"]);
        assert!(cfg.guard.allow_do_blocks && cfg.guard.allow_create_function && cfg.guard.allow_explain);
        assert_eq!(
            cfg.guard.setting_limits,
            Some(BTreeMap::from([("work_mem".to_owned(), "8MB".to_owned())]))
        );
        assert_eq!(cfg.guard.verdict_cache_entries, 0);
        assert_eq!(cfg.guard.max_statement_bytes, 4096);
        assert_eq!(cfg.pool.max_lifetime, Duration::from_secs(60));
    }

    #[test]
    fn defaults_match_the_file_defaults_of_before() {
        let cfg = merge(&base(), "").unwrap();
        let guard = GuardConfig::default();
        assert_eq!(cfg.guard.protected_settings, guard.protected_settings);
        assert_eq!(cfg.guard.setting_limits, None);
        assert_eq!(cfg.guard.verdict_cache_entries, guard.verdict_cache_entries);
        assert_eq!(cfg.guard.max_statement_bytes, guard.max_statement_bytes);
        assert!(!cfg.guard.allow_do_blocks && !cfg.guard.allow_create_function && !cfg.guard.allow_explain);
        assert_eq!(cfg.passthrough_parameters, DEFAULT_PASSTHROUGH_PARAMETERS);
        assert_eq!(cfg.listen, "127.0.0.1:6432".parse().unwrap());
        assert_eq!(cfg.limits.max_client_connections, 10_000);
        assert_eq!(cfg.limits.max_message_bytes, 64 << 20);
        assert_eq!(cfg.limits.auth_timeout, Duration::from_secs(10));
        assert_eq!(cfg.limits.connect_timeout, Duration::from_secs(5));
        assert_eq!(cfg.limits.drain_timeout, Duration::from_secs(30));
        assert_eq!(cfg.limits.max_sessions_per_organization, 100);
        assert_eq!(cfg.jwt.leeway_secs, 30);
        assert_eq!(
            (cfg.jwt.organization_claim.as_str(), cfg.jwt.user_claim.as_str()),
            ("organization_id", "sub")
        );
        assert!(!cfg.jwt.require_user && cfg.jwt.algorithms.is_empty() && cfg.jwt.max_ttl_secs == 0);
        assert_eq!((cfg.worker_threads, cfg.runtime), (0, RuntimeKind::PerThread));
        assert_eq!((cfg.admin_listen, cfg.log_format), (None, LogFormat::Text));
        assert_eq!((cfg.pool.mode, cfg.pool.size), (PoolMode::Session, DEFAULT_POOL_SIZE));
        assert_eq!(cfg.pool.checkout_timeout, Duration::from_secs(30));
        assert_eq!(cfg.pool.idle_timeout, Duration::from_secs(600));
        assert_eq!(cfg.pool.max_lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn file_values_of_the_wrong_type_name_the_key() {
        for (toml, msg) in [
            (
                "[limits]\ndrain_timeout_secs = \"soon\"\n",
                "limits.drain_timeout_secs: expected a whole number",
            ),
            (
                "pool_size = -1\n",
                "pool_size: expected a whole number of at least 0, found -1",
            ),
            (
                "[clients]\nallow_plaintext_from = [\"10.0.0.1\"]\n",
                "clients.allow_plaintext_from:",
            ),
            (
                "[guard.setting_limits]\nwork_mem = 5\n",
                "guard.setting_limits: work_mem: expected a string",
            ),
            ("limits = 5\n", "limits must be a table"),
            ("[limits]\nmax_conections = 5\n", "unknown key `limits.max_conections`"),
        ] {
            let err = merge(&base(), toml).unwrap_err();
            assert!(err.starts_with("config file test.toml: "), "{err}");
            assert!(err.contains(msg), "{toml}: {err}");
        }
    }

    #[test]
    fn two_key_sources_are_refused() {
        let args = base().with("jwt.jwks_file", &["/j"]);
        assert!(merge(&args, "").unwrap_err().contains("only one"));
    }

    fn context_args(dir: &Path, key: &str) -> ServeArgs {
        let path = dir.join("context.key");
        std::fs::write(&path, key).unwrap();
        ServeArgs::default()
            .with("upstream.url", &["postgresql://r@h/app"])
            .with("jwt.secret_file", &["/s"])
            .with("context.key_file", &[path.to_str().unwrap()])
    }

    #[test]
    fn context_key_is_required_unless_verification_is_off() {
        let args = ServeArgs::default()
            .with("upstream.url", &["postgresql://r@h/app"])
            .with("jwt.secret_file", &["/s"]);
        let err = merge(&args, "").unwrap_err();
        assert!(err.starts_with("no context key: give --context-key-file FILE"), "{err}");
        let off = args.clone().with("context.verification", &["off"]);
        assert!(matches!(merge(&off, "").unwrap().context, Verification::Off));
        let bad = args.with("context.verification", &["maybe"]);
        assert_eq!(
            merge(&bad, "").unwrap_err(),
            "context verification \"maybe\" is not on or off"
        );
    }

    #[test]
    fn context_key_file_one_trailing_newline_stripped_and_default_id() {
        let dir = tempfile::tempdir().unwrap();
        let key = "k".repeat(32);
        let with_newline = context_args(dir.path(), &format!("{key}\n"));
        let Verification::On(k) = merge(&with_newline, "").unwrap().context else {
            panic!("verification off");
        };
        assert_eq!(k.id(), "1");
        let expected = ContextKey::new("1", key.as_bytes()).unwrap();
        assert_eq!(k.fingerprint(), expected.fingerprint());
        // Only one newline is stripped: the second is part of the key.
        let two = context_args(dir.path(), &format!("{key}\n\n"));
        let Verification::On(k2) = merge(&two, "").unwrap().context else {
            panic!("verification off");
        };
        assert_ne!(k2.fingerprint(), expected.fingerprint());
    }

    #[test]
    fn short_context_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let args = context_args(dir.path(), &format!("{}\n", "k".repeat(31)));
        let err = merge(&args, "").unwrap_err();
        assert!(
            err.starts_with("the context key must be at least 32 bytes (it has 31)"),
            "{err}"
        );
    }

    #[test]
    fn context_key_id_from_flag_or_file_and_off_with_a_key_refused() {
        let dir = tempfile::tempdir().unwrap();
        let args = context_args(dir.path(), &"k".repeat(40));
        let Verification::On(k) = merge(&args, "[context]\nkey_id = \"2024-06\"\n").unwrap().context else {
            panic!("verification off");
        };
        assert_eq!(k.id(), "2024-06");
        let flag = args.clone().with("context.key_id", &["7"]);
        let Verification::On(k) = merge(&flag, "[context]\nkey_id = \"2024-06\"\n").unwrap().context else {
            panic!("verification off");
        };
        assert_eq!(k.id(), "7");
        let bad_id = args.clone().with("context.key_id", &["a,b"]);
        assert!(merge(&bad_id, "").unwrap_err().starts_with("context key id \"a,b\""));
        assert!(merge(&args, "[context]\nverification = \"off\"\n")
            .unwrap_err()
            .starts_with("--context-verification off takes no context key"));
        // An id alone, even the default one, is refused with verification off.
        let off_with_id = base().with("context.key_id", &["1"]);
        assert!(merge(&off_with_id, "")
            .unwrap_err()
            .starts_with("--context-verification off takes no context key"));
    }

    #[test]
    fn jwks_url_is_a_fourth_key_source_https_only() {
        // The context key is not what this test is about.
        let base = || {
            ServeArgs::default()
                .with("upstream.url", &["postgresql://r@h/app"])
                .with("context.verification", &["off"])
        };
        let cfg = merge(
            &base(),
            "[jwt]\njwks_url = \"https://idp.example/.well-known/jwks.json\"\njwks_refresh_secs = 60\njwks_ca_file = \"/ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg.jwt.key,
            KeySource::JwksUrl(JwksUrl {
                url: "https://idp.example/.well-known/jwks.json".into(),
                ca_file: Some("/ca.pem".into()),
                refresh_secs: 60,
            })
        );
        let with = |url: &str| base().with("jwt.jwks_url", &[url]);
        let KeySource::JwksUrl(u) = merge(&with("https://idp.example/jwks"), "").unwrap().jwt.key else {
            panic!("not a URL source");
        };
        assert_eq!(u.refresh_secs, DEFAULT_JWKS_REFRESH_SECS);
        for (url, msg) in [
            ("http://idp.example/jwks", "must start with https://"),
            ("https://user:pw@idp.example/jwks", "no user or password"),
            ("not a url", "is not a valid URL"),
        ] {
            let err = merge(&with(url), "").unwrap_err();
            assert!(err.contains(msg), "{url}: {err}");
        }
        let err = merge(
            &with("https://idp.example/jwks").with("jwt.jwks_refresh_secs", &["0"]),
            "",
        )
        .unwrap_err();
        assert_eq!(err, "jwks_refresh_secs must be between 1 and 86400");
        let err = merge(
            &base()
                .with("jwt.secret_file", &["/s"])
                .with("jwt.jwks_ca_file", &["/ca.pem"]),
            "",
        )
        .unwrap_err();
        assert_eq!(err, "jwks_refresh_secs and jwks_ca_file need jwks_url");
        let err = merge(&with("https://idp.example/jwks").with("jwt.secret_file", &["/s"]), "").unwrap_err();
        assert!(err.contains("only one"), "{err}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let err = schema::parse_file("lisen = \"x\"", Path::new("p.toml")).err().unwrap();
        assert_eq!(err, "config file p.toml: unknown key `lisen`");
    }
}
