//! The upstream side: connect (TCP or Unix socket), TLS per `sslmode`, log in
//! as the configured role (SCRAM-SHA-256, MD5, cleartext or trust) with a
//! startup packet the proxy builds itself, pinning the tenant and, with
//! context verification on, the proof bound to this connection
//! ([`crate::context`]).
//!
//! The login trusts nothing the server says: every message's declared length
//! is checked against a cap before anything is read or allocated for it; a
//! SCRAM exchange counts only once the server's final message proved that it
//! knows the password; the password is sent in cleartext or MD5 only where
//! [`crate::upstream_auth`] allows; and the whole login has a deadline.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::{backend::Message, frontend};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::auth::Identity;
use crate::config::{SslMode, UpstreamAddr, UpstreamConfig};
use crate::context::{Binding, Verification, PROOF_SETTING};
use crate::error::{ClientError, SqlState};
use crate::pin;
use crate::protocol::frame::{self, FrameError};
use crate::stream::Stream;
use crate::upstream_auth::{AuthMethod, AuthRefusal, Transport};

/// Largest message accepted from the server during login, in bytes (header
/// included). PostgreSQL's own login messages are far smaller.
const MAX_LOGIN_MESSAGE: usize = 1 << 20;

pub use crate::pin::{ORG_SETTING, USER_SETTING};

/// Upstream configuration ready for use (TLS config built once).
#[derive(Clone, Debug)]
pub struct Connector {
    cfg: UpstreamConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    context: Verification,
    /// Seconds a proof outlives the token's `exp` (the token leeway, so the
    /// database closes access when the proxy closes the session).
    proof_leeway: u64,
}

/// A logged-in upstream session, ready for queries.
#[derive(Debug)]
pub struct Upstream {
    /// The stream, positioned after the first ReadyForQuery.
    pub stream: Stream,
    /// ParameterStatus values the server reported, in order.
    pub params: Vec<(String, String)>,
    /// The server's BackendKeyData (pid, secret), for cancel requests.
    pub key: Option<(i32, i32)>,
}

/// The settings pinned for one identity on one connection.
#[derive(Debug, Clone)]
pub struct PinValues {
    /// `app.current_organization_id`.
    pub organization: String,
    /// `app.current_user_id` ("" for a token without a user).
    pub user: String,
    /// `app.context_proof`, with context verification on.
    pub proof: Option<String>,
}

/// Why the upstream session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Network or TLS failure.
    #[error("{0}")]
    Io(String),
    /// The server refused us (its own ErrorResponse).
    #[error("server refused the login: {code} {message}")]
    Refused {
        /// Its SQLSTATE.
        code: String,
        /// Its message.
        message: String,
    },
    /// The server asked for something we cannot do.
    #[error("{0}")]
    Protocol(String),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The server asked for the password in a way the policy refuses.
    #[error("{0}")]
    AuthRefused(AuthRefusal),
    /// The server claimed success without proving that it knows the password
    /// (AuthenticationOk before a verified SCRAM server-final message, or a
    /// server-final message that does not verify).
    #[error("{0}")]
    ServerNotVerified(String),
}

impl UpstreamError {
    /// What the client is told (08001), without internal detail.
    pub fn to_client(&self) -> ClientError {
        let detail = match self {
            UpstreamError::Refused { code, .. } if code == "53300" => "the database server has too many connections",
            UpstreamError::Refused { code, .. } if code == "57P03" => {
                "the database server is starting up or shutting down"
            }
            UpstreamError::Refused { .. } => "the database server refused the proxy's login",
            UpstreamError::Timeout(_) => "the database server did not answer in time",
            UpstreamError::Io(_) => "the database server could not be reached",
            UpstreamError::Protocol(_) => "the database server's login exchange failed",
            UpstreamError::AuthRefused(AuthRefusal::Exposed { .. }) => {
                "the database server asked for the password in cleartext or MD5 over a connection that is not a Unix socket, loopback or verified TLS"
            }
            UpstreamError::AuthRefused(AuthRefusal::NotAllowed { .. }) => {
                "the database server asked for an authentication method the proxy is configured to refuse"
            }
            UpstreamError::ServerNotVerified(_) => "the database server did not prove that it knows the login role's password",
        };
        ClientError::fatal(SqlState::UnableToConnect, "could not connect to the database server")
            .with_detail(detail)
            .with_hint("the proxy's log has the cause")
    }
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> UpstreamError + '_ {
    move |e| UpstreamError::Io(format!("{what}: {e}"))
}

impl Connector {
    /// Builds the connector (TLS configuration included). With `context`
    /// on, every session's startup packet carries a proof that expires
    /// `proof_leeway` seconds after the token.
    pub fn new(
        cfg: UpstreamConfig,
        timeout: Duration,
        context: Verification,
        proof_leeway: u64,
    ) -> Result<Connector, String> {
        let tls = crate::tls::upstream_config(&cfg)?;
        Ok(Connector {
            cfg,
            tls,
            timeout,
            context,
            proof_leeway,
        })
    }

