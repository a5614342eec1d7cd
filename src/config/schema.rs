//! The one description of every setting: its key in the TOML file, its
//! command-line flag, its environment variable, its default, and whether it
//! is secret. The `serve` and `check-config` flags (clap), the file parser
//! and `check-config`'s report are all built from [`SETTINGS`]; adding a
//! setting means adding a row there and reading it in `config.rs`.
//!
//! A value comes from, in this order: a flag, its environment variable, the
//! file, the default. [`Resolved`] keeps, for every setting, the value that
//! won and where it came from ([`Source`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgAction};

use super::{
    DEFAULT_JWKS_REFRESH_SECS, DEFAULT_MAX_SESSIONS_PER_ORGANIZATION, DEFAULT_PASSTHROUGH_PARAMETERS, DEFAULT_POOL_SIZE,
};
use crate::context::DEFAULT_KEY_ID;
use crate::guard::{DEFAULT_LIMITS, DEFAULT_MAX_STATEMENT_BYTES, DEFAULT_VERDICT_CACHE_ENTRIES, PINNED_SETTINGS};

/// What a setting holds, and so how each source spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string. File: a TOML string.
    Str,
    /// A whole number, 0 or more. File: a TOML integer.
    Int,
    /// `true` or `false`; the flag alone means `true`. File: a TOML boolean.
    Bool,
    /// Strings. Flag: repeatable or comma-separated (the environment
    /// variable comma-separated). File: an array of strings.
    List,
    /// As [`Kind::List`], each a network such as `10.0.0.0/8`.
    Networks,
    /// `NAME=VALUE` pairs. Flag: repeatable or comma-separated. File: a
    /// table of strings.
    Map,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Int => "a whole number",
            Kind::Bool => "true or false",
            Kind::List => "an array of strings",
            Kind::Networks => "an array of networks such as \"10.0.0.0/8\"",
            Kind::Map => "a table of strings",
        }
    }
}

/// A setting's value when no source gives one.
#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    /// No value; the text says what that means (shown in `--help` when not empty).
    Unset(&'static str),
    /// A string.
    Str(&'static str),
    /// A number.
    Int(u64),
    /// A boolean.
    Bool(bool),
    /// A list.
    List(&'static [&'static str]),
    /// `NAME=VALUE` pairs.
    Map(&'static [(&'static str, &'static str)]),
}

impl DefaultValue {
    fn value(self) -> Option<Value> {
        match self {
            DefaultValue::Unset(_) => None,
            DefaultValue::Str(s) => Some(Value::Str(s.to_owned())),
            DefaultValue::Int(n) => Some(Value::Int(n)),
            DefaultValue::Bool(b) => Some(Value::Bool(b)),
            DefaultValue::List(l) => Some(Value::List(l.iter().map(|s| (*s).to_owned()).collect())),
            DefaultValue::Map(m) => Some(Value::Map(
                m.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            )),
        }
    }

    /// The default as one would write it on the command line.
    pub fn as_flag_value(self) -> Option<String> {
        let shown = match self {
            DefaultValue::Unset(note) => note.to_owned(),
            DefaultValue::Str(s) => s.to_owned(),
            DefaultValue::Int(n) => n.to_string(),
            DefaultValue::Bool(b) => b.to_string(),
            DefaultValue::List(l) => l.join(","),
            DefaultValue::Map(m) => m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        };
        Some(shown).filter(|s| !s.is_empty())
    }
}

/// Whether and how a setting's value is kept out of `check-config`'s output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// Shown as it is.
    No,
    /// A URL whose password, if any, is shown as `***`.
    UrlPassword,
    /// The value itself is secret: shown as `***`.
    Value,
    /// The path of a file holding a secret: the path is shown, the file is
    /// never read for display.
    File,
}

/// One setting, in all its spellings.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Key path in the TOML file (`limits.drain_timeout_secs` is
    /// `drain_timeout_secs` under `[limits]`); also the name `check-config`
    /// prints.
    pub key: &'static str,
    /// Whether the file may set it.
    pub in_file: bool,
    /// Long flag without the dashes; `None`: no flag.
    pub flag: Option<&'static str>,
    /// Environment variable.
    pub env: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// Value when nothing sets it.
    pub default: DefaultValue,
    /// How `check-config` shows it.
    pub secret: Secret,
    /// Placeholder in `--help`.
    pub value_name: &'static str,
    /// `--help` text.
    pub help: &'static str,
}

impl Setting {
    const fn new(
        key: &'static str,
        flag: &'static str,
        env: &'static str,
        kind: Kind,
        default: DefaultValue,
        value_name: &'static str,
        help: &'static str,
    ) -> Setting {
        Setting {
            key,
            in_file: true,
            flag: Some(flag),
            env,
            kind,
            default,
            secret: Secret::No,
            value_name,
            help,
        }
    }

    const fn secret(mut self, secret: Secret) -> Setting {
        self.secret = secret;
        self
    }

    const fn not_in_file(mut self) -> Setting {
        self.in_file = false;
        self
    }

    const fn no_flag(mut self) -> Setting {
        self.flag = None;
        self
    }

    /// The clap argument of this setting (`None` for one without a flag).
    fn arg(&self) -> Option<Arg> {
        let flag = self.flag?;
        let help = match self.default.as_flag_value() {
            Some(d) => format!("{} [default: {d}]", self.help),
            None => self.help.to_owned(),
        };
        let arg = Arg::new(self.key)
            .long(flag)
            .env(self.env)
            .value_name(self.value_name)
            .help(help)
            .hide_env_values(matches!(self.secret, Secret::UrlPassword | Secret::Value));
        Some(match self.kind {
            Kind::Str => arg.action(ArgAction::Set),
            Kind::Int => arg.action(ArgAction::Set).value_parser(whole_number),
            Kind::Bool => arg
                .action(ArgAction::Set)
                .num_args(0..=1)
                .default_missing_value("true")
                .value_parser(PossibleValuesParser::new(["true", "false"])),
            Kind::List => arg.action(ArgAction::Append).value_delimiter(','),
            Kind::Networks => arg.action(ArgAction::Append).value_delimiter(',').value_parser(network),
            Kind::Map => arg
                .action(ArgAction::Append)
                .value_delimiter(',')
                .value_parser(name_value),
        })
    }
}

