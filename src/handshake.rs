//! One client's way in: SSLRequest/GSSENCRequest negotiation (each at most
//! once, in either order, never after TLS is up), TLS (also PostgreSQL 17 direct TLS with ALPN `postgresql`), the
//! startup message, protocol-version negotiation, startup parameter policy,
//! and the cleartext password message that carries the token.
//!
//! Everything read here is untrusted. Packets are capped before they are
//! read, and no byte the client sends before TLS is up is ever interpreted
//! after it (the startup reader consumes exactly one packet at a time).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{ClientError, SqlState};
use crate::pin;
use crate::protocol::backend;
use crate::protocol::frame::{self, peek_header};
use crate::protocol::startup::{read_packet, StartupError, StartupPacket};
use crate::stream::Stream;

/// Largest password message accepted (tokens can be large), in bytes.
pub const MAX_PASSWORD_MESSAGE: usize = 65_536;
/// Longest startup parameter value accepted, in bytes.
pub const MAX_PARAMETER_VALUE: usize = 1024;
/// TLS record type of a ClientHello: the first byte of a direct-TLS connection.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What the handshake needs from the configuration.
#[derive(Debug, Clone)]
pub struct HandshakePolicy {
    /// Client-facing TLS, if configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Peers that may send a token without TLS.
    pub allow_plaintext_from: Vec<IpNet>,
    /// Database names accepted.
    pub databases: Vec<String>,
    /// Startup parameters forwarded upstream (lower-case).
    pub passthrough: Vec<String>,
    /// Ceilings on resource settings, shared with the statement guard.
    pub setting_limits: crate::guard::SettingLimits,
}

/// A client that has sent its startup message and its token.
#[derive(Debug)]
pub struct Greeted {
    /// The stream (TLS or not).
    pub stream: Stream,
    /// The user name the client gave (informational only; the token decides).
    pub user: String,
    /// The database name the client gave.
    pub database: String,
    /// Parameters to forward upstream.
    pub params: Vec<(String, String)>,
    /// The token (the password). Never log it.
    pub token: String,
}

/// How the handshake ended.
#[derive(Debug)]
pub enum Outcome {
    /// Go on to authentication.
    Greeted(Box<Greeted>),
    /// The connection was a CancelRequest. The stream is kept so that it can
    /// be closed properly (TLS close_notify) once the cancel was handled.
    Cancel {
        /// The client's stream (TLS when the request came inside TLS).
        stream: Stream,
        /// Key pid.
        pid: i32,
        /// Key secret.
        secret: Vec<u8>,
    },
}

/// Why the handshake stopped. When the client could be told, it was.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client was sent this FATAL error.
    #[error("refused: {0}")]
    Refused(ClientError),
    /// The connection failed or the client sent something unusable.
    #[error("{0}")]
    Broken(String),
}

/// Startup parameters as (name, value) pairs.
pub type Params = Vec<(String, String)>;

