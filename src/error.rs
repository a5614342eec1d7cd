//! Errors a client can be told about, and the SQLSTATE each one carries.
//!
//! Only values of [`ClientError`] ever reach a client as an ErrorResponse: their
//! text is written here or vetted by the module that builds them, never copied
//! from internal errors. Internal detail goes to the log instead.

use std::fmt;

/// The SQLSTATE codes this proxy itself raises. One variant per code, so every
/// error path picks from a closed set instead of typing strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    /// 08P01 protocol_violation: malformed or out-of-order frames.
    ProtocolViolation,
    /// 08001 sqlclient_unable_to_establish_sqlconnection: upstream unreachable or refused us.
    UnableToConnect,
    /// 08006 connection_failure: upstream went away mid-session.
    ConnectionFailure,
    /// 0A000 feature_not_supported.
    FeatureNotSupported,
    /// 28000 invalid_authorization_specification: not allowed to connect this way.
    InvalidAuthorization,
    /// 28P01 invalid_password: the token is missing, malformed, badly signed or expired.
    InvalidPassword,
    /// 3D000 invalid_catalog_name: unknown database name.
    InvalidCatalogName,
    /// 42501 insufficient_privilege: the guard refused a statement.
    InsufficientPrivilege,
    /// 42601 syntax_error: the statement does not parse.
    SyntaxError,
    /// 22021 character_not_in_repertoire: the statement is not valid UTF-8.
    CharacterNotInRepertoire,
    /// 53300 too_many_connections.
    TooManyConnections,
    /// 54000 program_limit_exceeded: a message is larger than the configured limit.
    ProgramLimitExceeded,
    /// 57P01 admin_shutdown: the proxy is shutting down.
    AdminShutdown,
    /// 57P05 idle_session_timeout-like: the client was too slow to authenticate.
    AuthenticationTimeout,
    /// XX000 internal_error: a bug; the message is generic.
    InternalError,
    /// 42P05 duplicate_prepared_statement.
    DuplicatePreparedStatement,
    /// 26000 invalid_sql_statement_name: no prepared statement of that name.
    UndefinedPreparedStatement,
    /// 22023 invalid_parameter_value: a startup parameter the server refused.
    InvalidParameterValue,
    /// 25P03 idle_in_transaction_session_timeout.
    IdleInTransactionTimeout,
}

impl SqlState {
    /// The five-character code as sent on the wire.
    pub const fn code(self) -> &'static str {
        match self {
            SqlState::ProtocolViolation => "08P01",
            SqlState::UnableToConnect => "08001",
            SqlState::ConnectionFailure => "08006",
            SqlState::FeatureNotSupported => "0A000",
            SqlState::InvalidAuthorization => "28000",
            SqlState::InvalidPassword => "28P01",
            SqlState::InvalidCatalogName => "3D000",
            SqlState::InsufficientPrivilege => "42501",
            SqlState::SyntaxError => "42601",
            SqlState::CharacterNotInRepertoire => "22021",
            SqlState::TooManyConnections => "53300",
            SqlState::ProgramLimitExceeded => "54000",
            SqlState::AdminShutdown => "57P01",
            SqlState::AuthenticationTimeout => "08P01",
            SqlState::InternalError => "XX000",
            SqlState::DuplicatePreparedStatement => "42P05",
            SqlState::UndefinedPreparedStatement => "26000",
            SqlState::InvalidParameterValue => "22023",
            SqlState::IdleInTransactionTimeout => "25P03",
        }
    }
}

/// Severity of an ErrorResponse. `Fatal` closes the session afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends after this message.
    Fatal,
}

impl Severity {
    /// The text sent in both the `S` and `V` fields.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// An error that may be shown to the client, as an ErrorResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// ERROR or FATAL.
    pub severity: Severity,
    /// The SQLSTATE.
    pub code: SqlState,
    /// Primary message: short, for a person, never containing secrets.
    pub message: String,
    /// Optional DETAIL line.
    pub detail: Option<String>,
    /// Optional HINT line.
    pub hint: Option<String>,
    /// For a refusal by the guard: a fixed name of its kind, for metrics
    /// (never sent to the client).
    pub class: Option<&'static str>,
}

impl ClientError {
    /// A FATAL error: the session is closed after it is sent.
    pub fn fatal(code: SqlState, message: impl Into<String>) -> Self {
        ClientError {
            severity: Severity::Fatal,
            code,
            message: message.into(),
            detail: None,
            hint: None,
            class: None,
        }
    }

    /// An ERROR: the statement fails and the session continues.
    pub fn error(code: SqlState, message: impl Into<String>) -> Self {
        ClientError {
            severity: Severity::Error,
            code,
            message: message.into(),
            detail: None,
            hint: None,
            class: None,
        }
    }

    /// Adds a DETAIL line.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Names the kind of refusal this is, for metrics.
    pub fn with_class(mut self, class: &'static str) -> Self {
        self.class = Some(class);
        self
    }

    /// Adds a HINT line.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity.as_str(), self.code.code(), self.message)
    }
}

impl std::error::Error for ClientError {}
