//! One pooled backend: an upstream session logged in with no tenant, the
//! proxy's pin statement prepared on it, and what the pool knows of its
//! state (tracked settings, prepared statements, who owns its unnamed
//! statement, its last transaction status).
//!
//! The messages the pool exchanges with it on its own (setup and the
//! settings read-back) are read with the same length cap and deadline as
//! the login: the server is trusted no more here than there.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::context::Binding;
use crate::protocol::frame::{self, write_message, HEADER_LEN};
use crate::stream::Stream;
use crate::tracked::{readback_sql, TRACKED_SETTINGS};
use crate::upstream::{Connector, PinValues, UpstreamError};

/// Name of the proxy's pin statement (and of the portal it runs in) on
/// every backend. Clients' statements are renamed to `pgtp_s<N>`, so no
/// client name can collide with it.
pub const PIN_STATEMENT: &str = "pgtp_pin";
/// Largest message accepted from the server in the pool's own exchanges.
const MAX_OWN_MESSAGE: usize = 1 << 20;
/// Deadline of the pool's own exchanges on an open backend.
pub const OWN_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Proxy-wide statements one backend keeps; older ones are closed.
pub const MAX_PREPARED_PER_BACKEND: usize = 2000;

/// The proxy-wide statements prepared on one backend, oldest first.
#[derive(Debug, Default)]
pub struct Prepared {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Prepared {
    /// Whether statement `id` is prepared here.
    pub fn has(&self, id: u64) -> bool {
        self.set.contains(&id)
    }

    /// Records that `id` is (being) prepared here.
    pub fn add(&mut self, id: u64) {
        if self.set.insert(id) {
            self.order.push_back(id);
        }
    }

    /// Records that `id` is not prepared here after all.
    pub fn remove(&mut self, id: u64) {
        if self.set.remove(&id) {
            self.order.retain(|x| *x != id);
        }
    }