/// Runs the handshake on a fresh TCP connection.
pub async fn run(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    policy: &HandshakePolicy,
) -> Result<Outcome, HandshakeError> {
    let mut ssl_done = false;
    let mut gss_done = false;
    let mut stream = Stream::Tcp(tcp);

    // PostgreSQL 17 direct TLS: the connection opens with a ClientHello.
    if let (Stream::Tcp(tcp), Some(tls)) = (&stream, &policy.tls) {
        let mut first = [0u8; 1];
        let n = tcp
            .peek(&mut first)
            .await
            .map_err(|e| HandshakeError::Broken(e.to_string()))?;
        if n == 1 && first[0] == TLS_HANDSHAKE_RECORD {
            stream = start_tls(stream, tls, true).await?;
            ssl_done = true;
        }
    }

    let (minor, raw_params) = loop {
        let packet = match read_packet(&mut stream).await {
            Ok(p) => p,
            // A port probe or a client that gave up: nothing to answer.
            Err(StartupError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(HandshakeError::Broken(
                    "connection closed before the startup packet".into(),
                ));
            }
            Err(e) => {
                let msg = format!("invalid startup packet: {e}");
                return Err(refuse(&mut stream, ClientError::fatal(SqlState::ProtocolViolation, msg)).await);
            }
        };
        match packet {
            // Like PostgreSQL's ProcessStartupPacket: SSL and GSS may each be
            // asked once, in either order, and neither once TLS is up (only
            // SSLRequest can bring TLS up here, since GSS is always refused).
            StartupPacket::SslRequest if !ssl_done && !stream.is_tls() => {
                ssl_done = true;
                match &policy.tls {
                    Some(tls) => {
                        write(&mut stream, b"S").await?;
                        stream = start_tls(stream, tls, false).await?;
                    }
                    None => write(&mut stream, b"N").await?,
                }
            }
            StartupPacket::GssEncRequest if !gss_done && !stream.is_tls() => {
                gss_done = true;
                write(&mut stream, b"N").await?;
            }
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                let e = ClientError::fatal(SqlState::ProtocolViolation, "encryption was already negotiated");
                return Err(refuse(&mut stream, e).await);
            }
            StartupPacket::Cancel { pid, secret } => return Ok(Outcome::Cancel { stream, pid, secret }),
            StartupPacket::Startup { minor, params, .. } => break (minor, params),
        }
    };

    let unsupported: Vec<String> = raw_params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if minor > 0 || !unsupported.is_empty() {
        let mut out = BytesMut::new();
        backend::negotiate_protocol_version(&mut out, unsupported);
        write(&mut stream, &out).await?;
    }

    let (user, database, params) = match check_params(raw_params, policy) {
        Ok(v) => v,
        Err(e) => return Err(refuse(&mut stream, e).await),
    };

    if !stream.is_tls() && !policy.allow_plaintext_from.iter().any(|n| n.contains(&peer.ip())) {
        let e = ClientError::fatal(
            SqlState::InvalidAuthorization,
            "this proxy accepts tokens only over TLS",
        )
        .with_hint("connect with sslmode=require (or verify-full)");
        return Err(refuse(&mut stream, e).await);
    }

    let mut out = BytesMut::new();
    backend::auth_cleartext(&mut out);
    write(&mut stream, &out).await?;
    let token = match read_password(&mut stream).await {
        Ok(t) => t,
        Err(e) => return Err(refuse(&mut stream, e).await),
    };
    Ok(Outcome::Greeted(Box::new(Greeted {
        stream,
        user,
        database,
        params,
        token,
    })))
}

async fn start_tls(stream: Stream, tls: &Arc<rustls::ServerConfig>, direct: bool) -> Result<Stream, HandshakeError> {
    let Stream::Tcp(tcp) = stream else {
        return Err(HandshakeError::Broken("TLS requested twice".into()));
    };
    let s = tokio_rustls::TlsAcceptor::from(tls.clone())
        .accept(tcp)
        .await
        .map_err(|e| HandshakeError::Broken(format!("TLS handshake failed: {e}")))?;
    if direct && s.get_ref().1.alpn_protocol() != Some(crate::tls::ALPN_POSTGRESQL) {
        return Err(HandshakeError::Broken("direct TLS without ALPN \"postgresql\"".into()));
    }
    Ok(Stream::ServerTls(Box::new(s)))
}

async fn write(stream: &mut Stream, bytes: &[u8]) -> Result<(), HandshakeError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| HandshakeError::Broken(e.to_string()))?;
    stream.flush().await.map_err(|e| HandshakeError::Broken(e.to_string()))
}

/// Sends a FATAL error and returns the matching [`HandshakeError`].
pub async fn refuse(stream: &mut Stream, err: ClientError) -> HandshakeError {
    let mut out = BytesMut::new();
    backend::error_response(&mut out, &err);
    let _ = write(stream, &out).await;
    let _ = stream.shutdown().await;
    HandshakeError::Refused(err)
}

fn not_allowed(name: &str, why: &str) -> ClientError {
    ClientError::fatal(
        SqlState::InvalidAuthorization,
        format!("startup parameter \"{name}\" is not allowed through pg-tenant-proxy"),
    )
    .with_detail(why.to_owned())
}

/// Accepts a pinned setting (`client_encoding`, `standard_conforming_strings`)
/// only when its value restates the pin, in any spelling PostgreSQL reads as
/// that value, or is SQL_ASCII (what psql sends in the C locale; the session
/// still runs as UTF8 and reports it). The proxy pins both upstream either
/// way, so neither is forwarded.
fn check_pinned_value(name: &str, value: &str) -> Result<(), ClientError> {
    if pin::restates_pin(name, value) {
        return Ok(());
    }
    if name.eq_ignore_ascii_case(pin::CLIENT_ENCODING) {
        if pin::is_sql_ascii_encoding_name(value) {
            return Ok(());
        }
        return Err(ClientError::fatal(
            SqlState::InvalidAuthorization,
            format!("client_encoding \"{value}\" is not supported through pg-tenant-proxy"),
        )
        .with_hint("use client_encoding UTF8 (for psql: PGCLIENTENCODING=UTF8)"));
    }
    Err(not_allowed(name, "standard_conforming_strings is pinned to on"))
}

