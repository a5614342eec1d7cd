//! The guard applied to wire messages, shared by the session-mode relay and
//! the transaction-pool relay: which client messages the guard decides on,
//! how a refused one is replaced by an unparsable marker of the same kind
//! (so PostgreSQL raises the error in order, with every effect an error has),
//! how the marker's error is swapped back for the proxy's own, and how
//! notification channels are unscoped on the way back.
//!
//! Input: client and server message bodies, untrusted; every field is
//! length-checked before use.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ClientError, SqlState};
use crate::guard::{Guard, TenantScope, Verdict};
use crate::protocol::backend;
use crate::protocol::frame::{cstr, HEADER_LEN};

/// Refusals remembered while their marker error has not come back.
pub(crate) const MAX_PENDING_REFUSALS: usize = 1024;

/// Refusals whose marker error has not come back from the server yet.
///
/// Markers are numbered in the order they are sent, and the server answers
/// them in that order (or discards some after an earlier error), so one
/// counter says which are still outstanding. Only the newest
/// [`MAX_PENDING_REFUSALS`] keep their own error; an older one that comes
/// back gets [`refusal_details_dropped`], never the server's raw 42601.
pub(crate) struct Refusals {
    /// Marker prefix unique to this session, e.g. `pgtp_refused_1f2e…_`.
    pub(crate) prefix: String,
    /// Number of the next marker.
    next: AtomicUsize,
    /// Every marker below this number has come back or was discarded.
    resolved: AtomicUsize,
    pending: Mutex<VecDeque<(usize, ClientError)>>,
}

impl Refusals {
    pub(crate) fn new() -> Refusals {
        Refusals {
            prefix: format!("pgtp_refused_{:016x}_", rand::random::<u64>()),
            next: AtomicUsize::new(0),
            resolved: AtomicUsize::new(0),
            pending: Mutex::new(VecDeque::new()),
        }
    }

    /// Records `err` and returns the unparsable marker statement to send instead.
    pub(crate) fn register(&self, err: ClientError) -> String {
        crate::metrics::refused(err.class.unwrap_or("malformed_message"));
        let mut q = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let n = self.next.load(Ordering::Relaxed);
        if q.len() == MAX_PENDING_REFUSALS {
            q.pop_front();
        }
        q.push_back((n, err));
        self.next.store(n + 1, Ordering::Release);
        format!("{}{n}", self.prefix)
    }

    /// If `message` (an ErrorResponse M field) carries one of our outstanding
    /// markers, the refusal it stands for.
    pub(crate) fn take(&self, message: &str) -> Option<ClientError> {
        let at = message.find(&self.prefix)? + self.prefix.len();
        let digits: &str = &message[at..];
        let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
        let n: usize = digits[..end].parse().ok()?;
        let mut q = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if n < self.resolved.load(Ordering::Acquire) || n >= self.next.load(Ordering::Acquire) {
            return None;
        }
        let mut found = None;
        // Older refusals were discarded by the server (an earlier error in the
        // same pipeline); they will never come back.
        while let Some((k, _)) = q.front() {
            if *k > n {
                break;
            }
            if let Some((k, e)) = q.pop_front() {
                if k == n {
                    found = Some(e);
                }
            }
        }
        self.resolved.store(n + 1, Ordering::Release);
        Some(found.unwrap_or_else(refusal_details_dropped))
    }

    /// Whether `message` (a whole Query message) is one of this session's
    /// markers.
    pub(crate) fn is_marker_query(&self, message: &[u8]) -> bool {
        message
            .get(HEADER_LEN..)
            .is_some_and(|text| text.starts_with(self.prefix.as_bytes()))
    }

    pub(crate) fn any_in_flight(&self) -> bool {
        self.resolved.load(Ordering::Acquire) < self.next.load(Ordering::Acquire)
    }
}