    /// Statements over the cap, oldest first, removed from the record (the
    /// caller closes them on the backend).
    pub fn evict_over(&mut self, cap: usize) -> Vec<u64> {
        let mut out = Vec::new();
        while self.order.len() > cap {
            if let Some(id) = self.order.pop_front() {
                self.set.remove(&id);
                out.push(id);
            }
        }
        out
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether none.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// A pooled upstream session.
pub struct Backend {
    /// Pool-wide id.
    pub id: u64,
    /// Read half of the connection.
    pub reader: ReadHalf<Stream>,
    /// Write half of the connection.
    pub writer: WriteHalf<Stream>,
    /// Bytes read and not yet consumed.
    pub rbuf: BytesMut,
    /// The server's cancel key.
    pub key: Option<(i32, i32)>,
    /// What the server sees of the connection (proofs are bound to it).
    pub binding: Binding,
    /// ParameterStatus values of its login.
    pub login_params: Vec<(String, String)>,
    /// Current values of [`TRACKED_SETTINGS`], in order.
    pub tracked: Vec<String>,
    /// Their values right after login (the login role's defaults).
    pub login_tracked: Vec<String>,
    /// Proxy-wide statements prepared here.
    pub prepared: Prepared,
    /// (client session, Parse number) whose unnamed statement this
    /// backend holds, if any.
    pub unnamed_owner: Option<(u64, u64)>,
    /// Status of its last ReadyForQuery (`I`, `T` or `E`).
    pub status: u8,
    /// Held while a cancel is on its way here (see [`crate::cancel`]).
    pub cancel_lock: Arc<tokio::sync::Mutex<()>>,
    /// When it logged in.
    pub created: Instant,
    /// When it was last given back to the pool.
    pub idle_since: Instant,
}

impl Backend {
    /// Logs in a new backend, prepares the pin statement and reads the
    /// tracked settings' login values, in one round trip after the login.
    pub async fn open(connector: &Connector, id: u64) -> Result<Backend, UpstreamError> {
        let (up, binding) = connector.connect_unpinned().await?;
        let (reader, writer) = tokio::io::split(up.stream);
        let now = Instant::now();
        let mut b = Backend {
            id,
            reader,
            writer,
            rbuf: BytesMut::with_capacity(8 * 1024),
            key: up.key,
            binding,
            login_params: up.params,
            tracked: Vec::new(),
            login_tracked: Vec::new(),
            prepared: Prepared::default(),
            unnamed_owner: None,
            status: b'I',
            cancel_lock: Arc::new(tokio::sync::Mutex::new(())),
            created: now,
            idle_since: now,
        };
        let mut out = BytesMut::new();
        write_message(&mut out, b'P', |m| {
            m.put_slice(PIN_STATEMENT.as_bytes());
            m.put_u8(0);
            m.put_slice(pin_sql(connector.verifies_context()).as_bytes());
            m.put_u8(0);
            m.put_u16(0);
        });
        write_message(&mut out, b'S', |_| {});
        let readback = readback_sql();
        write_message(&mut out, b'Q', |m| {
            m.put_slice(readback.as_bytes());
            m.put_u8(0);
        });
        let replies = tokio::time::timeout(OWN_EXCHANGE_TIMEOUT, b.exchange(&out, 2))
            .await
            .map_err(|_| UpstreamError::Timeout(OWN_EXCHANGE_TIMEOUT))??;
        if let Some(err) = first_error(&replies) {
            return Err(UpstreamError::Protocol(format!("backend setup failed: {err}")));
        }
        b.tracked =
            tracked_values(&replies).ok_or_else(|| UpstreamError::Protocol("backend setup: no settings row".into()))?;
        b.login_tracked = b.tracked.clone();
        Ok(b)
    }

    /// Whether an idle backend is unusable: the server closed it (restart,
    /// `pg_terminate_backend`, idle timeout) or sent something unasked (its
    /// FATAL before closing). Looks without waiting.
    pub fn looks_closed(&mut self) -> bool {
        use std::future::Future;
        let mut read = std::pin::pin!(self.reader.read_buf(&mut self.rbuf));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        read.as_mut().poll(&mut cx).is_ready()
    }

    /// Writes `out`, then reads messages until `syncs` ReadyForQuery have
    /// arrived; returns them all (tag, body). For the pool's own exchanges
    /// only, when nothing else is outstanding; the caller bounds the time.
    pub async fn exchange(&mut self, out: &[u8], syncs: usize) -> Result<Vec<(u8, Bytes)>, UpstreamError> {
        let io = |what: &'static str| move |e: std::io::Error| UpstreamError::Io(format!("{what}: {e}"));
        self.writer.write_all(out).await.map_err(io("write"))?;
        self.writer.flush().await.map_err(io("write"))?;
        let mut replies = Vec::new();
        let mut seen = 0;
        while seen < syncs {
            let (tag, body) = loop {
                match frame::split_frame(&mut self.rbuf, MAX_OWN_MESSAGE) {
                    Ok(Some((tag, body))) => break (tag, body.freeze()),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(UpstreamError::Protocol(format!(
                            "invalid message from the server: {e:?}"
                        )))
                    }
                }
                if self.reader.read_buf(&mut self.rbuf).await.map_err(io("read"))? == 0 {
                    return Err(UpstreamError::Io("server closed the connection".into()));
                }
            };
            if tag == b'Z' {
                seen += 1;
                self.status = body.first().copied().unwrap_or(b'I');
            }
            replies.push((tag, body));
        }
        Ok(replies)
    }

    /// The Bind, Execute and Close that pin `pin` for the current
    /// transaction: they run the pin statement in a portal of its own, so a
    /// client's unnamed portal is left alone. Replies: BindComplete, one
    /// DataRow, CommandComplete, CloseComplete.
    pub fn pin_messages(pin: &PinValues) -> Bytes {
        let mut values: Vec<&str> = vec![&pin.organization, &pin.user];
        if let Some(p) = &pin.proof {
            values.push(p);
        }
        let mut out = BytesMut::with_capacity(256);
        write_message(&mut out, b'B', |m| {
            m.put_slice(PIN_STATEMENT.as_bytes());
            m.put_u8(0);
            m.put_slice(PIN_STATEMENT.as_bytes());
            m.put_u8(0);
            m.put_u16(0);
            m.put_u16(values.len() as u16);
            for v in &values {
                m.put_i32(v.len() as i32);
                m.put_slice(v.as_bytes());
            }
            m.put_u16(0);
        });
        write_message(&mut out, b'E', |m| {
            m.put_slice(PIN_STATEMENT.as_bytes());
            m.put_u8(0);
            m.put_i32(0);
        });
        write_message(&mut out, b'C', |m| {
            m.put_u8(b'P');
            m.put_slice(PIN_STATEMENT.as_bytes());
            m.put_u8(0);
        });
        out.freeze()
    }
}

/// The pin in the `set_local` form: `BEGIN`, then one `SET LOCAL` per
/// setting, each a Query of its own: Citus forwards the whole query string
/// of a `SET LOCAL` to its workers, so the string must hold that statement
/// alone. Returns the messages and how many Queries they are (each answered
/// by CommandComplete and ReadyForQuery). Values are quoted as SQL literals.
pub fn set_local_pin_messages(pin: &PinValues) -> (Bytes, usize) {
    let mut settings = vec![
        (crate::pin::ORG_SETTING, pin.organization.as_str()),
        (crate::pin::USER_SETTING, pin.user.as_str()),
    ];
    if let Some(p) = &pin.proof {
        settings.push((crate::context::PROOF_SETTING, p.as_str()));
    }
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(&crate::screen::query_message("BEGIN"));
    for (name, value) in &settings {
        out.put_slice(&crate::screen::query_message(&format!(
            "SET LOCAL {name} = {}",
            sql_literal(value)
        )));
    }
    (out.freeze(), settings.len() + 1)
}

/// `value` as an SQL string literal, right whatever
/// `standard_conforming_strings` is: quotes doubled, and with a backslash
/// in it, the `E''` form with backslashes doubled. A NUL (which no value
/// the proxy makes contains) is dropped: a Query cannot carry it.
fn sql_literal(value: &str) -> String {
    let clean: String = value.chars().filter(|c| *c != '\0').collect();
    let quoted = clean.replace('\'', "''");
    if quoted.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// The pin statement: the tenant, the user and (with verification on) the
/// proof, each `set_config(..., true)`, so they last exactly as long as the
/// transaction.
pub fn pin_sql(with_proof: bool) -> String {
    let mut sql = format!(
        "SELECT pg_catalog.set_config('{}', $1, true), pg_catalog.set_config('{}', $2, true)",
        crate::pin::ORG_SETTING,
        crate::pin::USER_SETTING
    );
    if with_proof {
        sql.push_str(&format!(
            ", pg_catalog.set_config('{}', $3, true)",
            crate::context::PROOF_SETTING
        ));
    }
    sql
}

/// The message of the first ErrorResponse among `replies`.
pub fn first_error(replies: &[(u8, Bytes)]) -> Option<String> {
    replies
        .iter()
        .find(|(t, _)| *t == b'E')
        .map(|(_, body)| error_field(body, b'M').unwrap_or_else(|| "unknown error".into()))
}

/// One field of an ErrorResponse/NoticeResponse body.
pub fn error_field(body: &[u8], field: u8) -> Option<String> {
    let mut rest = body;
    while let Some((&t, after)) = rest.split_first() {
        if t == 0 {
            return None;
        }
        let (v, after) = frame::cstr(after)?;
        if t == field {
            return Some(String::from_utf8_lossy(v).into_owned());
        }
        rest = after;
    }
    None
}

/// The tracked settings' values from the DataRow of a read-back (the last
/// DataRow among `replies` with one column per tracked setting).
pub fn tracked_values(replies: &[(u8, Bytes)]) -> Option<Vec<String>> {
    replies
        .iter()
        .rev()
        .filter(|(t, _)| *t == b'D')
        .find_map(|(_, body)| data_row(body).filter(|v| v.len() == TRACKED_SETTINGS.len()))
}

/// The columns of a DataRow body as text (a NULL reads as "").
pub fn data_row(body: &[u8]) -> Option<Vec<String>> {
    let (n, mut rest) = body.split_first_chunk::<2>()?;
    let n = u16::from_be_bytes(*n) as usize;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, after) = rest.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            out.push(String::new());
            rest = after;
            continue;
        }
        let len = len as usize;
        let v = after.get(..len)?;
        out.push(String::from_utf8(v.to_vec()).ok()?);
        rest = after.get(len..)?;
    }
    Some(out)
}

