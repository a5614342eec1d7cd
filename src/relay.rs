//! The hot loop: bytes flow client ⇄ upstream as whole original frames, in
//! batches (one write per read). Only three client message types are decoded,
//! and only to hand their SQL to the [`guard`](crate::guard): Query, Parse and
//! FunctionCall. From upstream, only NotificationResponse (channel unscoping)
//! and, while a refusal is in flight, ErrorResponse are decoded.
//!
//! # How a refusal stays protocol-correct
//! A refused message is not dropped: it is replaced, in place, by a message of
//! the same kind whose text is a unique marker that cannot parse. The server
//! raises a syntax error for it at exactly the point where the real statement
//! would have run, so everything PostgreSQL does after an error happens for
//! real: extended-protocol messages are discarded until Sync, ReadyForQuery
//! carries the right transaction status, and an open transaction block is
//! aborted (the client then sees 25P02 until ROLLBACK). On the way back, the
//! ErrorResponse carrying the marker is swapped for the proxy's 42501 error.
//! Nothing of the refused statement ever reaches the server.
//!
//! Client bytes are untrusted: every length is checked against the configured
//! cap before buffering, unknown message types end the session (fail closed).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{ClientError, SqlState};
use crate::guard::{Guard, TenantScope, Verdict};
use crate::metrics::Direction;
use crate::protocol::backend;
use crate::protocol::frame::{cstr, peek_header, FrameError, HEADER_LEN};

/// Read buffer size per direction.
const READ_CHUNK: usize = 8 * 1024;
/// Largest upstream message decoded for inspection; larger ones pass as is.
const MAX_INSPECTED_UPSTREAM: usize = 1 << 20;
/// Refusals remembered while their marker error has not come back.
const MAX_PENDING_REFUSALS: usize = 1024;

/// What a session's relay needs.
pub struct RelayCtx {
    /// Statement policy.
    pub guard: Arc<Guard>,
    /// This session's tenant scope (notification channels).
    pub scope: TenantScope,
    /// Largest client message accepted, in bytes.
    pub max_message: usize,
    /// When the token stops being valid (expiry plus leeway).
    pub expires_at: Option<Instant>,
    /// Becomes `true` when the proxy's drain time is over.
    pub close_now: watch::Receiver<bool>,
}

/// How a relay ended.
#[derive(Debug)]
pub enum End {
    /// The client sent Terminate.
    ClientClosed,
    /// The client's connection ended without Terminate (closed, reset, or
    /// failed): work it left running upstream should be cancelled.
    ClientVanished,
    /// The upstream closed (after forwarding its own last message).
    UpstreamClosed {
        /// Whether its last message was an ErrorResponse (it told the client why).
        told_client: bool,
    },
    /// The proxy ended the session with this FATAL error.
    Fatal(ClientError),
    /// A socket failed.
    Io(String),
}

/// Refusals whose marker error has not come back from the server yet.
///
/// Markers are numbered in the order they are sent, and the server answers
/// them in that order (or discards some after an earlier error), so one
/// counter says which are still outstanding. Only the newest
/// [`MAX_PENDING_REFUSALS`] keep their own error; an older one that comes
/// back gets [`refusal_details_dropped`], never the server's raw 42601.
struct Refusals {
    /// Marker prefix unique to this session, e.g. `pgtp_refused_1f2e…_`.
    prefix: String,
    /// Number of the next marker.
    next: AtomicUsize,
    /// Every marker below this number has come back or was discarded.
    resolved: AtomicUsize,
    pending: Mutex<VecDeque<(usize, ClientError)>>,
}

impl Refusals {
    fn new() -> Refusals {
        Refusals {
            prefix: format!("pgtp_refused_{:016x}_", rand::random::<u64>()),
            next: AtomicUsize::new(0),
            resolved: AtomicUsize::new(0),
            pending: Mutex::new(VecDeque::new()),
        }
    }