    /// The upstream configuration.
    pub fn config(&self) -> &UpstreamConfig {
        &self.cfg
    }

    /// Opens a session pinned to `id`, with extra startup parameters
    /// (already validated by the handshake) appended.
    pub async fn connect(&self, id: &Identity, extra: &[(String, String)]) -> Result<Upstream, UpstreamError> {
        tokio::time::timeout(self.timeout, self.connect_inner(id, extra))
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
    }

    async fn connect_inner(&self, id: &Identity, extra: &[(String, String)]) -> Result<Upstream, UpstreamError> {
        let stream = self.open().await?;
        let binding = binding_of(&stream).map_err(io_err("local address"))?;
        let pin = self.pin_values(id, &binding);
        let mut params: Vec<(&str, &str)> = vec![(ORG_SETTING, &pin.organization), (USER_SETTING, &pin.user)];
        if let Some(p) = &pin.proof {
            params.push((PROOF_SETTING, p));
        }
        self.start(stream, &params, extra).await
    }

    /// Opens a backend for the transaction pool: the configured role with no
    /// tenant at all (the login role's own defaults), so a transaction the
    /// proxy did not pin sees no tenant's rows. Returns it with what the
    /// server sees of the connection (for per-transaction proofs).
    pub async fn connect_unpinned(&self) -> Result<(Upstream, Binding), UpstreamError> {
        let fut = async {
            let stream = self.open().await?;
            let binding = binding_of(&stream).map_err(io_err("local address"))?;
            Ok((self.start(stream, &[], &[]).await?, binding))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
    }

    /// The values pinned for `id` on a connection the server sees as
    /// `binding`: the organization, the user ("" without one) and, with
    /// context verification on, the proof PostgreSQL checks.
    pub fn pin_values(&self, id: &Identity, binding: &Binding) -> PinValues {
        let organization = id.organization_id.hyphenated().to_string();
        let user = id.user_id.map(|u| u.hyphenated().to_string()).unwrap_or_default();
        let proof = match &self.context {
            Verification::On(key) => {
                let expires = id.expires_at.saturating_add(self.proof_leeway);
                Some(key.proof(&organization, &user, expires, binding))
            }
            Verification::Off => None,
        };
        PinValues {
            organization,
            user,
            proof,
        }
    }

    /// Whether sessions carry a proof (context verification on).
    pub fn verifies_context(&self) -> bool {
        matches!(self.context, Verification::On(_))
    }

    /// Sends the startup packet (role, database, the lexing pins, then `pins`
    /// and `extra`) and logs in.
    async fn start(
        &self,
        mut stream: Stream,
        pins: &[(&str, &str)],
        extra: &[(String, String)],
    ) -> Result<Upstream, UpstreamError> {
        let mut params: Vec<(&str, &str)> = vec![
            ("user", &self.cfg.user),
            ("database", &self.cfg.database),
            (pin::CLIENT_ENCODING, pin::CLIENT_ENCODING_VALUE),
            (pin::STANDARD_CONFORMING_STRINGS, pin::STANDARD_CONFORMING_STRINGS_VALUE),
        ];
        params.extend_from_slice(pins);
        if !extra.iter().any(|(k, _)| k == "application_name") {
            params.push(("application_name", "pg-tenant-proxy"));
        }
        params.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut out = BytesMut::new();
        frontend::startup_message(params.iter().copied(), &mut out).map_err(io_err("startup message"))?;
        stream.write_all(&out).await.map_err(io_err("write"))?;
        self.login(stream).await
    }

    /// Connects the transport and negotiates TLS per `sslmode`.
    async fn open(&self) -> Result<Stream, UpstreamError> {
        match &self.cfg.addr {
            UpstreamAddr::Unix(path) => {
                let s = UnixStream::connect(path).await.map_err(io_err("connect"))?;
                Ok(Stream::Unix(s))
            }
            UpstreamAddr::Tcp { host, port } => {
                let mut tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(io_err("connect"))?;
                crate::stream::tune_tcp(&tcp).map_err(io_err("set TCP options"))?;
                let Some(tls) = &self.tls else {
                    return Ok(Stream::Tcp(tcp));
                };
                let mut req = BytesMut::new();
                frontend::ssl_request(&mut req);
                tcp.write_all(&req).await.map_err(io_err("write"))?;
                let answer = tcp.read_u8().await.map_err(io_err("read"))?;
                match answer {
                    b'S' => {
                        let name = ServerName::try_from(host.clone())
                            .map_err(|_| UpstreamError::Protocol(format!("{host:?} is not a valid TLS server name")))?;
                        let s = tokio_rustls::TlsConnector::from(tls.clone())
                            .connect(name, tcp)
                            .await
                            .map_err(io_err("TLS handshake"))?;
                        Ok(Stream::ClientTls(Box::new(s)))
                    }
                    b'N' if self.cfg.sslmode == SslMode::Prefer => Ok(Stream::Tcp(tcp)),
                    b'N' => Err(UpstreamError::Protocol(
                        "server does not support TLS, and sslmode requires it".into(),
                    )),
                    _ => Err(UpstreamError::Protocol("unexpected answer to SSLRequest".into())),
                }
            }
        }
    }

    /// What kind of connection `stream` is, for the password policy.
    fn transport(&self, stream: &Stream) -> Transport {
        let verified = matches!(
            (self.cfg.sslmode, &self.cfg.sslrootcert),
            (SslMode::VerifyCa | SslMode::VerifyFull, _) | (SslMode::Require, Some(_))
        );
        let peer = match stream {
            Stream::Unix(_) => return Transport::Unix,
            Stream::ClientTls(_) if verified => return Transport::VerifiedTls,
            Stream::ClientTls(s) => s.get_ref().0.peer_addr(),
            Stream::Tcp(s) => s.peer_addr(),
            Stream::ServerTls(s) => s.get_ref().0.peer_addr(),
        };
        match peer {
            Ok(a) if Transport::is_loopback_peer(a.ip()) => Transport::Loopback,
            _ => Transport::Network,
        }
    }

    /// Whether the password may answer `method` on this connection.
    fn allow(&self, method: AuthMethod, transport: Transport) -> Result<(), UpstreamError> {
        self.cfg
            .require_auth
            .check(method, transport)
            .map_err(UpstreamError::AuthRefused)
    }

    async fn login(&self, mut stream: Stream) -> Result<Upstream, UpstreamError> {
        let transport = self.transport(&stream);
        let mut buf = BytesMut::with_capacity(4096);
        let mut params = Vec::new();
        let mut key = None;
        let mut scram: Option<ScramSha256> = None;
        // Set once a SCRAM server-final message verified.
        let mut scram_verified = false;
        // Set by AuthenticationOk; session messages are accepted only after it.
        let mut authenticated = false;
        // Set by the first authentication request.
        let mut asked = false;
        let password = || {
            self.cfg
                .password
                .as_deref()
                .ok_or_else(|| UpstreamError::Protocol("the server asked for a password and none is configured".into()))
        };
        let unexpected = |what: &str| UpstreamError::Protocol(format!("unexpected {what} during login"));
        loop {
            let msg = read_login_message(&mut stream, &mut buf).await?;
            let is_auth_request = matches!(
                msg,
                Message::AuthenticationOk
                    | Message::AuthenticationCleartextPassword
                    | Message::AuthenticationMd5Password(_)
                    | Message::AuthenticationSasl(_)
                    | Message::AuthenticationSaslContinue(_)
                    | Message::AuthenticationSaslFinal(_)
            );
            if authenticated && is_auth_request {
                return Err(unexpected("authentication message after AuthenticationOk"));
            }
            let mut out = BytesMut::new();
            match msg {
                Message::AuthenticationOk => {
                    if scram.is_some() && !scram_verified {
                        return Err(UpstreamError::ServerNotVerified(
                            "AuthenticationOk before a verified SCRAM server-final message".into(),
                        ));
                    }
                    if !asked {
                        self.allow(AuthMethod::None, transport)?;
                    }
                    authenticated = true;
                }
                Message::AuthenticationCleartextPassword if !asked => {
                    asked = true;
                    self.allow(AuthMethod::Password, transport)?;
                    frontend::password_message(password()?.as_bytes(), &mut out).map_err(io_err("password"))?;
                }
                Message::AuthenticationMd5Password(body) if !asked => {
                    asked = true;
                    self.allow(AuthMethod::Md5, transport)?;
                    let hash = postgres_protocol::authentication::md5_hash(
                        self.cfg.user.as_bytes(),
                        password()?.as_bytes(),
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut out).map_err(io_err("password"))?;
                }
                Message::AuthenticationSasl(body) if !asked => {
                    asked = true;
                    self.allow(AuthMethod::ScramSha256, transport)?;
                    let mut mechs = body.mechanisms();
                    let mut found = false;
                    while let Some(m) = mechs
                        .next()
                        .map_err(|e| UpstreamError::Protocol(format!("SASL mechanisms: {e}")))?
                    {
                        found |= m == SCRAM_SHA_256;
                    }
                    if !found {
                        return Err(UpstreamError::Protocol(
                            "server offers no SASL mechanism we support".into(),
                        ));
                    }
                    // Channel binding is not used ('n'): the proxy then never
                    // claims support the server could see as a downgrade.
                    let s = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out).map_err(io_err("SASL"))?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram.as_mut().ok_or_else(|| unexpected("SASL continue"))?;
                    s.update(body.data())
                        .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(s.message(), &mut out).map_err(io_err("SASL"))?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let s = scram.as_mut().ok_or_else(|| unexpected("SASL final"))?;
                    // Verifies the server signature: only a server that knows
                    // the password (or its SCRAM verifier) can produce it.
                    s.finish(body.data())
                        .map_err(|e| UpstreamError::ServerNotVerified(format!("SCRAM server-final message: {e}")))?;
                    scram_verified = true;
                }
                Message::AuthenticationCleartextPassword
                | Message::AuthenticationMd5Password(_)
                | Message::AuthenticationSasl(_) => {
                    return Err(unexpected("second authentication request"));
                }
                Message::ParameterStatus(body) if authenticated => {
                    let name = body
                        .name()
                        .map_err(|_| unexpected("malformed ParameterStatus"))?
                        .to_owned();
                    let value = body
                        .value()
                        .map_err(|_| unexpected("malformed ParameterStatus"))?
                        .to_owned();
                    params.push((name, value));
                }
                Message::BackendKeyData(body) if authenticated => key = Some((body.process_id(), body.secret_key())),
                Message::NoticeResponse(_) => {}
                Message::ErrorResponse(body) => {
                    let (mut code, mut message) = (String::new(), String::new());
                    let mut fields = body.fields();
                    while let Ok(Some(f)) = fields.next() {
                        match f.type_() {
                            b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
                            b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
                            _ => {}
                        }
                    }
                    return Err(UpstreamError::Refused { code, message });
                }
                Message::ReadyForQuery(_) if authenticated => {
                    if !buf.is_empty() {
                        return Err(UpstreamError::Protocol("bytes after ReadyForQuery during login".into()));
                    }
                    return Ok(Upstream { stream, params, key });
                }
                Message::ParameterStatus(_) | Message::BackendKeyData(_) | Message::ReadyForQuery(_) => {
                    return Err(unexpected("session message before AuthenticationOk"));
                }
                _ => return Err(unexpected("message")),
            }
            if !out.is_empty() {
                stream.write_all(&out).await.map_err(io_err("write"))?;
            }
        }
    }