/// Applies the startup parameter policy. Returns (user, database, forwarded).
fn check_params(raw: Vec<(String, String)>, policy: &HandshakePolicy) -> Result<(String, String, Params), ClientError> {
    let mut user = None;
    let mut database = None;
    let mut fwd: Vec<(String, String)> = Vec::new();
    let forward = |name: String, value: String, fwd: &mut Vec<(String, String)>| -> Result<(), ClientError> {
        let lname = name.to_ascii_lowercase();
        if value.len() > MAX_PARAMETER_VALUE {
            return Err(not_allowed(&name, "the value is too long"));
        }
        if !policy.passthrough.contains(&lname) {
            return Err(not_allowed(
                &name,
                "only these may be set at startup: application_name, DateStyle, TimeZone, search_path and the other names in [clients] passthrough_parameters",
            ));
        }
        if let Err(e) = policy.setting_limits.check(&lname, Some(&value)) {
            let (crate::guard::LimitError::Exceeds { max, .. } | crate::guard::LimitError::Unreadable { max, .. }) = e;
            return Err(not_allowed(
                &name,
                &format!("the proxy allows at most {max} (a number with a unit; a timeout cannot be 0)"),
            ));
        }
        fwd.retain(|(k, _)| k != &lname);
        fwd.push((lname, value));
        Ok(())
    };
    for (name, value) in raw {
        if name.starts_with("_pq_.") {
            continue;
        }
        match name.to_ascii_lowercase().as_str() {
            "user" => user = Some(value),
            "database" => database = Some(value),
            pin::CLIENT_ENCODING | pin::STANDARD_CONFORMING_STRINGS => check_pinned_value(&name, &value)?,
            "options" => {
                for (k, v) in
                    parse_options(&value).ok_or_else(|| not_allowed(&name, "it is not a list of -c name=value"))?
                {
                    match k.to_ascii_lowercase().as_str() {
                        pin::CLIENT_ENCODING | pin::STANDARD_CONFORMING_STRINGS => check_pinned_value(&k, &v)?,
                        _ => forward(k, v, &mut fwd)?,
                    }
                }
            }
            "replication" => return Err(not_allowed(&name, "replication connections are not supported")),
            lname if pin::is_pinned_parameter(lname) => {
                return Err(not_allowed(&name, "this setting is pinned by the proxy from the token"));
            }
            _ => forward(name, value, &mut fwd)?,
        }
    }
    let user = user.filter(|u| !u.is_empty()).ok_or_else(|| {
        ClientError::fatal(
            SqlState::InvalidAuthorization,
            "no user name specified in startup packet",
        )
    })?;
    let database = database.filter(|d| !d.is_empty()).unwrap_or_else(|| user.clone());
    if !policy.databases.contains(&database) {
        return Err(ClientError::fatal(
            SqlState::InvalidCatalogName,
            format!("database \"{database}\" does not exist"),
        )
        .with_detail("this proxy serves: ".to_owned() + &policy.databases.join(", ")));
    }
    Ok((user, database, fwd))
}

/// Parses libpq `options` (`-c name=value`, `--name=value`, backslash escapes)
/// into pairs, as PostgreSQL reads them. `None` if it holds anything else
/// (another switch, a stray word, a setting without `=`).
pub fn parse_options(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut it = split_options(s).into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "--" {
            // getopt's end of switches: PostgreSQL refuses any word after it.
            return it.next().is_none().then_some(out);
        } else if w == "-c" {
            it.next()?
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_owned()
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_owned()
        } else {
            return None;
        };
        let (k, v) = setting.split_once('=')?;
        if k.is_empty() {
            return None;
        }
        out.push((k.replace('-', "_"), v.to_owned()));
    }
    Some(out)
}