fn whole_number(s: &str) -> Result<String, String> {
    s.parse::<u64>().map(|_| s.to_owned()).map_err(|e| e.to_string())
}

fn network(s: &str) -> Result<String, String> {
    s.parse::<ipnet::IpNet>()
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

fn name_value(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((name, _)) if !name.trim().is_empty() => Ok(s.to_owned()),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

use DefaultValue as D;
use Kind::{Bool, Int, List, Map, Networks, Str};

/// Every setting of `serve` and `check-config`, in the order `check-config`
/// prints them. The environment variable is always `PGTP_` and the flag in
/// upper case with `_` for `-`.
pub static SETTINGS: &[Setting] = &[
    Setting::new(
        "config",
        "config",
        "PGTP_CONFIG",
        Str,
        D::Unset(""),
        "FILE",
        "TOML configuration file; flags and environment override its values",
    )
    .not_in_file(),
    Setting::new(
        "listen",
        "listen",
        "PGTP_LISTEN",
        Str,
        D::Str("127.0.0.1:6432"),
        "ADDR",
        "Address to listen on for clients",
    ),
    Setting::new(
        "worker_threads",
        "worker-threads",
        "PGTP_WORKER_THREADS",
        Int,
        D::Int(0),
        "N",
        "Threads that run sessions; 0 for one per core",
    ),
    Setting::new(
        "runtime",
        "runtime",
        "PGTP_RUNTIME",
        Str,
        D::Str("per-thread"),
        "KIND",
        "Session scheduling: per-thread (each session stays on one thread) or shared (tokio's work-stealing runtime)",
    ),
    Setting::new(
        "admin_listen",
        "admin-listen",
        "PGTP_ADMIN_LISTEN",
        Str,
        D::Unset("off"),
        "ADDR",
        "Admin listener for /metrics, /healthz and /readyz, e.g. 127.0.0.1:9187",
    ),
    Setting::new(
        "log_format",
        "log-format",
        "PGTP_LOG_FORMAT",
        Str,
        D::Str("text"),
        "FORMAT",
        "Log format: text (for people) or json (one object per line)",
    ),
    Setting::new(
        "pool_mode",
        "pool-mode",
        "PGTP_POOL_MODE",
        Str,
        D::Str("session"),
        "MODE",
        "session (each client session holds one backend) or transaction (a backend per transaction, the tenant \
         pinned in each)",
    ),
    Setting::new(
        "pool_size",
        "pool-size",
        "PGTP_POOL_SIZE",
        Int,
        D::Int(DEFAULT_POOL_SIZE as u64),
        "N",
        "Most upstream backends in transaction mode",
    ),
    // [upstream]
    Setting::new(
        "upstream.url",
        "upstream",
        "PGTP_UPSTREAM",
        Str,
        D::Unset(""),
        "URL",
        "Upstream server: postgresql://ROLE[:PASSWORD]@HOST[:PORT]/DB[?sslmode=..&sslrootcert=..]. Prefer \
         --upstream-password-file or PGTP_UPSTREAM_PASSWORD to a password in the URL",
    )
    .secret(Secret::UrlPassword),
    Setting::new(
        "upstream.password_file",
        "upstream-password-file",
        "PGTP_UPSTREAM_PASSWORD_FILE",
        Str,
        D::Unset(""),
        "FILE",
        "File holding the upstream role's password",
    )
    .secret(Secret::File),
    // Environment only: a flag would show the password to every local user
    // (ps), and the file has password_file for it.
    Setting::new(
        "upstream.password",
        "",
        "PGTP_UPSTREAM_PASSWORD",
        Str,
        D::Unset(""),
        "PASSWORD",
        "The upstream role's password (environment only)",
    )
    .secret(Secret::Value)
    .not_in_file()
    .no_flag(),
    // [jwt]
    Setting::new(
        "jwt.secret_file",
        "jwt-secret-file",
        "PGTP_JWT_SECRET_FILE",
        Str,
        D::Unset(""),
        "FILE",
        "HMAC secret file: tokens must be HS256, HS384 or HS512",
    )
    .secret(Secret::File),
    Setting::new(
        "jwt.public_key_file",
        "jwt-public-key-file",
        "PGTP_JWT_PUBLIC_KEY_FILE",
        Str,
        D::Unset(""),
        "PEM",
        "PEM public key: RSA (RS*/PS*), EC P-256/P-384 (ES256/ES384) or Ed25519 (EdDSA)",
    ),
    Setting::new(
        "jwt.jwks_file",
        "jwks-file",
        "PGTP_JWKS_FILE",
        Str,
        D::Unset(""),
        "JWKS",
        "JWKS document; each token's kid picks its key, unknown kids are refused",
    ),
    Setting::new(
        "jwt.jwks_url",
        "jwks-url",
        "PGTP_JWKS_URL",
        Str,
        D::Unset(""),
        "URL",
        "JWKS fetched from an identity provider (https only): at start, every --jwks-refresh-secs, and on an \
         unknown kid (at most once per 30 s)",
    ),
    Setting::new(
        "jwt.jwks_refresh_secs",
        "jwks-refresh-secs",
        "PGTP_JWKS_REFRESH_SECS",
        Int,
        D::Int(DEFAULT_JWKS_REFRESH_SECS),
        "SECONDS",
        "Seconds between background fetches of --jwks-url (1..86400)",
    ),
    Setting::new(
        "jwt.jwks_ca_file",
        "jwks-ca-file",
        "PGTP_JWKS_CA_FILE",
        Str,
        D::Unset(""),
        "PEM",
        "PEM CA certificates trusted for --jwks-url besides the public roots",
    ),
    Setting::new(
        "jwt.issuers",
        "jwt-issuer",
        "PGTP_JWT_ISSUER",
        List,
        D::List(&[]),
        "ISS",
        "Accepted iss (repeatable or comma-separated); required in tokens when set",
    ),
    Setting::new(
        "jwt.audiences",
        "jwt-audience",
        "PGTP_JWT_AUDIENCE",
        List,
        D::List(&[]),
        "AUD",
        "Accepted aud (repeatable or comma-separated); required in tokens when set",
    ),
    Setting::new(
        "jwt.leeway_secs",
        "jwt-leeway",
        "PGTP_JWT_LEEWAY",
        Int,
        D::Int(30),
        "SECONDS",
        "Clock skew allowed on exp and nbf, in seconds (at most 300)",
    ),
    Setting::new(
        "jwt.algorithms",
        "jwt-algorithm",
        "PGTP_JWT_ALGORITHM",
        List,
        D::List(&[]),
        "ALG",
        "Accepted algorithms, narrower than the key family allows (repeatable or comma-separated; none: the \
         whole family)",
    ),
    Setting::new(
        "jwt.organization_claim",
        "org-claim",
        "PGTP_ORG_CLAIM",
        Str,
        D::Str("organization_id"),
        "PATH",
        "Claim holding the organization UUID; dots reach into objects",
    ),
    Setting::new(
        "jwt.user_claim",
        "user-claim",
        "PGTP_USER_CLAIM",
        Str,
        D::Str("sub"),
        "PATH",
        "Claim holding the user UUID",
    ),
    Setting::new(
        "jwt.require_user",
        "jwt-require-user",
        "PGTP_JWT_REQUIRE_USER",
        Bool,
        D::Bool(false),
        "true|false",
        "Refuse tokens without the user claim",
    ),
    Setting::new(
        "jwt.max_ttl_secs",
        "jwt-max-ttl",
        "PGTP_JWT_MAX_TTL",
        Int,
        D::Int(0),
        "SECONDS",
        "Refuse tokens whose exp is further than this from their iat (or now); 0 for no cap",
    ),
    // [context]
    Setting::new(
        "context.key_file",
        "context-key-file",
        "PGTP_CONTEXT_KEY_FILE",
        Str,
        D::Unset(""),
        "FILE",
        "File holding the key that signs the tenant context PostgreSQL verifies (at least 32 bytes; one trailing \
         newline is not part of the key). The DBA installs the same key with tenant.add_context_key('<id>', '<key>')",
    )
    .secret(Secret::File),
    Setting::new(
        "context.key_id",
        "context-key-id",
        "PGTP_CONTEXT_KEY_ID",
        Str,
        D::Str(DEFAULT_KEY_ID),
        "ID",
        "Id of that key in the database",
    ),
    Setting::new(
        "context.verification",
        "context-verification",
        "PGTP_CONTEXT_VERIFICATION",
        Str,
        D::Str("on"),
        "on|off",
        "on (a context key is required) or off (no proof is sent; the database must run with \
         tenant.set_context_verification(false))",
    ),
    // [tls]
    Setting::new(
        "tls.cert_file",
        "tls-cert",
        "PGTP_TLS_CERT",
        Str,
        D::Unset(""),
        "PEM",
        "PEM certificate chain for client TLS (with --tls-key)",
    ),
    Setting::new(
        "tls.key_file",
        "tls-key",
        "PGTP_TLS_KEY",
        Str,
        D::Unset(""),
        "PEM",
        "PEM private key for client TLS",
    )
    .secret(Secret::File),
    // [clients]
    Setting::new(
        "clients.allow_plaintext_from",
        "allow-plaintext-from",
        "PGTP_ALLOW_PLAINTEXT_FROM",
        Networks,
        D::List(&["127.0.0.0/8", "::1/128"]),
        "CIDR",
        "Networks allowed to send a token without TLS (repeatable or comma-separated)",
    ),
    Setting::new(
        "clients.databases",
        "client-database",
        "PGTP_CLIENT_DATABASE",
        List,
        D::Unset("the upstream database"),
        "NAME",
        "Database names clients may ask for (repeatable or comma-separated)",
    ),
    Setting::new(
        "clients.passthrough_parameters",
        "passthrough-parameter",
        "PGTP_PASSTHROUGH_PARAMETER",
        List,
        D::List(DEFAULT_PASSTHROUGH_PARAMETERS),
        "NAME",
        "Startup parameters forwarded upstream (repeatable or comma-separated); anything else a client sends at \
         startup is refused",
    ),
    // [limits]
    Setting::new(
        "limits.max_client_connections",
        "max-connections",
        "PGTP_MAX_CONNECTIONS",
        Int,
        D::Int(10_000),
        "N",
        "Most concurrent client connections",
    ),
    Setting::new(
        "limits.max_message_bytes",
        "max-message-bytes",
        "PGTP_MAX_MESSAGE_BYTES",
        Int,
        D::Int(64 << 20),
        "BYTES",
        "Largest client message after authentication (1024..1073741824)",
    ),
    Setting::new(
        "limits.auth_timeout_secs",
        "auth-timeout",
        "PGTP_AUTH_TIMEOUT",
        Int,
        D::Int(10),
        "SECONDS",
        "Seconds from connect to authenticated; slower clients are dropped",
    ),
    Setting::new(
        "limits.connect_timeout_secs",
        "connect-timeout",
        "PGTP_CONNECT_TIMEOUT",
        Int,
        D::Int(5),
        "SECONDS",
        "Seconds allowed to connect and log in upstream",
    ),
    Setting::new(
        "limits.drain_timeout_secs",
        "drain-timeout",
        "PGTP_DRAIN_TIMEOUT",
        Int,
        D::Int(30),
        "SECONDS",
        "On SIGTERM/SIGINT, seconds sessions may run before they are closed",
    ),
    Setting::new(
        "limits.max_sessions_per_organization",
        "max-sessions-per-org",
        "PGTP_MAX_SESSIONS_PER_ORG",
        Int,
        D::Int(DEFAULT_MAX_SESSIONS_PER_ORGANIZATION as u64),
        "N",
        "Most concurrent sessions of one organization; 0 for no limit",
    ),
    // [guard]
    Setting::new(
        "guard.protected_settings",
        "guard-protected-setting",
        "PGTP_GUARD_PROTECTED_SETTING",
        List,
        D::List(&PINNED_SETTINGS),
        "NAME",
        "Settings no client may SET, RESET or set_config (repeatable or comma-separated); the pinned ones are \
         always included",
    ),
    Setting::new(
        "guard.allow_do_blocks",
        "guard-allow-do-blocks",
        "PGTP_GUARD_ALLOW_DO_BLOCKS",
        Bool,
        D::Bool(false),
        "true|false",
        "Let DO blocks through (their bodies cannot be inspected)",
    ),
    Setting::new(
        "guard.allow_create_function",
        "guard-allow-create-function",
        "PGTP_GUARD_ALLOW_CREATE_FUNCTION",
        Bool,
        D::Bool(false),
        "true|false",
        "Let CREATE FUNCTION / PROCEDURE through",
    ),
    Setting::new(
        "guard.allow_explain",
        "guard-allow-explain",
        "PGTP_GUARD_ALLOW_EXPLAIN",
        Bool,
        D::Bool(false),
        "true|false",
        "Let EXPLAIN through (its row estimates describe every tenant's rows)",
    ),
    Setting::new(
        "guard.setting_limits",
        "guard-setting-limit",
        "PGTP_GUARD_SETTING_LIMIT",
        Map,
        D::Map(DEFAULT_LIMITS),
        "NAME=VALUE",
        "Ceilings on resource settings a tenant may choose (repeatable or comma-separated); given, they replace \
         the default list",
    ),
    Setting::new(
        "guard.verdict_cache_entries",
        "guard-verdict-cache-entries",
        "PGTP_GUARD_VERDICT_CACHE_ENTRIES",
        Int,
        D::Int(DEFAULT_VERDICT_CACHE_ENTRIES as u64),
        "N",
        "Statement verdicts cached; 0 disables the cache",
    ),
    Setting::new(
        "guard.max_statement_bytes",
        "guard-max-statement-bytes",
        "PGTP_GUARD_MAX_STATEMENT_BYTES",
        Int,
        D::Int(DEFAULT_MAX_STATEMENT_BYTES as u64),
        "BYTES",
        "Longest statement the guard parses; longer ones are refused with 54000",
    ),
    // [pool]
    Setting::new(
        "pool.checkout_timeout_secs",
        "pool-checkout-timeout",
        "PGTP_POOL_CHECKOUT_TIMEOUT",
        Int,
        D::Int(30),
        "SECONDS",
        "Seconds a client waits for a free backend before 53300",
    ),
    Setting::new(
        "pool.idle_timeout_secs",
        "pool-idle-timeout",
        "PGTP_POOL_IDLE_TIMEOUT",
        Int,
        D::Int(600),
        "SECONDS",
        "Seconds an unused pooled backend stays open",
    ),
    Setting::new(
        "pool.max_lifetime_secs",
        "pool-max-lifetime",
        "PGTP_POOL_MAX_LIFETIME",
        Int,
        D::Int(3600),
        "SECONDS",
        "Seconds a pooled backend lives; an older one is closed when it is given back",
    ),
    Setting::new(
        "pool.max_backends_per_organization",
        "pool-max-backends-per-org",
        "PGTP_POOL_MAX_BACKENDS_PER_ORG",
        Int,
        D::Int(0),
        "N",
        "Most backends one organization's sessions hold at once in transaction mode (its other sessions wait); \
         0 means half of pool_size, rounded up",
    ),
    Setting::new(
        "pool.idle_transaction_timeout_secs",
        "pool-idle-transaction-timeout",
        "PGTP_POOL_IDLE_TRANSACTION_TIMEOUT",
        Int,
        D::Int(60),
        "SECONDS",
        "Seconds a client may hold a pooled backend inside a transaction without sending anything (or without \
         reading its replies) before its session is closed with 25P03",
    ),
    Setting::new(
        "pool.pin_form",
        "pool-pin-form",
        "PGTP_POOL_PIN_FORM",
        Str,
        D::Str("set_config"),
        "FORM",
        "How the tenant is pinned in each pooled transaction: set_config (a prepared set_config(..., true) in the \
         client's own transaction, no extra statement) or set_local (an explicit BEGIN and one SET LOCAL per \
         setting, each its own query string, as Citus needs to forward them to its workers)",
    ),
];

/// The setting with this key.
pub fn setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// Adds a flag (with its environment variable) for every setting that has one.
pub fn augment(cmd: clap::Command) -> clap::Command {
    SETTINGS.iter().filter_map(Setting::arg).fold(cmd, clap::Command::arg)
}

/// A setting's value, whichever source gave it.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// [`Kind::Str`].
    Str(String),
    /// [`Kind::Int`].
    Int(u64),
    /// [`Kind::Bool`].
    Bool(bool),
    /// [`Kind::List`] and [`Kind::Networks`].
    List(Vec<String>),
    /// [`Kind::Map`].
    Map(BTreeMap<String, String>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::List(l) => write!(f, "[{}]", l.join(", ")),
            Value::Map(m) => {
                let pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                write!(f, "{{{}}}", pairs.join(", "))
            }
        }
    }
}