    /// Sends a CancelRequest for the upstream session `(pid, secret)`.
    pub async fn cancel(&self, pid: i32, secret: i32) -> Result<(), UpstreamError> {
        let fut = async {
            let mut s = self.open().await?;
            let mut out = BytesMut::new();
            frontend::cancel_request(pid, secret, &mut out);
            s.write_all(&out).await.map_err(io_err("write"))?;
            s.flush().await.map_err(io_err("flush"))?;
            // The server closes the connection when done; wait for that briefly.
            let mut sink = [0u8; 16];
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut sink)).await;
            Ok(())
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
    }
}

/// Reads one server message during login. Its declared length is checked
/// against [`MAX_LOGIN_MESSAGE`] from the 5-byte header, before any byte of
/// the body is read or any buffer is sized for it.
async fn read_login_message(stream: &mut Stream, buf: &mut BytesMut) -> Result<Message, UpstreamError> {
    loop {
        match frame::peek_header(buf, 0, MAX_LOGIN_MESSAGE) {
            Err(FrameError::TooLarge { total, max }) => {
                return Err(UpstreamError::Protocol(format!(
                    "the server declared a login message of {total} bytes; at most {max} are accepted"
                )));
            }
            Err(FrameError::BadLength(len)) => {
                return Err(UpstreamError::Protocol(format!(
                    "the server sent a login message with the invalid length {len}"
                )));
            }
            Ok(Some(h)) if buf.len() >= h.total => {
                // The whole message is buffered, so parse neither reserves
                // nor returns None.
                return match Message::parse(buf) {
                    Ok(Some(m)) => Ok(m),
                    Ok(None) => Err(UpstreamError::Protocol("incomplete login message".into())),
                    Err(e) => Err(UpstreamError::Protocol(format!("malformed login message: {e}"))),
                };
            }
            Ok(Some(h)) => buf.reserve(h.total - buf.len()),
            Ok(None) => {}
        }
        if stream.read_buf(buf).await.map_err(io_err("read"))? == 0 {
            return Err(UpstreamError::Io("server closed the connection during login".into()));
        }
    }
}

/// What the server will see of this connection: the local TCP address and
/// port (under TLS too), or a Unix socket.
fn binding_of(stream: &Stream) -> std::io::Result<Binding> {
    Ok(match stream {
        Stream::Tcp(s) => Binding::tcp(s.local_addr()?),
        Stream::ClientTls(s) => Binding::tcp(s.get_ref().0.local_addr()?),
        Stream::Unix(_) => Binding::Unix,
        Stream::ServerTls(s) => Binding::tcp(s.get_ref().0.local_addr()?),
    })
}
