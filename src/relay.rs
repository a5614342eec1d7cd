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

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{ClientError, SqlState};
use crate::guard::{Guard, TenantScope};
use crate::metrics::Direction;
use crate::protocol::frame::{peek_header, FrameError, HEADER_LEN};
use crate::screen::{
    inspect, max_buffered_statement, oversized, parse_message, query_message, replace_marker_error,
    unscope_notification, Refusals,
};

/// Read buffer size per direction.
const READ_CHUNK: usize = 8 * 1024;
/// Largest upstream message decoded for inspection; larger ones pass as is.
const MAX_INSPECTED_UPSTREAM: usize = 1 << 20;

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
    use crate::error::SqlState;

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
}
