//! The untagged packets a client may send before authentication: the startup
//! message, SSLRequest, GSSENCRequest and CancelRequest.
//!
//! Input is untrusted: the packet length is capped at
//! [`MAX_STARTUP_PACKET_LEN`] before reading the body, and every parameter
//! must be valid UTF-8, bounded in size and count, and unique.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest startup-phase packet accepted, in bytes (as PostgreSQL's
/// `MAX_STARTUP_PACKET_LENGTH` in `src/include/libpq/pqcomm.h`).
pub const MAX_STARTUP_PACKET_LEN: usize = 10_000;
/// Most parameters accepted in one startup message.
pub const MAX_STARTUP_PARAMS: usize = 64;

/// `SSLRequest` request code (1234.5679).
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// `GSSENCRequest` request code (1234.5680).
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// `CancelRequest` request code (1234.5678).
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Protocol 3.0 as sent in a startup message.
pub const PROTOCOL_3_0: u32 = 3 << 16;

/// One parsed startup-phase packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption.
    GssEncRequest,
    /// Cancel the query running on the session with this key.
    Cancel {
        /// BackendKeyData process id.
        pid: i32,
        /// BackendKeyData secret. Protocol 3.2 keys may be longer; they are
        /// kept whole so they never match a 3.0 key by accident.
        secret: Vec<u8>,
    },
    /// A StartupMessage.
    Startup {
        /// Requested major version (3).
        major: u16,
        /// Requested minor version.
        minor: u16,
        /// Parameters in the order sent.
        params: Vec<(String, String)>,
    },
}

/// Why a startup-phase packet was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The socket failed or closed.
    #[error("connection closed during startup: {0}")]
    Io(#[from] std::io::Error),
    /// The length field is out of range.
    #[error("invalid startup packet length {0}")]
    BadLength(u32),
    /// The body is malformed.
    #[error("invalid startup packet layout: {0}")]
    Malformed(&'static str),
    /// A protocol major version other than 3.
    #[error("unsupported frontend protocol {0}.{1}")]
    UnsupportedProtocol(u16, u16),
}

/// Reads exactly one startup-phase packet. It reads only the bytes of this
/// packet, so nothing past it is consumed from the socket: bytes a client
/// sends after an SSLRequest stay in the socket for the TLS layer to reject.
pub async fn read_packet<R: AsyncRead + Unpin>(io: &mut R) -> Result<StartupPacket, StartupError> {
    let len = io.read_u32().await?;
    if !(8..=MAX_STARTUP_PACKET_LEN as u32).contains(&len) {
        return Err(StartupError::BadLength(len));
    }
    let mut body = vec![0u8; len as usize - 4];
    io.read_exact(&mut body).await?;
    parse_packet(&body)
}

/// Parses the body of a startup-phase packet (everything after the length).
pub fn parse_packet(body: &[u8]) -> Result<StartupPacket, StartupError> {
    let (code, rest) = body
        .split_first_chunk::<4>()
        .ok_or(StartupError::Malformed("missing request code"))?;
    let code = u32::from_be_bytes(*code);
    match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            if !rest.is_empty() {
                return Err(StartupError::Malformed("trailing bytes in encryption request"));
            }
            Ok(if code == SSL_REQUEST_CODE {
                StartupPacket::SslRequest
            } else {
                StartupPacket::GssEncRequest
            })
        }
        CANCEL_REQUEST_CODE => {
            let (pid, secret) = rest
                .split_first_chunk::<4>()
                .ok_or(StartupError::Malformed("short cancel request"))?;
            if secret.len() < 4 || secret.len() > 256 {
                return Err(StartupError::Malformed("bad cancel key length"));
            }
            Ok(StartupPacket::Cancel {
                pid: i32::from_be_bytes(*pid),
                secret: secret.to_vec(),
            })
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(StartupError::UnsupportedProtocol(major, minor));
            }
            Ok(StartupPacket::Startup {
                major,
                minor,
                params: parse_params(rest)?,
            })
        }
    }
}