impl Value {
    /// From a flag's or environment variable's values (clap has split lists
    /// at commas and checked each value against the kind).
    fn from_strings(s: &Setting, values: &[String]) -> Result<Value, String> {
        let one = || values.last().cloned().unwrap_or_default();
        Ok(match s.kind {
            Kind::Str => Value::Str(one()),
            Kind::Int => Value::Int(one().parse().map_err(|e| format!("{}: {e}", s.key))?),
            Kind::Bool => match one().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                other => return Err(format!("{}: {other:?} is not true or false", s.key)),
            },
            Kind::List => Value::List(values.to_vec()),
            Kind::Networks => {
                for v in values {
                    network(v).map_err(|e| format!("{}: {v:?}: {e}", s.key))?;
                }
                Value::List(values.to_vec())
            }
            Kind::Map => Value::Map(
                values
                    .iter()
                    .map(|v| {
                        name_value(v).map_err(|e| format!("{}: {e}", s.key))?;
                        let (k, v) = v.split_once('=').unwrap_or_default();
                        Ok((k.trim().to_owned(), v.trim().to_owned()))
                    })
                    .collect::<Result<_, String>>()?,
            ),
        })
    }

    /// From the TOML file.
    fn from_toml(s: &Setting, v: &toml::Value) -> Result<Value, String> {
        let strings = |a: &Vec<toml::Value>| -> Result<Vec<String>, String> {
            a.iter()
                .map(|i| match i {
                    toml::Value::String(x) => Ok(x.clone()),
                    other => Err(format!(
                        "expected {}, found a {} in it",
                        s.kind.expected(),
                        other.type_str()
                    )),
                })
                .collect()
        };
        match (s.kind, v) {
            (Kind::Str, toml::Value::String(x)) => Ok(Value::Str(x.clone())),
            (Kind::Int, toml::Value::Integer(n)) => u64::try_from(*n)
                .map(Value::Int)
                .map_err(|_| format!("expected a whole number of at least 0, found {n}")),
            (Kind::Bool, toml::Value::Boolean(b)) => Ok(Value::Bool(*b)),
            (Kind::List, toml::Value::Array(a)) => strings(a).map(Value::List),
            (Kind::Networks, toml::Value::Array(a)) => {
                let l = strings(a)?;
                for n in &l {
                    network(n).map_err(|e| format!("{n:?} is not a network such as \"10.0.0.0/8\": {e}"))?;
                }
                Ok(Value::List(l))
            }
            (Kind::Map, toml::Value::Table(t)) => t
                .iter()
                .map(|(k, v)| match v {
                    toml::Value::String(x) => Ok((k.clone(), x.clone())),
                    other => Err(format!("{k}: expected a string, found a {}", other.type_str())),
                })
                .collect::<Result<_, String>>()
                .map(Value::Map),
            (kind, other) => Err(format!("expected {}, found a {}", kind.expected(), other.type_str())),
        }
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Nothing set it.
    Default,
    /// The command line (the flag without its dashes).
    Flag(&'static str),
    /// The environment (the variable).
    Env(&'static str),
    /// The TOML file (its path and the key).
    File(PathBuf, &'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Flag(flag) => write!(f, "flag --{flag}"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::File(path, key) => write!(f, "file {}: {key}", path.display()),
        }
    }
}

/// Reads the TOML file into values by setting. Unknown keys, and values of
/// the wrong type, are refused with the key named.
pub fn parse_file(text: &str, path: &Path) -> Result<BTreeMap<&'static str, Value>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| format!("config file {}: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    walk(&table, "", &mut out).map_err(|e| format!("config file {}: {e}", path.display()))?;
    Ok(out)
}