    /// Records `err` and returns the unparsable marker statement to send instead.
    fn register(&self, err: ClientError) -> String {
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
    fn take(&self, message: &str) -> Option<ClientError> {
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

    fn any_in_flight(&self) -> bool {
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

/// A piece of an outgoing batch: a range of the read buffer, or new bytes.
enum Piece {
    Range(usize, usize),
    Owned(Bytes),
}

/// Relays until either side ends. The caller writes [`End::Fatal`] errors to
/// the client (the client writer is free again by then).
pub async fn run<CR, CW, UR, UW>(cr: &mut CR, cw: &mut CW, ur: &mut UR, uw: &mut UW, ctx: &mut RelayCtx) -> End
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let refusals = Refusals::new();
    let guard = ctx.guard.clone();
    let c2u = client_to_upstream(cr, uw, &guard, &ctx.scope, ctx.max_message, &refusals);
    let u2c = upstream_to_client(ur, cw, &ctx.scope, &refusals);
    // Expiry and drain are raced against both directions, so they fire
    // whatever either side is blocked on (a client that stops reading, an
    // upstream that stops reading): the blocked write is dropped with it.
    let expiry = async {
        match ctx.expires_at {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    let draining = async {
        // A closed channel (the proxy stopping anyway) never ends the session.
        if ctx.close_now.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        end = c2u => end,
        end = u2c => end,
        () = expiry => End::Fatal(
            ClientError::fatal(SqlState::InvalidPassword, "terminating connection because the token has expired")
                .with_hint("reconnect with a fresh token"),
        ),
        () = draining => End::Fatal(ClientError::fatal(
            SqlState::AdminShutdown,
            "terminating connection because pg-tenant-proxy is shutting down",
        )),
    }
}

fn frame_error(e: FrameError) -> End {
    End::Fatal(match e {
        FrameError::BadLength(l) => {
            ClientError::fatal(SqlState::ProtocolViolation, format!("invalid message length {l}"))
        }
        FrameError::TooLarge { total, max } => ClientError::fatal(
            SqlState::ProgramLimitExceeded,
            format!("message of {total} bytes is larger than this proxy's limit of {max} bytes"),
        ),
    })
}

/// One read's worth of frames being scanned, and what to send for them:
/// the scanned bytes as they are, except frames replaced on the way.
#[derive(Default)]
struct Batch {
    /// Scanned up to here (the next frame header, or the end of the buffer).
    pos: usize,
    /// Start of the bytes not yet covered by `pieces`.
    seg: usize,
    /// Empty unless a frame was replaced: then the whole batch, in order.
    pieces: Vec<Piece>,
}

impl Batch {
    fn start(&mut self) {
        self.pos = 0;
        self.seg = 0;
        self.pieces.clear();
    }

    /// Streams the rest of a pass-through frame (`skip` bytes still to come)
    /// from a buffer of `len` bytes. False when the frame goes on past it.
    #[inline]
    fn pass(&mut self, skip: &mut usize, len: usize) -> bool {
        let take = (*skip).min(len - self.pos);
        self.pos += take;
        *skip -= take;
        *skip == 0
    }

    /// Whether the whole `total`-byte frame at `pos` is buffered; if not,
    /// room for it is reserved so the next read can complete it.
    #[inline]
    fn whole(&self, buf: &mut BytesMut, total: usize) -> bool {
        let have = buf.len() - self.pos;
        if have < total {
            buf.reserve(total - have);
            return false;
        }
        true
    }

    /// Sends `replacement` (nothing if empty) instead of the `total`-byte
    /// frame at `pos`, and moves past it.
    fn replace(&mut self, total: usize, replacement: Bytes) {
        self.pieces.push(Piece::Range(self.seg, self.pos));
        if !replacement.is_empty() {
            self.pieces.push(Piece::Owned(replacement));
        }
        self.pos += total;
        self.seg = self.pos;
    }

    /// Sends `replacement` instead of the `total`-byte frame at `pos`, of which
    /// only the bytes up to `len` have arrived; returns how many of its bytes
    /// are still to come (dropped as they arrive, see [`Batch::drop_rest`]).
    fn replace_streamed(&mut self, total: usize, replacement: Bytes, len: usize) -> usize {
        self.pieces.push(Piece::Range(self.seg, self.pos));
        self.pieces.push(Piece::Owned(replacement));
        let take = total.min(len - self.pos);
        self.pos += take;
        self.seg = self.pos;
        total - take
    }

    /// Drops the rest of a replaced frame (`drop` bytes still to come) from a
    /// buffer of `len` bytes. False when the frame goes on past it.
    fn drop_rest(&mut self, drop: &mut usize, len: usize) -> bool {
        // A piece, even an empty one, makes `flush` write only the pieces.
        self.pieces.push(Piece::Range(self.seg, self.pos));
        let take = (*drop).min(len - self.pos);
        self.pos += take;
        self.seg = self.pos;
        *drop -= take;
        *drop == 0
    }

    /// Takes the scanned bytes off `buf` and writes them, with replacements,
    /// in one batch.
    async fn flush<W: AsyncWrite + Unpin>(&mut self, buf: &mut BytesMut, w: &mut W) -> std::io::Result<()> {
        let chunk = buf.split_to(self.pos).freeze();
        if self.pieces.is_empty() {
            w.write_all(&chunk).await?;
        } else {
            self.pieces.push(Piece::Range(self.seg, self.pos));
            for p in &self.pieces {
                match p {
                    Piece::Range(a, b) if a < b => w.write_all(&chunk[*a..*b]).await?,
                    Piece::Range(..) => {}
                    Piece::Owned(bytes) => w.write_all(bytes).await?,
                }
            }
        }
        w.flush().await
    }
}

/// Client → upstream: frames pass as they are, except Query/Parse/FunctionCall
/// which the guard decides on first.
async fn client_to_upstream<R, W>(
    cr: &mut R,
    uw: &mut W,
    guard: &Guard,
    scope: &TenantScope,
    max_message: usize,
    refusals: &Refusals,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Bytes of a pass-through frame still to come; streamed, never buffered whole.
    let mut skip = 0usize;
    // Bytes of a refused oversized frame still to come; dropped, never buffered.
    let mut drop = 0usize;
    let mut batch = Batch::default();
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        match cr.read_buf(&mut buf).await {
            // Gone without Terminate; the caller cancels what it left running.
            Ok(0) => return End::ClientVanished,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "client read failed");
                return End::ClientVanished;
            }
        }
        let mut terminate = false;
        batch.start();
        loop {
            if drop > 0 && !batch.drop_rest(&mut drop, buf.len()) {
                break;
            }
            if skip > 0 && !batch.pass(&mut skip, buf.len()) {
                break;
            }
            let h = match peek_header(&buf, batch.pos, max_message) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return frame_error(e),
            };
            match h.tag {
                b'Q' | b'P' if h.total > max_buffered_statement(h.tag, guard.max_statement_bytes()) => {
                    let err = oversized(h.tag, h.total, guard.max_statement_bytes());
                    let marker = refusals.register(err);
                    let replacement = if h.tag == b'Q' {
                        query_message(&marker)
                    } else {
                        parse_message(b"", &marker, &0i16.to_be_bytes())
                    };
                    drop = batch.replace_streamed(h.total, replacement, buf.len());
                }
                b'Q' | b'P' | b'F' => {
                    if !batch.whole(&mut buf, h.total) {
                        break;
                    }
                    let body = &buf[batch.pos + HEADER_LEN..batch.pos + h.total];
                    match inspect(h.tag, body, guard, scope, refusals) {
                        Some(replacement) => batch.replace(h.total, replacement),
                        None => batch.pos += h.total,
                    }
                }
                b'X' => {
                    // Forwarded whole, like the server reads it: a Terminate
                    // declaring a body waits for it (within the cap).
                    if !batch.whole(&mut buf, h.total) {
                        break;
                    }
                    batch.pos += h.total;
                    terminate = true;
                    break;
                }
                // Bind, Close, CopyData, CopyDone, CopyFail, Describe, Execute, Flush, Sync.
                b'B' | b'C' | b'd' | b'c' | b'f' | b'D' | b'E' | b'H' | b'S' => skip = h.total,
                other => {
                    return End::Fatal(ClientError::fatal(
                        SqlState::ProtocolViolation,
                        format!("invalid frontend message type {other}"),
                    ))
                }
            }
        }
        let consumed = batch.pos;
        if let Err(e) = batch.flush(&mut buf, uw).await {
            return End::Io(format!("upstream write: {e}"));
        }
        crate::metrics::relayed(Direction::ClientToUpstream, consumed);
        if terminate {
            let _ = uw.shutdown().await;
            return End::ClientClosed;
        }
    }
}

/// Most a Parse message adds to its statement text: name (PostgreSQL keeps
/// 63 bytes of it; 1 KiB allowed), two NULs, and up to 65,535 parameter types.
const MAX_PARSE_OVERHEAD: usize = 1024 + 2 + 2 + 4 * 65_535;

/// Largest Query or Parse frame buffered whole for the guard; a larger one
/// holds a statement over the guard's limit and is refused as it streams by.
fn max_buffered_statement(tag: u8, max_statement_bytes: usize) -> usize {
    let overhead = if tag == b'Q' { 1 } else { MAX_PARSE_OVERHEAD };
    max_statement_bytes.saturating_add(overhead).saturating_add(HEADER_LEN)
}

/// The refusal for a Query or Parse frame too large to buffer.
fn oversized(tag: u8, total: usize, max_statement_bytes: usize) -> ClientError {
    let text_bytes = if tag == b'Q' {
        total.saturating_sub(HEADER_LEN + 1)
    } else {
        total.saturating_sub(HEADER_LEN + MAX_PARSE_OVERHEAD)
    };
    crate::guard::statement_too_long(text_bytes, max_statement_bytes)
}

/// Decides on one Query ('Q'), Parse ('P') or FunctionCall ('F') body.
/// `None`: forward it unchanged. `Some(bytes)`: forward these bytes instead.
fn inspect(tag: u8, body: &[u8], guard: &Guard, scope: &TenantScope, refusals: &Refusals) -> Option<Bytes> {
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

fn query_message(sql: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(sql.len() + 6);
    crate::protocol::frame::write_message(&mut out, b'Q', |b| {
        b.put_slice(sql.as_bytes());
        b.put_u8(0);
    });
    out.freeze()
}

fn parse_message(name: &[u8], sql: &str, tail: &[u8]) -> Bytes {
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

/// Upstream → client: frames pass as they are, except NotificationResponse
/// (channel unscoped) and the ErrorResponse of a refusal marker (replaced).
async fn upstream_to_client<R, W>(ur: &mut R, cw: &mut W, scope: &TenantScope, refusals: &Refusals) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut skip = 0usize;
    let mut last_tag = 0u8;
    let mut batch = Batch::default();
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        match ur.read_buf(&mut buf).await {
            Ok(0) => {
                return End::UpstreamClosed {
                    told_client: last_tag == b'E',
                }
            }
            Ok(_) => {}
            Err(e) => return End::Io(format!("upstream read: {e}")),
        }
        batch.start();
        loop {
            if skip > 0 && !batch.pass(&mut skip, buf.len()) {
                break;
            }
            let h = match peek_header(&buf, batch.pos, usize::MAX) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) => {
                    return End::Fatal(ClientError::fatal(
                        SqlState::ConnectionFailure,
                        "the database server sent an invalid message",
                    ))
                }
            };
            last_tag = h.tag;
            let inspect = match h.tag {
                b'A' => true,
                b'E' => refusals.any_in_flight(),
                _ => false,
            } && h.total <= MAX_INSPECTED_UPSTREAM;
            if !inspect {
                skip = h.total;
                continue;
            }
            if !batch.whole(&mut buf, h.total) {
                break;
            }
            let body = &buf[batch.pos + HEADER_LEN..batch.pos + h.total];
            let replacement = if h.tag == b'A' {
                unscope_notification(body, scope)
            } else {
                replace_marker_error(body, refusals)
            };
            match replacement {
                Some(r) => batch.replace(h.total, r),
                None => batch.pos += h.total,
            }
        }
        let consumed = batch.pos;
        if let Err(e) = batch.flush(&mut buf, cw).await {
            return End::Io(format!("client write: {e}"));
        }
        crate::metrics::relayed(Direction::UpstreamToClient, consumed);
    }
}

