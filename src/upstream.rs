//! The upstream side: connect (TCP or Unix socket), TLS per `sslmode`, log in
//! as the configured role (SCRAM-SHA-256, MD5, cleartext or trust) with a
//! startup packet the proxy builds itself, pinning the tenant and, with
//! context verification on, the proof bound to this connection
//! ([`crate::context`]).
//!
//! The upstream server is trusted, but its messages are still length-capped
//! during the handshake so a misbehaving server cannot exhaust memory.

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
use crate::stream::Stream;

/// Largest message accepted from the server during login, in bytes.
const MAX_LOGIN_MESSAGE: usize = 1 << 20;

/// The two settings the proxy pins in every upstream startup packet.
pub const ORG_SETTING: &str = "app.current_organization_id";
/// See [`ORG_SETTING`].
pub const USER_SETTING: &str = "app.current_user_id";

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
        let mut stream = self.open().await?;
        let org = id.organization_id.hyphenated().to_string();
        let user = id.user_id.map(|u| u.hyphenated().to_string()).unwrap_or_default();
        let proof = match &self.context {
            Verification::On(key) => {
                let binding = binding_of(&stream).map_err(io_err("local address"))?;
                let expires = id.expires_at.saturating_add(self.proof_leeway);
                Some(key.proof(&org, &user, expires, &binding))
            }
            Verification::Off => None,
        };
        let mut params: Vec<(&str, &str)> = vec![
            ("user", &self.cfg.user),
            ("database", &self.cfg.database),
            ("client_encoding", "UTF8"),
            ("standard_conforming_strings", "on"),
            (ORG_SETTING, &org),
            (USER_SETTING, &user),
        ];
        if let Some(p) = &proof {
            params.push((PROOF_SETTING, p));
        }
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
                tcp.set_nodelay(true).map_err(io_err("set TCP_NODELAY"))?;
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

    async fn login(&self, mut stream: Stream) -> Result<Upstream, UpstreamError> {
        let mut buf = BytesMut::with_capacity(4096);
        let mut params = Vec::new();
        let mut key = None;
        let mut scram: Option<ScramSha256> = None;
        let password = || {
            self.cfg
                .password
                .as_deref()
                .ok_or_else(|| UpstreamError::Protocol("the server asked for a password and none is configured".into()))
        };
        loop {
            let msg = loop {
                if let Some(m) = Message::parse(&mut buf).map_err(io_err("login message"))? {
                    break m;
                }
                if buf.len() > MAX_LOGIN_MESSAGE {
                    return Err(UpstreamError::Protocol("login message too large".into()));
                }
                if stream.read_buf(&mut buf).await.map_err(io_err("read"))? == 0 {
                    return Err(UpstreamError::Io("server closed the connection during login".into()));
                }
            };
            let mut out = BytesMut::new();
            match msg {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?.as_bytes(), &mut out).map_err(io_err("password"))?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = postgres_protocol::authentication::md5_hash(
                        self.cfg.user.as_bytes(),
                        password()?.as_bytes(),
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut out).map_err(io_err("password"))?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut mechs = body.mechanisms();
                    let mut found = false;
                    while let Some(m) = mechs.next().map_err(io_err("SASL mechanisms"))? {
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
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| UpstreamError::Protocol("unexpected SASL continue".into()))?;
                    s.update(body.data())
                        .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(s.message(), &mut out).map_err(io_err("SASL"))?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| UpstreamError::Protocol("unexpected SASL final".into()))?;
                    s.finish(body.data())
                        .map_err(|e| UpstreamError::Protocol(format!("SCRAM server proof: {e}")))?;
                }
                Message::ParameterStatus(body) => {
                    let name = body.name().map_err(io_err("parameter"))?.to_owned();
                    let value = body.value().map_err(io_err("parameter"))?.to_owned();
                    params.push((name, value));
                }
                Message::BackendKeyData(body) => key = Some((body.process_id(), body.secret_key())),
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
                Message::ReadyForQuery(_) => {
                    if !buf.is_empty() {
                        return Err(UpstreamError::Protocol("bytes after ReadyForQuery during login".into()));
                    }
                    return Ok(Upstream { stream, params, key });
                }
                _ => return Err(UpstreamError::Protocol("unexpected message during login".into())),
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