fn walk(table: &toml::Table, prefix: &str, out: &mut BTreeMap<&'static str, Value>) -> Result<(), String> {
    for (name, v) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if let Some(s) = setting(&key).filter(|s| s.in_file) {
            out.insert(s.key, Value::from_toml(s, v).map_err(|e| format!("{key}: {e}"))?);
        } else if is_section(&key) {
            let toml::Value::Table(inner) = v else {
                return Err(format!("{key} must be a table ([{key}]), not a {}", v.type_str()));
            };
            walk(inner, &key, out)?;
        } else {
            return Err(format!("unknown key `{key}`"));
        }
    }
    Ok(())
}

/// Whether `key` is a table of the file (`upstream`, `limits`, ...).
fn is_section(key: &str) -> bool {
    SETTINGS
        .iter()
        .any(|s| s.in_file && s.key.strip_prefix(key).is_some_and(|rest| rest.starts_with('.')))
}

/// One setting's value and where it came from.
pub struct Entry {
    /// The setting.
    pub setting: &'static Setting,
    /// Its value; `None` when nothing set it and it has no default value.
    pub value: Option<Value>,
    /// Where the value came from.
    pub source: Source,
}

impl Entry {
    /// The value as `check-config` shows it: secrets masked.
    pub fn shown(&self) -> String {
        match (&self.value, self.setting.secret) {
            (None, _) => "(not set)".to_owned(),
            (Some(_), Secret::Value) => "***".to_owned(),
            (Some(Value::Str(url)), Secret::UrlPassword) => mask_url_password(url),
            (Some(v), _) => v.to_string(),
        }
    }
}