/// NotificationResponse body: int32 pid, channel, payload. Returns the frame
/// with the tenant prefix removed, an empty frame to drop it, or `None` to
/// pass it unchanged (never: every channel this session hears is scoped).
fn unscope_notification(body: &[u8], scope: &TenantScope) -> Option<Bytes> {
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
fn replace_marker_error(body: &[u8], refusals: &Refusals) -> Option<Bytes> {
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

/// The client-to-upstream loop over bytes in memory, for the fuzz targets in
/// `fuzz/`. Not a stable interface.
#[doc(hidden)]
pub mod probe {
    use super::{End, Refusals};
    use crate::guard::{Guard, TenantScope};
    use crate::protocol::in_memory::{ready, Chunks};

    /// What the loop sent upstream and how it ended.
    #[derive(Debug)]
    pub struct Relayed {
        /// Every byte written upstream, in order.
        pub upstream: Vec<u8>,
        /// Why the loop stopped (the reads running out is `ClientVanished`).
        pub end: End,
        /// This run's refusal-marker prefix (random per session).
        pub marker_prefix: String,
    }

    /// Runs the client → upstream loop over `chunks` (one client read each)
    /// until they run out, the client terminates or the session fails.
    pub fn client_to_upstream(chunks: &[&[u8]], guard: &Guard, scope: &TenantScope, max_message: usize) -> Relayed {
        let mut reader = Chunks::new(chunks);
        let mut upstream = Vec::new();
        let refusals = Refusals::new();
        let end = ready(super::client_to_upstream(
            &mut reader,
            &mut upstream,
            guard,
            scope,
            max_message,
            &refusals,
        ));
        Relayed {
            upstream,
            end,
            marker_prefix: refusals.prefix.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminate_is_forwarded_only_whole_in_any_reads() {
        let guard = Guard::new(&crate::guard::GuardConfig::default()).unwrap();
        let scope = TenantScope::new(uuid::Uuid::from_u128(1));
        // A Terminate declaring 3 bytes of body: sent whole, in one read or
        // split at every byte, and the session ends as the client asked.
        let frame: &[u8] = b"X\0\0\0\x07abc";
        let bytewise: Vec<&[u8]> = frame.chunks(1).collect();
        for reads in [vec![frame], vec![&frame[..5], &frame[5..]], bytewise] {
            let r = probe::client_to_upstream(&reads, &guard, &scope, 1 << 20);
            assert_eq!(r.upstream, frame);
            assert!(matches!(r.end, End::ClientClosed), "{:?}", r.end);
        }
        // Its body never comes: nothing is forwarded, the client vanished.
        let r = probe::client_to_upstream(&[&frame[..6]], &guard, &scope, 1 << 20);
        assert!(r.upstream.is_empty());
        assert!(matches!(r.end, End::ClientVanished), "{:?}", r.end);
        // Over the cap it is refused like any frame.
        let r = probe::client_to_upstream(&[frame], &guard, &scope, 7);
        assert!(matches!(r.end, End::Fatal(ref e) if e.code == SqlState::ProgramLimitExceeded));
    }

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