/// The words of an `options` string, split as PostgreSQL's `pg_split_opts`
/// splits them: at C `isspace` bytes (space, tab, LF, vertical tab, form
/// feed, CR) unless escaped; a backslash is dropped and the character after
/// it kept as is; a trailing backslash is dropped and still ends a word,
/// possibly an empty one.
fn split_options(s: &str) -> Vec<String> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r');
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| is_space(*c)).is_some() {}
        if chars.peek().is_none() {
            return words;
        }
        let mut word = String::new();
        let mut escaped = false;
        while let Some(c) = chars.next_if(|c| escaped || !is_space(*c)) {
            if !escaped && c == '\\' {
                escaped = true;
            } else {
                escaped = false;
                word.push(c);
            }
        }
        words.push(word);
    }
}

/// Reads the PasswordMessage ('p') that answers AuthenticationCleartextPassword.
async fn read_password(stream: &mut Stream) -> Result<String, ClientError> {
    let bad = |m: &str| ClientError::fatal(SqlState::ProtocolViolation, m.to_owned());
    let mut head = [0u8; frame::HEADER_LEN];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|_| bad("connection closed before the password was sent"))?;
    let h = match peek_header(&head, 0, MAX_PASSWORD_MESSAGE) {
        Ok(Some(h)) => h,
        Ok(None) => return Err(bad("short password message")),
        Err(_) => {
            return Err(ClientError::fatal(
                SqlState::InvalidPassword,
                "password authentication failed: the password message is too large",
            )
            .with_detail(format!("the limit is {MAX_PASSWORD_MESSAGE} bytes")))
        }
    };
    if h.tag != b'p' {
        return Err(bad("expected a password message"));
    }
    let mut body = vec![0u8; h.total - frame::HEADER_LEN];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|_| bad("connection closed during the password message"))?;
    match frame::cstr(&body) {
        Some((pw, [])) => String::from_utf8(pw.to_vec()).map_err(|_| {
            ClientError::fatal(
                SqlState::InvalidPassword,
                "password authentication failed: the password is not a JWT",
            )
        }),
        _ => Err(bad("malformed password message")),
    }
}

/// The startup parameter policy, for the fuzz targets in `fuzz/`. Not a
/// stable interface.
#[doc(hidden)]
pub mod probe {
    use super::{HandshakePolicy, Params};
    use crate::error::ClientError;