/// The error for a refused statement whose own error was not kept (more
/// than [`MAX_PENDING_REFUSALS`] refusals were pipelined behind it).
fn refusal_details_dropped() -> ClientError {
    ClientError::error(
        SqlState::InsufficientPrivilege,
        format!(
            "pg-tenant-proxy: statement refused by the tenant guard (more than {MAX_PENDING_REFUSALS} \
             refused statements were pipelined; the reason for this one was not kept)"
        ),
    )
    .with_hint("Send fewer statements the proxy refuses before waiting for their results.")
}

/// Most a Parse message adds to its statement text: name (PostgreSQL keeps
/// 63 bytes of it; 1 KiB allowed), two NULs, and up to 65,535 parameter types.
const MAX_PARSE_OVERHEAD: usize = 1024 + 2 + 2 + 4 * 65_535;

/// Largest Query or Parse frame buffered whole for the guard; a larger one
/// holds a statement over the guard's limit and is refused as it streams by.
pub(crate) fn max_buffered_statement(tag: u8, max_statement_bytes: usize) -> usize {
    let overhead = if tag == b'Q' { 1 } else { MAX_PARSE_OVERHEAD };
    max_statement_bytes.saturating_add(overhead).saturating_add(HEADER_LEN)
}

/// The refusal for a Query or Parse frame too large to buffer.
pub(crate) fn oversized(tag: u8, total: usize, max_statement_bytes: usize) -> ClientError {
    let text_bytes = if tag == b'Q' {
        total.saturating_sub(HEADER_LEN + 1)
    } else {
        total.saturating_sub(HEADER_LEN + MAX_PARSE_OVERHEAD)
    };
    crate::guard::statement_too_long(text_bytes, max_statement_bytes)
}

/// Decides on one Query ('Q'), Parse ('P') or FunctionCall ('F') body.
/// `None`: forward it unchanged. `Some(bytes)`: forward these bytes instead.
pub(crate) fn inspect(tag: u8, body: &[u8], guard: &Guard, scope: &TenantScope, refusals: &Refusals) -> Option<Bytes> {
    let malformed = || {
        ClientError::error(
            SqlState::ProtocolViolation,
            "malformed protocol message refused by pg-tenant-proxy",
        )
    };
    match tag {
        b'Q' => {
            // Exactly one NUL, at the end: the server reads up to the first NUL
            // and rejects trailing bytes, so the guard sees what it would run.
            let verdict = match cstr(body) {
                Some((sql, [])) => guard.check_query(sql, scope),
                _ => Verdict::Deny(malformed()),
            };
            match verdict {
                Verdict::Allow => None,
                Verdict::Rewrite(sql) => Some(query_message(&sql)),
                Verdict::Deny(err) => Some(query_message(&refusals.register(err))),
            }
        }
        b'P' => {
            let parsed = cstr(body).and_then(|(name, rest)| {
                let (sql, rest) = cstr(rest)?;
                let (n, types) = rest.split_first_chunk::<2>()?;
                let n = i16::from_be_bytes(*n);
                (n >= 0 && types.len() == n as usize * 4).then_some((name, sql, rest))
            });
            let Some((name, sql, tail)) = parsed else {
                return Some(parse_message(b"", &refusals.register(malformed()), &0i16.to_be_bytes()));
            };
            match guard.check_parse(sql, scope) {
                Verdict::Allow => None,
                Verdict::Rewrite(new) => Some(parse_message(name, &new, tail)),
                Verdict::Deny(err) => Some(parse_message(name, &refusals.register(err), &0i16.to_be_bytes())),
            }
        }
        _ => match guard.check_function_call() {
            Verdict::Allow => None,
            Verdict::Rewrite(sql) => Some(query_message(&sql)),
            Verdict::Deny(err) => Some(query_message(&refusals.register(err))),
        },
    }
}

pub(crate) fn query_message(sql: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(sql.len() + 6);
    crate::protocol::frame::write_message(&mut out, b'Q', |b| {
        b.put_slice(sql.as_bytes());
        b.put_u8(0);
    });
    out.freeze()
}

