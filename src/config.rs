//! Configuration: command-line flags (each also read from the environment),
//! an optional TOML file, and defaults, merged once and validated into a
//! [`Config`]. Flags and environment win over the file.
//!
//! The file and the environment are trusted (they come from the operator), but
//! still validated so that a mistake fails at start-up with a clear message
//! instead of at the first client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::context::{ContextKey, Verification, DEFAULT_KEY_ID};
use crate::guard::GuardConfig;

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

/// How the tenant is pinned in each pooled transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinForm {
    /// `SET LOCAL` statements (simple protocol) and `set_config(..., true)`
    /// (extended protocol).
    Local,
    /// As [`PinForm::Local`], but extended-protocol transactions that are not
    /// in an explicit block are pinned with `SET LOCAL` inside an explicit
    /// block too, which Citus forwards to its workers.
    Citus,
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
    /// How the tenant is pinned per transaction.
    pub pin_form: PinForm,
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

/// The TOML file layout. Every key is optional; see `config/pg-tenant-proxy.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// `listen = "127.0.0.1:6432"`.
    pub listen: Option<String>,
    /// `worker_threads = 2`.
    pub worker_threads: Option<usize>,
    /// `runtime = "per-thread"` or `"shared"`.
    pub runtime: Option<String>,
    /// `admin_listen = "127.0.0.1:9187"`.
    pub admin_listen: Option<String>,
    /// `log_format = "text"` or `"json"`.
    pub log_format: Option<String>,
    /// `[upstream]`.
    pub upstream: FileUpstream,
    /// `[jwt]`.
    pub jwt: FileJwt,
    /// `[tls]`.
    pub tls: FileTls,
    /// `[limits]`.
    pub limits: FileLimits,
    /// `[clients]`.
    pub clients: FileClients,
    /// `[guard]`.
    pub guard: Option<GuardConfig>,
    /// `[context]`.
    pub context: FileContext,
    /// `pool_mode = "session"` or `"transaction"`.
    pub pool_mode: Option<String>,
    /// `pool_size = 20`.
    pub pool_size: Option<usize>,
    /// `[pool]`.
    pub pool: FilePool,
}

/// `[pool]` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilePool {
    /// Seconds a client waits for a free backend.
    pub checkout_timeout_secs: Option<u64>,
    /// Seconds an unused backend stays open.
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a backend lives before it is replaced.
    pub max_lifetime_secs: Option<u64>,
    /// `"local"` or `"citus"`.
    pub pin_form: Option<String>,
}

/// `[context]` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileContext {
    /// File holding the context key, as `--context-key-file`.
    pub key_file: Option<PathBuf>,
    /// Key id, as `--context-key-id`.
    pub key_id: Option<String>,
    /// `"on"` or `"off"`, as `--context-verification`.
    pub verification: Option<String>,
}

/// `[upstream]` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileUpstream {
    /// URL, as `--upstream`.
    pub url: Option<String>,
    /// File holding the upstream password.
    pub password_file: Option<PathBuf>,
}

/// `[jwt]` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileJwt {
    /// HMAC secret file.
    pub secret_file: Option<PathBuf>,
    /// PEM public key file.
    pub public_key_file: Option<PathBuf>,
    /// JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (https).
    pub jwks_url: Option<String>,
    /// Seconds between background fetches of `jwks_url`.
    pub jwks_refresh_secs: Option<u64>,
    /// Extra CA certificates (PEM) for `jwks_url`.
    pub jwks_ca_file: Option<PathBuf>,
    /// Accepted issuers.
    pub issuers: Option<Vec<String>>,
    /// Accepted audiences.
    pub audiences: Option<Vec<String>>,
    /// Leeway in seconds.
    pub leeway_secs: Option<u64>,
    /// Algorithm allow-list.
    pub algorithms: Option<Vec<String>>,
    /// Organization claim path.
    pub organization_claim: Option<String>,
    /// User claim path.
    pub user_claim: Option<String>,
    /// Require the user claim.
    pub require_user: Option<bool>,
    /// Longest token lifetime accepted.
    pub max_ttl_secs: Option<u64>,
}