/// The URL with its password, if it has one, replaced by `***`. A string
/// that does not parse as a URL is not shown at all.
fn mask_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => match url.set_password(Some("***")) {
            Ok(()) => url.to_string(),
            Err(()) => "(not shown: it has a password)".to_owned(),
        },
        Ok(_) => raw.to_owned(),
        Err(_) => "(not shown: not a URL)".to_owned(),
    }
}

/// Every setting's value and its source, in [`SETTINGS`] order.
pub struct Resolved {
    entries: Vec<Entry>,
}

impl Resolved {
    /// Picks each setting's value: `given` (flags and environment, as clap
    /// saw them), then `file` (read from `file_path`), then the default.
    pub fn new(
        given: &BTreeMap<&'static str, (Vec<String>, Source)>,
        mut file: BTreeMap<&'static str, Value>,
        file_path: Option<&Path>,
    ) -> Result<Resolved, String> {
        let mut entries = Vec::with_capacity(SETTINGS.len());
        for s in SETTINGS {
            let (value, source) = if let Some((values, source)) = given.get(s.key) {
                (Some(Value::from_strings(s, values)?), source.clone())
            } else if let (Some(v), Some(path)) = (file.remove(s.key), file_path) {
                (Some(v), Source::File(path.to_owned(), s.key))
            } else {
                (s.default.value(), Source::Default)
            };
            entries.push(Entry {
                setting: s,
                value,
                source,
            });
        }
        Ok(Resolved { entries })
    }