fn parse_params(mut rest: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        let (name, after) =
            super::frame::cstr(rest).ok_or(StartupError::Malformed("parameter list is not terminated"))?;
        if name.is_empty() {
            if !after.is_empty() {
                return Err(StartupError::Malformed("bytes after the parameter list"));
            }
            return Ok(params);
        }
        let (value, after) =
            super::frame::cstr(after).ok_or(StartupError::Malformed("parameter value is not terminated"))?;
        if params.len() == MAX_STARTUP_PARAMS {
            return Err(StartupError::Malformed("too many startup parameters"));
        }
        let name = std::str::from_utf8(name).map_err(|_| StartupError::Malformed("parameter name is not UTF-8"))?;
        let value = std::str::from_utf8(value).map_err(|_| StartupError::Malformed("parameter value is not UTF-8"))?;
        if params.iter().any(|(n, _)| n == name) {
            return Err(StartupError::Malformed("duplicate startup parameter"));
        }
        params.push((name.to_owned(), value.to_owned()));
        rest = after;
    }
}

/// The startup reader over bytes in memory, for the fuzz targets in
/// `fuzz/`. Not a stable interface.
#[doc(hidden)]
pub mod probe {
    use super::{StartupError, StartupPacket};
    use crate::protocol::in_memory::{ready, Chunks};

    /// [`read_packet`](super::read_packet) over `chunks` (one socket read
    /// each), as the handshake reads a client; with how many bytes it took.
    pub fn read_packet(chunks: &[&[u8]]) -> (Result<StartupPacket, StartupError>, usize) {
        let mut io = Chunks::new(chunks);
        let r = ready(super::read_packet(&mut io));
        (r, io.consumed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup_body(params: &[(&str, &str)]) -> Vec<u8> {
        let mut b = PROTOCOL_3_0.to_be_bytes().to_vec();
        for (k, v) in params {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn parses_startup_parameters_in_order() {
        let p = parse_packet(&startup_body(&[("user", "app"), ("database", "app")])).unwrap();
        assert_eq!(
            p,
            StartupPacket::Startup {
                major: 3,
                minor: 0,
                params: vec![("user".into(), "app".into()), ("database".into(), "app".into())]
            }
        );
    }

    #[test]
    fn duplicate_parameter_is_refused() {
        let body = startup_body(&[("user", "a"), ("user", "b")]);
        assert!(matches!(parse_packet(&body), Err(StartupError::Malformed(_))));
    }

    #[test]
    fn unterminated_list_and_trailing_bytes_are_refused() {
        let mut body = startup_body(&[("user", "a")]);
        body.pop();
        assert!(parse_packet(&body).is_err());
        let mut body = startup_body(&[("user", "a")]);
        body.push(b'x');
        assert!(parse_packet(&body).is_err());
    }

    #[test]
    fn protocol_2_is_refused() {
        let body = (2u32 << 16).to_be_bytes();
        assert!(matches!(
            parse_packet(&body),
            Err(StartupError::UnsupportedProtocol(2, 0))
        ));
    }

    #[tokio::test]
    async fn huge_length_is_refused_before_reading() {
        let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(matches!(read_packet(&mut input).await, Err(StartupError::BadLength(_))));
    }

    #[test]
    fn ssl_and_cancel_requests() {
        assert_eq!(
            parse_packet(&SSL_REQUEST_CODE.to_be_bytes()).unwrap(),
            StartupPacket::SslRequest
        );
        let mut c = CANCEL_REQUEST_CODE.to_be_bytes().to_vec();
        c.extend_from_slice(&7i32.to_be_bytes());
        c.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            parse_packet(&c).unwrap(),
            StartupPacket::Cancel {
                pid: 7,
                secret: vec![1, 2, 3, 4]
            }
        );
    }
}