/// Bytes of a frame header plus body, for size accounting.
pub fn frame_len(body: &[u8]) -> usize {
    HEADER_LEN + body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_local_pin_is_begin_then_one_query_per_setting() {
        let (bytes, n) = set_local_pin_messages(&PinValues {
            organization: "aaaaaaaa-0000-4000-8000-000000000001".into(),
            user: String::new(),
            proof: Some("v1,k-1,100,10.0.0.1,5432,AbC+/=".into()),
        });
        assert_eq!(n, 4);
        let mut rest = &bytes[..];
        let mut queries = Vec::new();
        while !rest.is_empty() {
            assert_eq!(rest[0], b'Q');
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            let sql = &rest[5..1 + len];
            assert_eq!(sql.last(), Some(&0));
            queries.push(String::from_utf8(sql[..sql.len() - 1].to_vec()).unwrap());
            rest = &rest[1 + len..];
        }
        assert_eq!(
            queries,
            [
                "BEGIN",
                "SET LOCAL app.current_organization_id = 'aaaaaaaa-0000-4000-8000-000000000001'",
                "SET LOCAL app.current_user_id = ''",
                "SET LOCAL app.context_proof = 'v1,k-1,100,10.0.0.1,5432,AbC+/='",
            ]
        );
        let (_, n) = set_local_pin_messages(&PinValues {
            organization: "o".into(),
            user: "u".into(),
            proof: None,
        });
        assert_eq!(n, 3);
    }

    #[test]
    fn literals_are_quoted_whatever_standard_conforming_strings_says() {
        assert_eq!(sql_literal("abc"), "'abc'");
        assert_eq!(sql_literal("a'b"), "'a''b'");
        assert_eq!(sql_literal("a\\'b"), "E'a\\\\''b'");
        assert_eq!(sql_literal("a\0b"), "'ab'");
    }

    #[test]
    fn data_rows_decode_and_bad_ones_are_refused() {
        let mut body = vec![0, 2];
        body.extend_from_slice(&3i32.to_be_bytes());
        body.extend_from_slice(b"abc");
        body.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(data_row(&body), Some(vec!["abc".into(), String::new()]));
        assert_eq!(data_row(&body[..6]), None);
        assert_eq!(data_row(&[0, 1, 0, 0, 0, 9, b'x']), None);
    }

    #[test]
    fn prepared_evicts_oldest_first() {
        let mut p = Prepared::default();
        for i in 0..5 {
            p.add(i);
        }
        p.add(2);
        p.remove(3);
        assert_eq!(p.evict_over(2), vec![0, 1]);
        assert!(p.has(2) && p.has(4) && !p.has(0));
    }
}