    /// All settings, in [`SETTINGS`] order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// `check-config`'s lines: `KEY = VALUE  (SOURCE)`, secrets masked.
    pub fn report(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| format!("{} = {}  ({})", e.setting.key, e.shown(), e.source))
            .collect()
    }

    fn entry(&self, key: &str) -> Result<&Entry, String> {
        self.entries
            .iter()
            .find(|e| e.setting.key == key)
            .ok_or_else(|| format!("internal error: no setting {key}"))
    }

    /// Replaces a default with the value it stands for (e.g. the upstream
    /// database for `clients.databases`), so the report shows it.
    pub(super) fn fill_default(&mut self, key: &str, value: Value) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.setting.key == key && e.source == Source::Default)
        {
            e.value = Some(value);
        }
    }

    fn pick<T>(&self, key: &str, given_only: bool, f: impl Fn(&Value) -> Option<T>) -> Result<Option<T>, String> {
        let e = self.entry(key)?;
        if given_only && e.source == Source::Default {
            return Ok(None);
        }
        match &e.value {
            None => Ok(None),
            Some(v) => f(v)
                .map(Some)
                .ok_or_else(|| format!("internal error: setting {key} read as the wrong kind")),
        }
    }

    fn required<T>(&self, key: &str, v: Option<T>) -> Result<T, String> {
        v.ok_or_else(|| format!("internal error: setting {key} has no default"))
    }

    /// A string setting, its default included.
    pub fn str(&self, key: &str) -> Result<String, String> {
        let v = self.opt_str(key)?;
        self.required(key, v)
    }

    /// A string setting, its default included, if it has a value.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, String> {
        self.pick(key, false, |v| match v {
            Value::Str(s) => Some(s.clone()),
            _ => None,
        })
    }

    /// A string setting, only if a flag, the environment or the file set it.
    pub fn given_str(&self, key: &str) -> Result<Option<String>, String> {
        self.pick(key, true, |v| match v {
            Value::Str(s) => Some(s.clone()),
            _ => None,
        })
    }

    /// A path setting, only if set.
    pub fn given_path(&self, key: &str) -> Result<Option<PathBuf>, String> {
        Ok(self.given_str(key)?.map(PathBuf::from))
    }

    /// A number setting, its default included.
    pub fn int(&self, key: &str) -> Result<u64, String> {
        let v = self.pick(key, false, |v| match v {
            Value::Int(n) => Some(*n),
            _ => None,
        })?;
        self.required(key, v)
    }

    /// A number setting as a `usize`, its default included.
    pub fn usize(&self, key: &str) -> Result<usize, String> {
        let n = self.int(key)?;
        usize::try_from(n).map_err(|_| format!("{key} {n} is too large"))
    }

    /// A number setting, only if set.
    pub fn given_int(&self, key: &str) -> Result<Option<u64>, String> {
        self.pick(key, true, |v| match v {
            Value::Int(n) => Some(*n),
            _ => None,
        })
    }

    /// A boolean setting, its default included.
    pub fn bool(&self, key: &str) -> Result<bool, String> {
        let v = self.pick(key, false, |v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        })?;
        self.required(key, v)
    }

    /// A list setting, its default included.
    pub fn list(&self, key: &str) -> Result<Vec<String>, String> {
        let v = self.pick(key, false, |v| match v {
            Value::List(l) => Some(l.clone()),
            _ => None,
        })?;
        self.required(key, v)
    }

    /// A list setting, only if set.
    pub fn given_list(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        self.pick(key, true, |v| match v {
            Value::List(l) => Some(l.clone()),
            _ => None,
        })
    }

    /// A `NAME=VALUE` setting, only if set.
    pub fn given_map(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        self.pick(key, true, |v| match v {
            Value::Map(m) => Some(m.clone()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The schema, the flags clap builds from it, the file parser and the
    //! example file all agree.

    use super::*;
    use crate::config::ServeArgs;
    use clap::FromArgMatches;

    fn serve_command() -> clap::Command {
        <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"))
    }

    /// A value of the setting's kind that its validation-free parsers accept.
    fn sample(s: &Setting) -> (Vec<&'static str>, Value, toml::Value) {
        match s.kind {
            Kind::Str => (vec!["x"], Value::Str("x".into()), toml::Value::String("x".into())),
            Kind::Int => (vec!["7"], Value::Int(7), toml::Value::Integer(7)),
            Kind::Bool => (vec!["true"], Value::Bool(true), toml::Value::Boolean(true)),
            Kind::List => (
                vec!["a", "b"],
                Value::List(vec!["a".into(), "b".into()]),
                toml::Value::Array(vec!["a".into(), "b".into()]),
            ),
            Kind::Networks => (
                vec!["10.0.0.0/8"],
                Value::List(vec!["10.0.0.0/8".into()]),
                toml::Value::Array(vec!["10.0.0.0/8".into()]),
            ),
            Kind::Map => (
                vec!["work_mem=8MB"],
                Value::Map(BTreeMap::from([("work_mem".into(), "8MB".into())])),
                toml::Value::Table(toml::Table::from_iter([("work_mem".to_owned(), "8MB".into())])),
            ),
        }
    }

    /// The names operators had before the schema; they must keep working.
    const EXISTING: &[(&str, &str, &str)] = &[
        ("config", "config", "PGTP_CONFIG"),
        ("listen", "listen", "PGTP_LISTEN"),
        ("worker_threads", "worker-threads", "PGTP_WORKER_THREADS"),
        ("runtime", "runtime", "PGTP_RUNTIME"),
        ("admin_listen", "admin-listen", "PGTP_ADMIN_LISTEN"),
        ("log_format", "log-format", "PGTP_LOG_FORMAT"),
        ("pool_mode", "pool-mode", "PGTP_POOL_MODE"),
        ("pool_size", "pool-size", "PGTP_POOL_SIZE"),
        ("upstream.url", "upstream", "PGTP_UPSTREAM"),
        (
            "upstream.password_file",
            "upstream-password-file",
            "PGTP_UPSTREAM_PASSWORD_FILE",
        ),
        ("jwt.secret_file", "jwt-secret-file", "PGTP_JWT_SECRET_FILE"),
        ("jwt.public_key_file", "jwt-public-key-file", "PGTP_JWT_PUBLIC_KEY_FILE"),
        ("jwt.jwks_file", "jwks-file", "PGTP_JWKS_FILE"),
        ("jwt.jwks_url", "jwks-url", "PGTP_JWKS_URL"),
        ("jwt.jwks_refresh_secs", "jwks-refresh-secs", "PGTP_JWKS_REFRESH_SECS"),
        ("jwt.jwks_ca_file", "jwks-ca-file", "PGTP_JWKS_CA_FILE"),
        ("jwt.issuers", "jwt-issuer", "PGTP_JWT_ISSUER"),
        ("jwt.audiences", "jwt-audience", "PGTP_JWT_AUDIENCE"),
        ("jwt.leeway_secs", "jwt-leeway", "PGTP_JWT_LEEWAY"),
        ("jwt.organization_claim", "org-claim", "PGTP_ORG_CLAIM"),
        ("jwt.user_claim", "user-claim", "PGTP_USER_CLAIM"),
        ("context.key_file", "context-key-file", "PGTP_CONTEXT_KEY_FILE"),
        ("context.key_id", "context-key-id", "PGTP_CONTEXT_KEY_ID"),
        (
            "context.verification",
            "context-verification",
            "PGTP_CONTEXT_VERIFICATION",
        ),
        ("tls.cert_file", "tls-cert", "PGTP_TLS_CERT"),
        ("tls.key_file", "tls-key", "PGTP_TLS_KEY"),
        (
            "clients.allow_plaintext_from",
            "allow-plaintext-from",
            "PGTP_ALLOW_PLAINTEXT_FROM",
        ),
        (
            "limits.max_client_connections",
            "max-connections",
            "PGTP_MAX_CONNECTIONS",
        ),
        (
            "limits.max_sessions_per_organization",
            "max-sessions-per-org",
            "PGTP_MAX_SESSIONS_PER_ORG",
        ),
        (
            "pool.checkout_timeout_secs",
            "pool-checkout-timeout",
            "PGTP_POOL_CHECKOUT_TIMEOUT",
        ),
        ("pool.idle_timeout_secs", "pool-idle-timeout", "PGTP_POOL_IDLE_TIMEOUT"),
    ];

    /// Keys the file accepted before the schema (besides those above).
    const EXISTING_FILE_ONLY: &[&str] = &[
        "jwt.algorithms",
        "jwt.require_user",
        "jwt.max_ttl_secs",
        "clients.databases",
        "clients.passthrough_parameters",
        "limits.max_message_bytes",
        "limits.auth_timeout_secs",
        "limits.connect_timeout_secs",
        "limits.drain_timeout_secs",
        "guard.protected_settings",
        "guard.allow_do_blocks",
        "guard.allow_create_function",
        "guard.allow_explain",
        "guard.setting_limits",
        "guard.verdict_cache_entries",
        "guard.max_statement_bytes",
        "pool.max_lifetime_secs",
    ];

    #[test]
    fn existing_flags_variables_and_keys_are_kept() {
        for (key, flag, env) in EXISTING {
            let s = setting(key).unwrap_or_else(|| panic!("{key} is gone"));
            assert_eq!((s.flag, s.env), (Some(*flag), *env), "{key}");
            assert_eq!(s.in_file, *key != "config", "{key}");
        }
        for key in EXISTING_FILE_ONLY {
            assert!(setting(key).is_some_and(|s| s.in_file), "{key} is gone from the file");
        }
        let pw = setting("upstream.password").unwrap();
        assert_eq!((pw.flag, pw.env, pw.in_file), (None, "PGTP_UPSTREAM_PASSWORD", false));
    }

    #[test]
    fn names_are_unique_and_every_setting_has_its_three_forms() {
        let mut keys = std::collections::BTreeSet::new();
        let mut flags = std::collections::BTreeSet::new();
        let mut envs = std::collections::BTreeSet::new();
        for s in SETTINGS {
            assert!(keys.insert(s.key), "key {} twice", s.key);
            assert!(envs.insert(s.env), "variable {} twice", s.env);
            match s.flag {
                Some(flag) => {
                    assert!(flags.insert(flag), "flag --{flag} twice");
                    assert_eq!(
                        s.env,
                        format!("PGTP_{}", flag.to_uppercase().replace('-', "_")),
                        "{}",
                        s.key
                    );
                }
                // The password itself never goes on a command line.
                None => assert_eq!(s.key, "upstream.password"),
            }
            // Only the file's own name and the password are not in the file.
            assert!(
                s.in_file || ["config", "upstream.password"].contains(&s.key),
                "{}",
                s.key
            );
            assert!(!s.help.is_empty() && !s.value_name.is_empty(), "{}", s.key);
        }
    }

    #[test]
    fn clap_has_every_flag_with_its_variable_and_nothing_else() {
        let cmd = serve_command();
        for s in SETTINGS {
            let arg = cmd.get_arguments().find(|a| a.get_id() == s.key);
            match (s.flag, arg) {
                (Some(flag), Some(arg)) => {
                    assert_eq!(arg.get_long(), Some(flag), "{}", s.key);
                    assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(s.env)), "{}", s.key);
                }
                (None, None) => {}
                (flag, arg) => panic!("{}: schema flag {flag:?}, clap {:?}", s.key, arg.map(|a| a.get_long())),
            }
        }
        for arg in cmd.get_arguments() {
            assert!(setting(arg.get_id().as_str()).is_some(), "clap has {}", arg.get_id());
        }
    }

    #[test]
    fn every_flag_reaches_its_setting() {
        for s in SETTINGS {
            let Some(flag) = s.flag else { continue };
            let (values, value, _) = sample(s);
            let mut argv = vec!["serve".to_owned()];
            for v in &values {
                argv.push(format!("--{flag}"));
                argv.push((*v).to_owned());
            }
            let m = serve_command().try_get_matches_from(&argv).unwrap();
            let args = ServeArgs::from_arg_matches(&m).unwrap();
            let r = Resolved::new(&args.given, BTreeMap::new(), None).unwrap();
            let e = r.entries().iter().find(|e| e.setting.key == s.key).unwrap();
            assert!(e.value.as_ref() == Some(&value), "--{flag}");
            assert_eq!(e.source, Source::Flag(flag));
        }
        // A true/false flag alone means true.
        let m = serve_command()
            .try_get_matches_from(["serve", "--guard-allow-explain"])
            .unwrap();
        let args = ServeArgs::from_arg_matches(&m).unwrap();
        let r = Resolved::new(&args.given, BTreeMap::new(), None).unwrap();
        assert_eq!(r.bool("guard.allow_explain"), Ok(true));
    }

    #[test]
    fn the_file_parser_accepts_every_key_at_its_place() {
        let path = Path::new("all.toml");
        let mut doc = toml::Table::new();
        for s in SETTINGS.iter().filter(|s| s.in_file) {
            let (_, value, toml_value) = sample(s);
            let mut one = toml::Table::new();
            let mut parts: Vec<&str> = s.key.split('.').collect();
            let last = parts.pop().unwrap();
            let mut table = &mut one;
            let mut all = &mut doc;
            for p in parts {
                table = table
                    .entry(p)
                    .or_insert_with(|| toml::Table::new().into())
                    .as_table_mut()
                    .unwrap();
                all = all
                    .entry(p)
                    .or_insert_with(|| toml::Table::new().into())
                    .as_table_mut()
                    .unwrap();
            }
            table.insert(last.to_owned(), toml_value.clone());
            all.insert(last.to_owned(), toml_value);
            let text = toml::to_string(&one).unwrap();
            let parsed = parse_file(&text, path).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert!(parsed.len() == 1 && parsed.get(s.key) == Some(&value), "{text}");
        }
        let text = toml::to_string(&doc).unwrap();
        let parsed = parse_file(&text, path).unwrap();
        assert_eq!(parsed.len(), SETTINGS.iter().filter(|s| s.in_file).count());
        // Not in the file: the file's own name and the password.
        for key in ["config = \"x\"", "[upstream]\npassword = \"x\""] {
            assert!(parse_file(key, path).is_err(), "{key}");
        }
    }

    /// Whether `text` has `word` with no name character right before or after it.
    fn mentions(text: &str, word: &str) -> bool {
        let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        text.match_indices(word)
            .any(|(at, _)| !text[..at].ends_with(name_char) && !text[at + word.len()..].starts_with(name_char))
    }

    #[test]
    fn the_example_file_has_every_key_and_names_every_flag_and_variable() {
        let text = include_str!("../../config/pg-tenant-proxy.toml");
        // Commented-out assignments (`# admin_listen = "..."`) count too:
        // uncomment every line that is a TOML assignment on its own.
        let uncommented: String = text
            .lines()
            .map(|line| {
                let rest = line.strip_prefix("# ").unwrap_or(line);
                let is_assignment = rest != line
                    && rest.starts_with(|c: char| c.is_ascii_lowercase())
                    && toml::from_str::<toml::Table>(rest).is_ok();
                if is_assignment {
                    format!("{rest}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        let path = Path::new("config/pg-tenant-proxy.toml");
        parse_file(text, path).unwrap();
        let keys = parse_file(&uncommented, path).unwrap();
        for s in SETTINGS {
            if s.in_file {
                assert!(keys.contains_key(s.key), "{} is not in the example file", s.key);
            }
            if let Some(flag) = s.flag {
                assert!(
                    mentions(text, &format!("--{flag}")),
                    "the example file does not name --{flag}"
                );
            }
            assert!(mentions(text, s.env), "the example file does not name {}", s.env);
        }
    }

    #[test]
    fn secrets_are_masked() {
        let entry = |key: &str, v: &str| Entry {
            setting: setting(key).unwrap(),
            value: Some(Value::Str(v.into())),
            source: Source::Default,
        };
        assert_eq!(
            entry("upstream.url", "postgresql://r:s3cr%40t@h:5432/app?sslmode=disable").shown(),
            "postgresql://r:***@h:5432/app?sslmode=disable"
        );
        assert_eq!(
            entry("upstream.url", "postgresql://r@h/app").shown(),
            "postgresql://r@h/app"
        );
        assert_eq!(entry("upstream.password", "s3cret").shown(), "***");
        assert_eq!(entry("jwt.secret_file", "/run/s").shown(), "/run/s");
    }
    /// The settings table of README.md, as the schema says it must read.
    fn settings_table() -> String {
        let mut t = String::from("| Setting (file key) | Flag | Environment variable | Default |\n|---|---|---|---|\n");
        for s in SETTINGS {
            let key = if s.in_file {
                format!("`{}`", s.key)
            } else {
                format!("`{}` (not in the file)", s.key)
            };
            let flag = s.flag.map_or_else(|| "none".to_owned(), |f| format!("`--{f}`"));
            let default = match s.default {
                DefaultValue::Unset("") => "not set".to_owned(),
                DefaultValue::Unset(note) => note.to_owned(),
                DefaultValue::List([]) => "empty".to_owned(),
                DefaultValue::List(l) if l.len() > 3 => "the list in the example file".to_owned(),
                DefaultValue::Map(m) if m.len() > 3 => "the table in the example file".to_owned(),
                other => format!("`{}`", other.as_flag_value().unwrap_or_default()),
            };
            t.push_str(&format!("| {key} | {flag} | `{}` | {default} |\n", s.env));
        }
        t
    }

    #[test]
    fn the_readme_lists_every_setting() {
        let readme = include_str!("../../README.md");
        let start = "<!-- settings table: generated from src/config/schema.rs -->\n";
        let end = "<!-- end of settings table -->";
        let table = readme
            .split_once(start)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(table, _)| table);
        let expected = settings_table();
        assert!(
            table == Some(expected.as_str()),
            "README.md's settings table should read, between {start:?} and {end:?}:\n{expected}"
        );
    }
}