    /// The policy applied to the parameters of a startup message: (user,
    /// database, parameters forwarded upstream), or the FATAL refusal.
    pub fn check_params(raw: Params, policy: &HandshakePolicy) -> Result<(String, String, Params), ClientError> {
        super::check_params(raw, policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HandshakePolicy {
        HandshakePolicy {
            tls: None,
            allow_plaintext_from: vec![],
            databases: vec!["app".into()],
            passthrough: crate::config::DEFAULT_PASSTHROUGH_PARAMETERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            setting_limits: crate::guard::SettingLimits::new(None).unwrap(),
        }
    }

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn harmless_parameters_pass_and_pinned_ones_are_dropped() {
        let (user, db, fwd) = check_params(
            p(&[
                ("user", "app"),
                ("database", "app"),
                ("client_encoding", "UTF8"),
                ("application_name", "psql"),
                ("DateStyle", "ISO"),
            ]),
            &policy(),
        )
        .unwrap();
        assert_eq!((user.as_str(), db.as_str()), ("app", "app"));
        assert_eq!(fwd, p(&[("application_name", "psql"), ("datestyle", "ISO")]));
    }

    #[test]
    fn attacker_startup_parameters_are_refused() {
        let cases: &[(&str, &str, SqlState)] = &[
            (
                "app.current_organization_id",
                "00000000-0000-0000-0000-000000000001",
                SqlState::InvalidAuthorization,
            ),
            ("App.Current_Organization_Id", "x", SqlState::InvalidAuthorization),
            ("app.current_user_id", "x", SqlState::InvalidAuthorization),
            ("role", "postgres", SqlState::InvalidAuthorization),
            ("session_authorization", "postgres", SqlState::InvalidAuthorization),
            (
                "options",
                "-c app.current_organization_id=x",
                SqlState::InvalidAuthorization,
            ),
            ("options", "-c role=postgres", SqlState::InvalidAuthorization),
            (
                "options",
                "--standard-conforming-strings=off",
                SqlState::InvalidAuthorization,
            ),
            ("options", "-X", SqlState::InvalidAuthorization),
            ("standard_conforming_strings", "off", SqlState::InvalidAuthorization),
            ("client_encoding", "SJIS", SqlState::InvalidAuthorization),
            ("replication", "database", SqlState::InvalidAuthorization),
            ("backslash_quote", "on", SqlState::InvalidAuthorization),
            ("database", "postgres", SqlState::InvalidCatalogName),
        ];
        for (k, v, code) in cases {
            let mut params = p(&[("user", "app")]);
            if *k != "database" {
                params.push(("database".into(), "app".into()));
            }
            params.push((k.to_string(), v.to_string()));
            let err = check_params(params, &policy()).expect_err(k);
            assert_eq!(err.code, *code, "{k}={v}");
        }
    }

    #[test]
    fn every_spelling_of_the_pinned_values_is_accepted_top_level_and_in_options() {
        for (k, v) in [
            ("client_encoding", "'utf-8'"),
            ("client_encoding", "Unicode"),
            ("client_encoding", "SQL_ASCII"),
            ("options", "-c client_encoding=sql_ascii"),
            ("standard_conforming_strings", "true"),
            ("options", "-c client_encoding=UTF8"),
            ("options", "-c client_encoding='utf-8' --standard-conforming-strings=on"),
            ("options", "--client_encoding=unicode -c application_name=x"),
        ] {
            let (_, _, fwd) = check_params(p(&[("user", "u"), ("database", "app"), (k, v)]), &policy())
                .unwrap_or_else(|e| panic!("{k}={v}: {}", e.message));
            assert!(
                fwd.iter().all(|(name, _)| name == "application_name"),
                "{k}={v}: the pinned settings are never forwarded: {fwd:?}"
            );
        }
        for (k, v) in [
            ("client_encoding", "LATIN1"),
            ("options", "-c client_encoding=SJIS"),
            ("options", "-c standard_conforming_strings=off"),
        ] {
            let err = check_params(p(&[("user", "u"), ("database", "app"), (k, v)]), &policy()).unwrap_err();
            assert_eq!(err.code, SqlState::InvalidAuthorization, "{k}={v}");
        }
    }

    #[test]
    fn options_with_allowed_settings_are_forwarded() {
        let (_, _, fwd) = check_params(
            p(&[
                ("user", "u"),
                ("database", "app"),
                ("options", "-c statement_timeout=5s --search-path=a,b"),
            ]),
            &policy(),
        )
        .unwrap();
        assert_eq!(fwd, p(&[("statement_timeout", "5s"), ("search_path", "a,b")]));
    }

    #[test]
    fn parse_options_handles_escapes() {
        assert_eq!(
            parse_options(r"-c application_name=a\ b"),
            Some(p(&[("application_name", "a b")]))
        );
        assert_eq!(parse_options("-cfoo=1"), Some(p(&[("foo", "1")])));
        assert_eq!(parse_options("-c"), None);
        assert_eq!(parse_options("-c noequals"), None);
    }

    #[test]
    fn parse_options_splits_words_as_postgres_does() {
        // Every C isspace byte separates words, vertical tab included: this
        // is two settings, not one application_name holding the second.
        assert_eq!(
            parse_options("-c application_name=x\x0b--statement_timeout=0"),
            Some(p(&[("application_name", "x"), ("statement_timeout", "0")]))
        );
        assert_eq!(parse_options("\x0b-c\x0ca=1\r"), Some(p(&[("a", "1")])));
        // An escaped one does not.
        assert_eq!(parse_options("-c a=x\\\x0by"), Some(p(&[("a", "x\x0by")])));
        // A trailing backslash is dropped; alone it still makes a word, an
        // empty one, which is not a switch.
        assert_eq!(parse_options("-c a=b\\"), Some(p(&[("a", "b")])));
        assert_eq!(parse_options("-c a=1 \\"), None);
        assert_eq!(parse_options("-c \\"), None);
        // A bare `--` ends the switches; a word after it is refused.
        assert_eq!(parse_options("-c a=1 --"), Some(p(&[("a", "1")])));
        assert_eq!(parse_options("--"), Some(vec![]));
        assert_eq!(parse_options("-c a=1 -- -c b=2"), None);
        assert_eq!(parse_options("-c --"), None);
        assert_eq!(parse_options("---a=b"), Some(p(&[("_a", "b")])));
    }

    #[test]
    fn database_defaults_to_user_name() {
        let err = check_params(p(&[("user", "bob")]), &policy()).unwrap_err();
        assert_eq!(err.code, SqlState::InvalidCatalogName);
        assert!(check_params(p(&[("user", "app")]), &policy()).is_ok());
    }
}