pub(crate) fn parse_message(name: &[u8], sql: &str, tail: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(name.len() + sql.len() + tail.len() + 7);
    crate::protocol::frame::write_message(&mut out, b'P', |b| {
        b.put_slice(name);
        b.put_u8(0);
        b.put_slice(sql.as_bytes());
        b.put_u8(0);
        b.put_slice(tail);
    });
    out.freeze()
}

/// NotificationResponse body: int32 pid, channel, payload. Returns the frame
/// with the tenant prefix removed, an empty frame to drop it, or `None` to
/// pass it unchanged (never: every channel this session hears is scoped).
pub(crate) fn unscope_notification(body: &[u8], scope: &TenantScope) -> Option<Bytes> {
    let drop_it = Some(Bytes::new());
    let Some((pid, rest)) = body.split_first_chunk::<4>() else {
        return drop_it;
    };
    let Some((channel, rest)) = cstr(rest) else {
        return drop_it;
    };
    let Some((payload, _)) = cstr(rest) else { return drop_it };
    let Ok(channel) = std::str::from_utf8(channel) else {
        return drop_it;
    };
    let Some(visible) = scope.unscope_channel(channel) else {
        return drop_it;
    };
    let mut out = BytesMut::with_capacity(body.len() + 1);
    crate::protocol::frame::write_message(&mut out, b'A', |b| {
        b.put_slice(pid);
        b.put_slice(visible.as_bytes());
        b.put_u8(0);
        b.put_slice(payload);
        b.put_u8(0);
    });
    Some(out.freeze())
}

/// ErrorResponse body: if it is the syntax error of one of our markers, the
/// proxy's own error for the refused statement instead.
pub(crate) fn replace_marker_error(body: &[u8], refusals: &Refusals) -> Option<Bytes> {
    let mut rest = body;
    let mut code: &[u8] = b"";
    let mut message: &[u8] = b"";
    while let Some((&t, after)) = rest.split_first() {
        if t == 0 {
            break;
        }
        let (v, after) = cstr(after)?;
        match t {
            b'C' => code = v,
            b'M' => message = v,
            _ => {}
        }
        rest = after;
    }
    if code != b"42601" {
        return None;
    }
    let err = refusals.take(std::str::from_utf8(message).ok()?)?;
    let mut out = BytesMut::new();
    backend::error_response(&mut out, &err);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_map_back_to_their_refusal_and_skip_discarded_ones() {
        let r = Refusals::new();
        let m0 = r.register(ClientError::error(SqlState::InsufficientPrivilege, "zero"));
        let m1 = r.register(ClientError::error(SqlState::InsufficientPrivilege, "one"));
        assert!(r.any_in_flight());
        // The server discarded m0 (earlier error in its pipeline) and reported m1.
        let msg = format!("syntax error at or near \"{m1}\"");
        assert_eq!(r.take(&msg).unwrap().message, "one");
        assert!(!r.any_in_flight());
        assert!(r.take(&format!("syntax error at or near \"{m0}\"")).is_none());
        // A client cannot forge another session's marker.
        assert!(r
            .take("syntax error at or near \"pgtp_refused_0000000000000000_1\"")
            .is_none());
    }

    #[test]
    fn pending_refusals_are_bounded_and_older_markers_still_map_to_a_refusal() {
        let r = Refusals::new();
        let markers: Vec<String> = (0..(MAX_PENDING_REFUSALS + 10))
            .map(|n| {
                r.register(ClientError::error(
                    SqlState::InsufficientPrivilege,
                    format!("refusal {n}"),
                ))
            })
            .collect();
        assert_eq!(r.pending.lock().unwrap().len(), MAX_PENDING_REFUSALS);
        // Every marker comes back in order; the first ten lost their details.
        for (n, m) in markers.iter().enumerate() {
            assert!(r.any_in_flight());
            let err = r.take(&format!("syntax error at or near \"{m}\"")).unwrap();
            assert_eq!(err.code, SqlState::InsufficientPrivilege);
            if n < 10 {
                assert_eq!(err.message, refusal_details_dropped().message);
            } else {
                assert_eq!(err.message, format!("refusal {n}"));
            }
        }
        assert!(!r.any_in_flight());
    }
}