/// `[tls]` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileTls {
    /// PEM certificate chain.
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    pub key_file: Option<PathBuf>,
}

/// `[limits]` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileLimits {
    /// Max client connections.
    pub max_client_connections: Option<usize>,
    /// Max client message size in bytes.
    pub max_message_bytes: Option<usize>,
    /// Authentication timeout in seconds.
    pub auth_timeout_secs: Option<u64>,
    /// Upstream connect timeout in seconds.
    pub connect_timeout_secs: Option<u64>,
    /// Drain timeout in seconds.
    pub drain_timeout_secs: Option<u64>,
    /// Most concurrent sessions of one organization (0: no limit).
    pub max_sessions_per_organization: Option<usize>,
}

/// `[clients]` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileClients {
    /// Networks allowed to authenticate without TLS.
    pub allow_plaintext_from: Option<Vec<IpNet>>,
    /// Database names accepted from clients.
    pub databases: Option<Vec<String>>,
    /// Startup parameters forwarded upstream.
    pub passthrough_parameters: Option<Vec<String>>,
}

/// Flags of `serve` and `check-config`; each has an environment variable.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file; flags and environment override its values.
    #[arg(long, env = "PGTP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on for clients [default: 127.0.0.1:6432].
    #[arg(long, env = "PGTP_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Upstream server: postgresql://ROLE[:PASSWORD]@HOST[:PORT]/DB[?sslmode=..&sslrootcert=..].
    /// Prefer --upstream-password-file or PGTP_UPSTREAM_PASSWORD to a password in the URL.
    #[arg(long, env = "PGTP_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,
    /// File holding the upstream role's password.
    #[arg(long, env = "PGTP_UPSTREAM_PASSWORD_FILE", value_name = "FILE")]
    pub upstream_password_file: Option<PathBuf>,
    /// The upstream role's password (environment only; never a flag).
    #[arg(skip)]
    pub upstream_password_env: Option<String>,
    /// HMAC secret file: tokens must be HS256, HS384 or HS512.
    #[arg(long, env = "PGTP_JWT_SECRET_FILE", value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM public key: RSA (RS*/PS*), EC P-256/P-384 (ES256/ES384) or Ed25519 (EdDSA).
    #[arg(long, env = "PGTP_JWT_PUBLIC_KEY_FILE", value_name = "PEM")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// JWKS document; each token's `kid` picks its key, unknown kids are refused.
    #[arg(long, env = "PGTP_JWKS_FILE", value_name = "JWKS")]
    pub jwks_file: Option<PathBuf>,
    /// JWKS fetched from an identity provider (https only): at start, every
    /// --jwks-refresh-secs, and on an unknown kid (at most once per 30 s).
    #[arg(long, env = "PGTP_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,
    /// Seconds between background fetches of --jwks-url [default: 300].
    #[arg(long, env = "PGTP_JWKS_REFRESH_SECS", value_name = "SECONDS")]
    pub jwks_refresh_secs: Option<u64>,
    /// PEM CA certificates trusted for --jwks-url besides the public roots.
    #[arg(long, env = "PGTP_JWKS_CA_FILE", value_name = "PEM")]
    pub jwks_ca_file: Option<PathBuf>,
    /// Accepted `iss` (repeatable or comma-separated); required in tokens when set.
    #[arg(long, env = "PGTP_JWT_ISSUER", value_delimiter = ',', value_name = "ISS")]
    pub jwt_issuer: Vec<String>,
    /// Accepted `aud` (repeatable or comma-separated); required in tokens when set.
    #[arg(long, env = "PGTP_JWT_AUDIENCE", value_delimiter = ',', value_name = "AUD")]
    pub jwt_audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds [default: 30].
    #[arg(long, env = "PGTP_JWT_LEEWAY", value_name = "SECONDS")]
    pub jwt_leeway: Option<u64>,
    /// Claim holding the organization UUID; dots reach into objects [default: organization_id].
    #[arg(long, env = "PGTP_ORG_CLAIM", value_name = "PATH")]
    pub org_claim: Option<String>,
    /// Claim holding the user UUID [default: sub].
    #[arg(long, env = "PGTP_USER_CLAIM", value_name = "PATH")]
    pub user_claim: Option<String>,
    /// PEM certificate chain for client TLS (with --tls-key).
    #[arg(long, env = "PGTP_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for client TLS.
    #[arg(long, env = "PGTP_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Networks allowed to send a token without TLS [default: 127.0.0.0/8,::1/128].
    #[arg(long, env = "PGTP_ALLOW_PLAINTEXT_FROM", value_delimiter = ',', value_name = "CIDR")]
    pub allow_plaintext_from: Vec<IpNet>,
    /// Most concurrent client connections [default: 10000].
    #[arg(long, env = "PGTP_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most concurrent sessions of one organization; 0 for no limit [default: 100].
    #[arg(long, env = "PGTP_MAX_SESSIONS_PER_ORG", value_name = "N")]
    pub max_sessions_per_org: Option<usize>,
    /// Admin listener for /metrics, /healthz and /readyz, e.g.
    /// 127.0.0.1:9187 [default: off].
    #[arg(long, env = "PGTP_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Log format: text (for people) or json (one object per line) [default: text].
    #[arg(long, env = "PGTP_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Threads that run sessions [default: number of cores].
    #[arg(long, env = "PGTP_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,
    /// Session scheduling: per-thread (each session stays on one thread) or
    /// shared (tokio's work-stealing runtime) [default: per-thread].
    #[arg(long, env = "PGTP_RUNTIME", value_name = "KIND")]
    pub runtime: Option<String>,
    /// File holding the key that signs the tenant context PostgreSQL verifies
    /// (at least 32 bytes; one trailing newline is not part of the key). The
    /// DBA installs the same key with tenant.add_context_key('<id>', '<key>').
    #[arg(long, env = "PGTP_CONTEXT_KEY_FILE", value_name = "FILE")]
    pub context_key_file: Option<PathBuf>,
    /// Id of that key in the database [default: 1].
    #[arg(long, env = "PGTP_CONTEXT_KEY_ID", value_name = "ID")]
    pub context_key_id: Option<String>,
    /// on (default: a context key is required) or off (no proof is sent; the
    /// database must run with tenant.set_context_verification(false)).
    #[arg(long, env = "PGTP_CONTEXT_VERIFICATION", value_name = "on|off")]
    pub context_verification: Option<String>,
    /// session (each client session holds one backend) or transaction (a
    /// backend per transaction, the tenant pinned in each) [default: session].
    #[arg(long, env = "PGTP_POOL_MODE", value_name = "MODE")]
    pub pool_mode: Option<String>,
    /// Most upstream backends in transaction mode [default: 20].
    #[arg(long, env = "PGTP_POOL_SIZE", value_name = "N")]
    pub pool_size: Option<usize>,
    /// Seconds a client waits for a free backend before 53300 [default: 30].
    #[arg(long, env = "PGTP_POOL_CHECKOUT_TIMEOUT", value_name = "SECONDS")]
    pub pool_checkout_timeout: Option<u64>,
    /// Seconds an unused pooled backend stays open [default: 600].
    #[arg(long, env = "PGTP_POOL_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub pool_idle_timeout: Option<u64>,
    /// How the tenant is pinned per transaction: local (SET LOCAL /
    /// set_config(..., true)) or citus (SET LOCAL inside a transaction block,
    /// which Citus forwards to workers) [default: local].
    #[arg(long, env = "PGTP_POOL_PIN_FORM", value_name = "FORM")]
    pub pool_pin_form: Option<String>,
}

