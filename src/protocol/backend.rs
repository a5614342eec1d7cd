//! Backend messages the proxy writes itself (authentication requests, errors,
//! status). Encoding is pgwire's; this module only picks the fields.
//!
//! Messages relayed from the upstream server are never re-encoded here: the
//! relay forwards their original bytes.

use bytes::BytesMut;
use pgwire::messages::response::{ErrorResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey};
use pgwire::messages::Message;

use crate::error::ClientError;

/// Appends an ErrorResponse for `err` to `out`.
pub fn error_response(out: &mut BytesMut, err: &ClientError) {
    let sev = err.severity.as_str().to_owned();
    let mut fields = vec![
        (b'S', sev.clone()),
        (b'V', sev),
        (b'C', err.code.code().to_owned()),
        (b'M', err.message.clone()),
    ];
    if let Some(d) = &err.detail {
        fields.push((b'D', d.clone()));
    }
    if let Some(h) = &err.hint {
        fields.push((b'H', h.clone()));
    }
    encode(out, &ErrorResponse::new(fields));
}

/// Appends AuthenticationCleartextPassword.
pub fn auth_cleartext(out: &mut BytesMut) {
    encode(out, &Authentication::CleartextPassword);
}

/// Appends AuthenticationOk.
pub fn auth_ok(out: &mut BytesMut) {
    encode(out, &Authentication::Ok);
}

/// Appends a ParameterStatus.
pub fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    encode(out, &ParameterStatus::new(name.to_owned(), value.to_owned()));
}

/// Appends BackendKeyData with a protocol 3.0 (4-byte) secret.
pub fn backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    encode(out, &BackendKeyData::new(pid, SecretKey::I32(secret)));
}

/// Appends ReadyForQuery with status idle.
pub fn ready_for_query_idle(out: &mut BytesMut) {
    encode(out, &ReadyForQuery::new(TransactionStatus::Idle));
}

/// Appends NegotiateProtocolVersion: the proxy speaks protocol 3.0 and none of
/// the `_pq_.` options listed.
pub fn negotiate_protocol_version(out: &mut BytesMut, unsupported: Vec<String>) {
    encode(out, &NegotiateProtocolVersion::new(3 << 16, unsupported));
}

fn encode<M: Message>(out: &mut BytesMut, msg: &M) {
    // The only failure pgwire reports is a message above its size cap; every
    // message built here is small (bounded texts), so it cannot trigger.
    if let Err(e) = msg.encode(out) {
        tracing::error!(error = %e, "could not encode a backend message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SqlState;

    #[test]
    fn error_response_carries_code_and_fields() {
        let mut out = BytesMut::new();
        error_response(
            &mut out,
            &ClientError::fatal(SqlState::InvalidPassword, "bad token").with_hint("mint a new one"),
        );
        assert_eq!(out[0], b'E');
        let text = String::from_utf8_lossy(&out[5..]).to_string();
        assert!(text.contains("SFATAL\0"));
        assert!(text.contains("C28P01\0"));
        assert!(text.contains("Mbad token\0"));
        assert!(text.contains("Hmint a new one\0"));
        let len = i32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len + 1, out.len());
    }
}