impl ServeArgs {
    /// Merges flags, environment, file and defaults into a validated [`Config`].
    pub fn load(&self) -> Result<Config, String> {
        let file = match &self.config {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("cannot read config file {}: {e}", p.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| format!("config file {}: {e}", p.display()))?
            }
            None => FileConfig::default(),
        };
        self.merge(file)
    }

    fn merge(&self, file: FileConfig) -> Result<Config, String> {
        let listen_raw = self
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:6432".into());
        let listen: SocketAddr = listen_raw
            .parse()
            .map_err(|_| format!("listen address {listen_raw:?} is not HOST:PORT with an IP address"))?;

        let url = self.upstream.clone().or(file.upstream.url).ok_or(
            "no upstream: give --upstream postgresql://ROLE@HOST:PORT/DB (or PGTP_UPSTREAM, or [upstream] url)",
        )?;
        let mut upstream = UpstreamConfig::from_url(&url)?;
        let pw_file = self.upstream_password_file.clone().or(file.upstream.password_file);
        if let Some(p) = pw_file {
            upstream.password = Some(read_secret(&p, "upstream password file")?);
        } else if let Some(pw) = self.upstream_password_env.clone().filter(|p| !p.is_empty()) {
            upstream.password = Some(pw);
        }

        let fj = file.jwt;
        let sources = [
            self.jwt_secret_file
                .clone()
                .or(fj.secret_file)
                .map(KeySource::SecretFile),
            self.jwt_public_key_file
                .clone()
                .or(fj.public_key_file)
                .map(KeySource::PublicKeyFile),
            self.jwks_file.clone().or(fj.jwks_file).map(KeySource::JwksFile),
            jwks_url(
                self.jwks_url.clone().or(fj.jwks_url),
                self.jwks_refresh_secs.or(fj.jwks_refresh_secs),
                self.jwks_ca_file.clone().or(fj.jwks_ca_file),
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
            issuers: non_empty_or(self.jwt_issuer.clone(), fj.issuers),
            audiences: non_empty_or(self.jwt_audience.clone(), fj.audiences),
            leeway_secs: self.jwt_leeway.or(fj.leeway_secs).unwrap_or(30),
            algorithms: fj.algorithms.unwrap_or_default(),
            organization_claim: self
                .org_claim
                .clone()
                .or(fj.organization_claim)
                .unwrap_or_else(|| "organization_id".into()),
            user_claim: self
                .user_claim
                .clone()
                .or(fj.user_claim)
                .unwrap_or_else(|| "sub".into()),
            require_user: fj.require_user.unwrap_or(false),
            max_ttl_secs: fj.max_ttl_secs.unwrap_or(0),
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

        let tls = match (
            self.tls_cert.clone().or(file.tls.cert_file),
            self.tls_key.clone().or(file.tls.key_file),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err("client TLS needs both a certificate and a key (--tls-cert and --tls-key)".into()),
        };

        let allow_plaintext_from = if !self.allow_plaintext_from.is_empty() {
            self.allow_plaintext_from.clone()
        } else {
            file.clients.allow_plaintext_from.unwrap_or_else(|| {
                vec![
                    IpNet::V4(ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::new(127, 0, 0, 0), 8)),
                    IpNet::V6(ipnet::Ipv6Net::new_assert(std::net::Ipv6Addr::LOCALHOST, 128)),
                ]
            })
        };
        let databases = file
            .clients
            .databases
            .unwrap_or_else(|| vec![upstream.database.clone()]);
        if databases.is_empty() {
            return Err("[clients] databases must name at least one database".into());
        }
        let passthrough_parameters: Vec<String> = file
            .clients
            .passthrough_parameters
            .unwrap_or_else(|| DEFAULT_PASSTHROUGH_PARAMETERS.iter().map(|s| (*s).to_owned()).collect())
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

        let fl = file.limits;
        let limits = Limits {
            max_client_connections: self.max_connections.or(fl.max_client_connections).unwrap_or(10_000),
            max_message_bytes: fl.max_message_bytes.unwrap_or(64 << 20),
            auth_timeout: Duration::from_secs(fl.auth_timeout_secs.unwrap_or(10)),
            connect_timeout: Duration::from_secs(fl.connect_timeout_secs.unwrap_or(5)),
            drain_timeout: Duration::from_secs(fl.drain_timeout_secs.unwrap_or(30)),
            max_sessions_per_organization: self
                .max_sessions_per_org
                .or(fl.max_sessions_per_organization)
                .unwrap_or(DEFAULT_MAX_SESSIONS_PER_ORGANIZATION),
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
        let guard = file.guard.unwrap_or_default();
        crate::guard::Guard::new(&guard).map_err(|e| format!("[guard]: {e}"))?;
        let context = self.context(file.context)?;
        let pool = self.pool(file.pool_mode, file.pool_size, file.pool)?;
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
            worker_threads: self.worker_threads.or(file.worker_threads).unwrap_or(0),
            runtime: match self.runtime.clone().or(file.runtime) {
                Some(r) => RuntimeKind::parse(&r)?,
                None => RuntimeKind::PerThread,
            },
            admin_listen: self
                .admin_listen
                .clone()
                .or(file.admin_listen)
                .map(|a| {
                    a.parse::<SocketAddr>()
                        .map_err(|e| format!("admin_listen {a:?} is not an address like 127.0.0.1:9187: {e}"))
                })
                .transpose()?,
            log_format: match self.log_format.clone().or(file.log_format) {
                Some(f) => LogFormat::parse(&f)?,
                None => LogFormat::Text,
            },
            context,
            pool,
        })
    }

    /// Pool settings: flags and environment over the file over defaults.
    fn pool(&self, mode: Option<String>, size: Option<usize>, file: FilePool) -> Result<PoolConfig, String> {
        let mode = match self.pool_mode.clone().or(mode) {
            Some(m) => PoolMode::parse(&m)?,
            None => PoolMode::Session,
        };
        let size = self.pool_size.or(size).unwrap_or(DEFAULT_POOL_SIZE);
        if !(1..=10_000).contains(&size) {
            return Err(format!("pool_size must be between 1 and 10000, not {size}"));
        }
        let secs = |v: Option<u64>, default: u64, what: &str| match v.unwrap_or(default) {
            0 => Err(format!("{what} must be at least 1 second")),
            n if n > 86_400 * 7 => Err(format!("{what} must be at most a week")),
            n => Ok(Duration::from_secs(n)),
        };
        let pin_form = match self.pool_pin_form.clone().or(file.pin_form).as_deref() {
            None | Some("local") => PinForm::Local,
            Some("citus") => PinForm::Citus,
            Some(other) => return Err(format!("pool pin_form must be \"local\" or \"citus\", not {other:?}")),
        };
        Ok(PoolConfig {
            mode,
            size,
            checkout_timeout: secs(
                self.pool_checkout_timeout.or(file.checkout_timeout_secs),
                30,
                "pool checkout_timeout_secs",
            )?,
            idle_timeout: secs(
                self.pool_idle_timeout.or(file.idle_timeout_secs),
                600,
                "pool idle_timeout_secs",
            )?,
            max_lifetime: secs(file.max_lifetime_secs, 3600, "pool max_lifetime_secs")?,
            pin_form,
        })
    }

    /// Context verification: on (the default) needs a key file; off must be
    /// asked for and then takes no key.
    fn context(&self, file: FileContext) -> Result<Verification, String> {
        let mode = self
            .context_verification
            .clone()
            .or(file.verification)
            .unwrap_or_else(|| "on".into());
        let key_file = self.context_key_file.clone().or(file.key_file);
        let key_id = self.context_key_id.clone().or(file.key_id);
        match mode.as_str() {
            "on" => {
                let path = key_file.ok_or(
                    "no context key: give --context-key-file FILE (PGTP_CONTEXT_KEY_FILE, [context] key_file) \
                     with the key installed by tenant.add_context_key, or turn verification off explicitly \
                     with --context-verification off",
                )?;
                let secret = read_secret(&path, "context key file")?;
                let key = ContextKey::new(key_id.as_deref().unwrap_or(DEFAULT_KEY_ID), secret.as_bytes())
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

fn non_empty_or(flag: Vec<String>, file: Option<Vec<String>>) -> Vec<String> {
    if flag.is_empty() {
        file.unwrap_or_default()
    } else {
        flag
    }
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

    #[test]
    fn flags_win_over_file() {
        let args = ServeArgs {
            listen: Some("127.0.0.1:7000".into()),
            upstream: Some("postgresql://r@h/app".into()),
            jwt_secret_file: Some("/s".into()),
            context_verification: Some("off".into()),
            ..Default::default()
        };
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:6000\"\n[upstream]\nurl = \"postgresql://x@y/z\"\n[jwt]\nleeway_secs = 5\n",
        )
        .unwrap();
        let cfg = args.merge(file).unwrap();
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
    fn two_key_sources_are_refused() {
        let args = ServeArgs {
            upstream: Some("postgresql://r@h/app".into()),
            jwt_secret_file: Some("/s".into()),
            jwks_file: Some("/j".into()),
            context_verification: Some("off".into()),
            ..Default::default()
        };
        assert!(args.merge(FileConfig::default()).unwrap_err().contains("only one"));
    }

    fn context_args(dir: &Path, key: &str) -> ServeArgs {
        let path = dir.join("context.key");
        std::fs::write(&path, key).unwrap();
        ServeArgs {
            upstream: Some("postgresql://r@h/app".into()),
            jwt_secret_file: Some("/s".into()),
            context_key_file: Some(path),
            ..Default::default()
        }
    }

    #[test]
    fn context_key_is_required_unless_verification_is_off() {
        let args = ServeArgs {
            upstream: Some("postgresql://r@h/app".into()),
            jwt_secret_file: Some("/s".into()),
            ..Default::default()
        };
        let err = args.merge(FileConfig::default()).unwrap_err();
        assert!(err.starts_with("no context key: give --context-key-file FILE"), "{err}");
        let off = ServeArgs {
            context_verification: Some("off".into()),
            ..args.clone()
        };
        assert!(matches!(
            off.merge(FileConfig::default()).unwrap().context,
            Verification::Off
        ));
        let bad = ServeArgs {
            context_verification: Some("maybe".into()),
            ..args
        };
        assert_eq!(
            bad.merge(FileConfig::default()).unwrap_err(),
            "context verification \"maybe\" is not on or off"
        );
    }

    #[test]
    fn context_key_file_one_trailing_newline_stripped_and_default_id() {
        let dir = tempfile::tempdir().unwrap();
        let key = "k".repeat(32);
        let with_newline = context_args(dir.path(), &format!("{key}\n"));
        let Verification::On(k) = with_newline.merge(FileConfig::default()).unwrap().context else {
            panic!("verification off");
        };
        assert_eq!(k.id(), "1");
        let expected = ContextKey::new("1", key.as_bytes()).unwrap();
        assert_eq!(k.fingerprint(), expected.fingerprint());
        // Only one newline is stripped: the second is part of the key.
        let two = context_args(dir.path(), &format!("{key}\n\n"));
        let Verification::On(k2) = two.merge(FileConfig::default()).unwrap().context else {
            panic!("verification off");
        };
        assert_ne!(k2.fingerprint(), expected.fingerprint());
    }

    #[test]
    fn short_context_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let args = context_args(dir.path(), &format!("{}\n", "k".repeat(31)));
        let err = args.merge(FileConfig::default()).unwrap_err();
        assert!(
            err.starts_with("the context key must be at least 32 bytes (it has 31)"),
            "{err}"
        );
    }

    #[test]
    fn context_key_id_from_flag_or_file_and_off_with_a_key_refused() {
        let dir = tempfile::tempdir().unwrap();
        let args = context_args(dir.path(), &"k".repeat(40));
        let file: FileConfig = toml::from_str("[context]\nkey_id = \"2024-06\"\n").unwrap();
        let Verification::On(k) = args.merge(file).unwrap().context else {
            panic!("verification off");
        };
        assert_eq!(k.id(), "2024-06");
        let flag = ServeArgs {
            context_key_id: Some("7".into()),
            ..args.clone()
        };
        let file: FileConfig = toml::from_str("[context]\nkey_id = \"2024-06\"\n").unwrap();
        let Verification::On(k) = flag.merge(file).unwrap().context else {
            panic!("verification off");
        };
        assert_eq!(k.id(), "7");
        let bad_id = ServeArgs {
            context_key_id: Some("a,b".into()),
            ..args.clone()
        };
        assert!(bad_id
            .merge(FileConfig::default())
            .unwrap_err()
            .starts_with("context key id \"a,b\""));
        let file: FileConfig = toml::from_str("[context]\nverification = \"off\"\n").unwrap();
        assert!(args
            .merge(file)
            .unwrap_err()
            .starts_with("--context-verification off takes no context key"));
    }

    #[test]
    fn jwks_url_is_a_fourth_key_source_https_only() {
        // The context key is not what this test is about.
        let base = || ServeArgs {
            upstream: Some("postgresql://r@h/app".into()),
            context_verification: Some("off".into()),
            ..Default::default()
        };
        let file: FileConfig = toml::from_str(
            "[jwt]\njwks_url = \"https://idp.example/.well-known/jwks.json\"\njwks_refresh_secs = 60\njwks_ca_file = \"/ca.pem\"\n",
        )
        .unwrap();
        let cfg = base().merge(file).unwrap();
        assert_eq!(
            cfg.jwt.key,
            KeySource::JwksUrl(JwksUrl {
                url: "https://idp.example/.well-known/jwks.json".into(),
                ca_file: Some("/ca.pem".into()),
                refresh_secs: 60,
            })
        );
        let with = |url: &str| ServeArgs {
            jwks_url: Some(url.into()),
            ..base()
        };
        let KeySource::JwksUrl(u) = with("https://idp.example/jwks")
            .merge(FileConfig::default())
            .unwrap()
            .jwt
            .key
        else {
            panic!("not a URL source");
        };
        assert_eq!(u.refresh_secs, DEFAULT_JWKS_REFRESH_SECS);
        for (url, msg) in [
            ("http://idp.example/jwks", "must start with https://"),
            ("https://user:pw@idp.example/jwks", "no user or password"),
            ("not a url", "is not a valid URL"),
        ] {
            let err = with(url).merge(FileConfig::default()).unwrap_err();
            assert!(err.contains(msg), "{url}: {err}");
        }
        let err = ServeArgs {
            jwks_refresh_secs: Some(0),
            ..with("https://idp.example/jwks")
        }
        .merge(FileConfig::default())
        .unwrap_err();
        assert_eq!(err, "jwks_refresh_secs must be between 1 and 86400");
        let err = ServeArgs {
            jwt_secret_file: Some("/s".into()),
            jwks_ca_file: Some("/ca.pem".into()),
            ..base()
        }
        .merge(FileConfig::default())
        .unwrap_err();
        assert_eq!(err, "jwks_refresh_secs and jwks_ca_file need jwks_url");
        let err = ServeArgs {
            jwt_secret_file: Some("/s".into()),
            ..with("https://idp.example/jwks")
        }
        .merge(FileConfig::default())
        .unwrap_err();
        assert!(err.contains("only one"), "{err}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
    }
}
