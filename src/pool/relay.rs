//! A client session in transaction pool mode: its messages go to whichever
//! backend it holds for the current transaction, and the tenant is pinned
//! inside each transaction.
//!
//! # Holding and giving back
//! A backend is taken from the pool when a client message needs one and
//! given back once the backend reported ReadyForQuery `I`, every reply the
//! client is owed has arrived, and the client sent nothing since its last
//! Sync (or Query). Replies are matched to requests with a queue
//! ([`Expect`]): one entry per message that gets replies, in order, so the
//! proxy knows which replies belong to the client, which to its own
//! injected messages (dropped), and where to put replies it makes itself.
//!
//! # The pin
//! Before the first statement of every transaction, the proxy runs its own
//! prepared pin statement (`set_config(..., true)` of the tenant, user and
//! proof) in a portal of its own, in the same transaction and in the same
//! write as the client's message: no extra round trip, and the client's SQL
//! text (and so every error position) is untouched.
//! - Simple Query: sent once every earlier reply has arrived, so the backend
//!   status is known; pinned when the status is `I` (in `T` the transaction
//!   was pinned when it began, in `E` nothing runs).
//! - Extended protocol: before the first Execute after the start of each
//!   Sync block and after each statement that ends a transaction (COMMIT,
//!   ROLLBACK, END, ABORT), never right before such a statement (in a failed
//!   transaction the injected statement would fail and the server would
//!   then skip the client's ROLLBACK). A second pin in one transaction sets
//!   the same values again.
//! - Between transactions the backend keeps its login values: no tenant.
//!
//! In the `set_local` pin form (for Citus) the pin is instead `BEGIN` and one
//! `SET LOCAL` Query per setting, sent where a simple Query or a Sync block
//! begins outside a transaction, once every earlier reply has arrived. The
//! proxy's block ([`Wrap`]) is committed after the client's statements (in
//! the same write when none may begin a block or a COPY), and the client is
//! told `I`; a client `BEGIN` inside it (PostgreSQL's warning 25001, dropped)
//! makes it the client's transaction.
//!
//! # Session state
//! - Tracked settings ([`crate::tracked`]): read back after a transaction
//!   that changed one, replayed (pipelined, replies dropped) on a backend
//!   whose values differ from the client's.
//! - Named prepared statements: renamed proxy-wide ([`super::statements`]),
//!   re-prepared on a backend that lacks them; ParseComplete and
//!   CloseComplete are answered by the proxy where the backend is not asked.
//! - The unnamed statement: re-prepared when another session's is in place.
//! - `DISCARD ALL` outside a transaction is answered by the proxy: the
//!   client's settings return to its startup values and its statements are
//!   forgotten.
//! - Everything else that would outlive the transaction is refused by the
//!   guard (0A000).
//!
//! Client and server bytes are untrusted: every length is capped, replies
//! that match no request end the session (fail closed).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::backend::{data_row, Backend, MAX_PREPARED_PER_BACKEND};
use super::statements::{Statement, TxnEffect};
use super::{Lease, Pool, PoolError};
use crate::auth::Identity;
use crate::cancel::{HeldBackend, PooledTarget};
use crate::error::{ClientError, SqlState};
use crate::guard::{Effects, Guard, TenantScope, Verdict};
use crate::metrics::{self, Direction};
use crate::protocol::backend as wire;
use crate::protocol::frame::{cstr, write_message, FrameError};
use crate::relay::End;
use crate::screen::{parse_message, query_message, replace_marker_error, unscope_notification, Refusals};
use crate::tracked::{readback_sql, replay_sql, TRACKED_SETTINGS};
use crate::upstream::PinValues;

/// Read size per direction while a backend is held.
const READ_CHUNK: usize = 16 * 1024;
/// Read size of a session between transactions: idle sessions are most of
/// them, so they keep little memory.
const IDLE_READ_CHUNK: usize = 1024;
/// Pin messages a session keeps, for the backends it used last.
const MAX_CACHED_PINS: usize = 4;
/// Output buffer kept between transactions; a larger one is freed.
const KEPT_OUTPUT: usize = 4096;
/// Buffered output past which the side producing it is not read.
const HIGH_WATER: usize = 256 * 1024;
/// Largest server message accepted.
const MAX_SERVER_MESSAGE: usize = 1 << 30;
/// Longest wait for a last write of a session (replies owed to the client,
/// the Terminate to a backend that is not given back).
const LAST_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Name given to the marker Parse of a refused extended-protocol message:
/// its Parse always fails, so nothing of that name is ever created.
const REFUSED_STATEMENT: &[u8] = b"pgtp_refused";

/// What a pooled session needs.
pub struct PooledCtx {
    /// Statement policy (built for transaction pool mode).
    pub guard: Arc<Guard>,
    /// This session's tenant scope.
    pub scope: TenantScope,
    /// The verified token's identity (pinned per transaction).
    pub identity: Identity,
    /// Largest client message accepted, in bytes.
    pub max_message: usize,
    /// When the token stops being valid.
    pub expires_at: Option<Instant>,
    /// Becomes `true` when the proxy's drain time is over.
    pub close_now: watch::Receiver<bool>,
    /// Where this session's cancel requests go.
    pub cancel: Arc<PooledTarget>,
    /// This session's id (owner of unnamed statements on backends).
    pub session_id: u64,
    /// The client's tracked settings at the start of the session.
    pub baseline: Vec<String>,
}

/// What a reply belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Parse,
    Bind,
    DescribeStatement,
    DescribePortal,
    Execute,
    Close,
    Sync,
    Query,
}

impl Reply {
    /// Whether `tag` is the last reply to this request.
    fn ends_with(self, tag: u8) -> bool {
        match self {
            Reply::Parse => tag == b'1',
            Reply::Bind => tag == b'2',
            Reply::DescribeStatement | Reply::DescribePortal => tag == b'T' || tag == b'n',
            Reply::Execute => matches!(tag, b'C' | b'I' | b's'),
            Reply::Close => tag == b'3',
            Reply::Sync | Reply::Query => tag == b'Z',
        }
    }

    /// Whether the server answers it even after an error (until then it
    /// skips every extended-protocol message).
    fn survives_error(self) -> bool {
        matches!(self, Reply::Sync | Reply::Query)
    }
}

/// What the proxy does when a skipped Parse or Close is dropped after an
/// error (the server skipped the client's message, so its effect undone).
#[derive(Debug)]
enum Undo {
    None,
    /// The client's Parse of this name did not happen.
    Unprepare(Vec<u8>),
    /// The client's Close of this name did not happen.
    Restore(Vec<u8>, Arc<Statement>),
}

/// One request whose replies are still to come, in order.
#[derive(Debug)]
enum Expect {
    /// A client message; its replies go to the client.
    Client(Reply),
    /// A client Parse of proxy-wide statement `id`, sent to the backend.
    ClientParse { id: u64, name: Option<Vec<u8>> },
    /// A message of the proxy's own; replies are dropped, errors forwarded.
    Own(Reply),
    /// A Parse the proxy injected for statement `id` (dropped on error).
    OwnParse { id: u64 },
    /// The proxy's settings replay or read-back (a Query): replies dropped,
    /// a read-back's row kept.
    OwnQuery { readback: bool, report: bool },
    /// A reply the proxy makes itself when everything before it arrived.
    Fake(Bytes, Undo),
    /// Where the client ended a COPY FROM STDIN (CopyDone or CopyFail): a
    /// Sync sent before it, while the server is in copy-in mode, is ignored
    /// by the server and gets no ReadyForQuery.
    CopyEnd,
    /// The CommandComplete of a `DISCARD ALL` the proxy answers; the
    /// client's session is reset when it is sent (not if an earlier error
    /// made the server skip the rest of the block).
    FakeDiscard,
    /// The `COMMIT` (a Query) that ends a transaction the proxy opened in
    /// the `set_local` pin form: its CommandComplete is dropped, an error is
    /// the client's (a deferred constraint, a serialization failure), and
    /// its ReadyForQuery answers the client's Query or Sync.
    Commit,
}

impl Expect {
    fn reply(&self) -> Option<Reply> {
        match self {
            Expect::Client(r) | Expect::Own(r) => Some(*r),
            Expect::ClientParse { .. } | Expect::OwnParse { .. } => Some(Reply::Parse),
            Expect::OwnQuery { .. } | Expect::Commit => Some(Reply::Query),
            Expect::Fake(..) | Expect::FakeDiscard | Expect::CopyEnd => None,
        }
    }

    fn is_own(&self) -> bool {
        matches!(self, Expect::Own(_) | Expect::OwnParse { .. } | Expect::OwnQuery { .. })
    }
}

/// A client's unnamed statement.
struct Unnamed {
    /// The Parse message as sent (guard-checked, possibly rewritten).
    parse: Bytes,
    effect: TxnEffect,
    /// Parse number, to tell whose is in place on a backend.
    seq: u64,
}

/// A transaction block the proxy opened (`set_local` pin form) for the
/// client's statements, which the client does not know is open.
#[derive(Debug, Default)]
struct Wrap {
    /// The client's own BEGIN ran inside it (PostgreSQL's warning 25001,
    /// dropped): the block is the client's transaction now.
    client_began: bool,
    /// The proxy's COMMIT is on its way.
    commit_sent: bool,
}

/// Everything one pooled session keeps.
struct Session<'p> {
    pool: &'p Arc<Pool>,
    ctx: PooledCtx,
    refusals: Refusals,
    /// The client's current values of the tracked settings.
    tracked: Vec<String>,
    /// Named statements, by the client's name.
    statements: HashMap<Vec<u8>, Arc<Statement>>,
    unnamed: Option<Unnamed>,
    parse_seq: u64,
    /// Portals the client bound, with what each does to its transaction.
    portals: HashMap<Vec<u8>, TxnEffect>,
    /// Statements (by client name, "" for the unnamed one) and portals that
    /// are `DISCARD ALL`, which the proxy answers itself.
    discard_statements: std::collections::HashSet<Vec<u8>>,
    discard_portals: std::collections::HashSet<Vec<u8>>,
    // --- the current checkout ---
    lease: Option<Lease>,
    /// Pin in the `set_local` form (BEGIN and SET LOCAL queries).
    set_local: bool,
    /// The pin messages per backend (they depend on its binding), with how
    /// many Queries they are (0: the prepared `set_config` form); the one
    /// of the current lease is `pin`.
    pins: HashMap<u64, (Bytes, usize)>,
    pin: Option<(u64, Bytes, usize)>,
    /// `set_local`: the block the proxy opened, while it is open.
    wrap: Option<Wrap>,
    /// `set_local`: a message of the current Sync block reached the backend.
    block_open: bool,
    /// `set_local`: no statement executed in this Sync block may open a
    /// block of its own or start a COPY (the COMMIT can go with the Sync).
    block_plain: bool,
    /// `set_local`: a statement in this Sync block ended the transaction.
    block_ended: bool,
    queue: VecDeque<Expect>,
    /// Messages sent since the last Sync or Query.
    unsynced: bool,
    /// The current Sync block has been pinned (and no transaction ended since).
    pinned_block: bool,
    /// A transaction on this lease changed tracked settings.
    touched: bool,
    /// ... or ran RESET ALL (the client's startup values come back).
    reset_all: bool,
    /// After a refused checkout: drop client messages up to the next Sync.
    skip_to_sync: bool,
    /// The server is in copy-in mode and the client has not ended it yet.
    copy_in: bool,
    /// Bytes for the client and for the backend.
    to_client: BytesMut,
    to_backend: BytesMut,
}

/// Runs one pooled client session to its end. The caller writes
/// [`End::Fatal`] errors to the client.
pub async fn run<CR, CW>(cr: &mut CR, cw: &mut CW, pool: &Arc<Pool>, ctx: PooledCtx) -> End
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
{
    let expires_at = ctx.expires_at;
    let mut close_now = ctx.close_now.clone();
    let tracked = ctx.baseline.clone();
    let mut s = Session {
        pool,
        ctx,
        refusals: Refusals::new(),
        tracked,
        statements: HashMap::new(),
        unnamed: None,
        parse_seq: 0,
        portals: HashMap::new(),
        discard_statements: Default::default(),
        discard_portals: Default::default(),
        lease: None,
        set_local: pool.config().pin_form == crate::config::PinForm::SetLocal,
        pins: HashMap::new(),
        pin: None,
        wrap: None,
        block_open: false,
        block_plain: true,
        block_ended: false,
        queue: VecDeque::new(),
        unsynced: false,
        pinned_block: false,
        touched: false,
        reset_all: false,
        skip_to_sync: false,
        copy_in: false,
        to_client: BytesMut::new(),
        to_backend: BytesMut::new(),
    };
    let expiry = async {
        match expires_at {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    let draining = async {
        if close_now.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let end = tokio::select! {
        end = s.run(cr, cw) => end,
        () = expiry => End::Fatal(
            ClientError::fatal(SqlState::InvalidPassword, "terminating connection because the token has expired")
                .with_hint("reconnect with a fresh token"),
        ),
        () = draining => End::Fatal(ClientError::fatal(
            SqlState::AdminShutdown,
            "terminating connection because pg-tenant-proxy is shutting down",
        )),
    };
    // Replies already owed to the client go out before the session's end
    // (for a server's FATAL, that error itself), bounded like every last
    // write of a session.
    if !s.to_client.is_empty() && !matches!(end, End::ClientVanished | End::ClientClosed) {
        let _ = tokio::time::timeout(LAST_WRITE_TIMEOUT, async {
            cw.write_all(&s.to_client).await?;
            cw.flush().await
        })
        .await;
    }
    s.finish(&end).await;
    end
}

/// A checkout in progress.
type Checkout = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Lease, PoolError>> + Send>>;

/// What woke the loop.
#[allow(clippy::large_enum_variant)] // One per loop turn, on the stack.
enum Event {
    ClientRead(std::io::Result<usize>),
    BackendRead(std::io::Result<usize>),
    ClientWrote(std::io::Result<usize>),
    BackendWrote(std::io::Result<usize>),
    CheckedOut(Result<Lease, PoolError>),
    /// The client made no progress for the idle-transaction timeout.
    Stalled,
}

impl Session<'_> {
    async fn run<CR, CW>(&mut self, cr: &mut CR, cw: &mut CW) -> End
    where
        CR: AsyncRead + Unpin,
        CW: AsyncWrite + Unpin,
    {
        let mut cbuf = BytesMut::new();
        let mut checkout: Option<Checkout> = None;
        let stall_after = self.pool.config().idle_transaction_timeout;
        // Last time the client sent something or took some of its replies.
        let mut progress = Instant::now();
        loop {
            // Decide on what the client sent, as far as possible.
            if let Err(end) = self.client_messages(&mut cbuf) {
                return end;
            }
            if let Some(end) = self.maybe_release() {
                return end;
            }
            if self.lease.is_none() && checkout.is_none() && self.needs_backend(&cbuf) {
                if let Some(lease) = self.pool.try_checkout(self.ctx.identity.organization_id) {
                    self.take(lease);
                    continue;
                }
                let pool = self.pool.clone();
                let org = self.ctx.identity.organization_id;
                checkout = Some(Box::pin(async move { pool.checkout(org).await }));
            }
            let read_client =
                self.to_backend.len() < HIGH_WATER && cbuf.len() < self.ctx.max_message.saturating_add(READ_CHUNK);
            let read_backend = self.to_client.len() < HIGH_WATER;
            if self.lease.is_none() && cbuf.is_empty() && self.to_client.is_empty() {
                // Between transactions: give back what a large one grew.
                if cbuf.capacity() > IDLE_READ_CHUNK {
                    cbuf = BytesMut::with_capacity(IDLE_READ_CHUNK);
                }
                if self.to_client.capacity() > KEPT_OUTPUT {
                    self.to_client = BytesMut::new();
                }
                if self.to_backend.capacity() > KEPT_OUTPUT {
                    self.to_backend = BytesMut::new();
                }
            }
            let chunk = if self.lease.is_some() {
                READ_CHUNK
            } else {
                IDLE_READ_CHUNK
            };
            if cbuf.capacity() - cbuf.len() < chunk / 2 {
                cbuf.reserve(chunk);
            }
            let holding = self.lease.is_some();
            let event = {
                let to_client = &self.to_client;
                let to_backend = &self.to_backend;
                let backend = self.lease.as_mut().map(|l| l.backend());
                let (mut br, mut bw, mut brbuf) = match backend {
                    Some(b) => (Some(&mut b.reader), Some(&mut b.writer), Some(&mut b.rbuf)),
                    None => (None, None, None),
                };
                tokio::select! {
                    r = cr.read_buf(&mut cbuf), if read_client => Event::ClientRead(r),
                    r = async {
                        let (Some(br), Some(buf)) = (br.as_mut(), brbuf.as_mut()) else { return std::future::pending().await };
                        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
                            buf.reserve(READ_CHUNK);
                        }
                        br.read_buf(*buf).await
                    }, if read_backend && br.is_some() => Event::BackendRead(r),
                    r = cw.write(to_client), if !to_client.is_empty() => Event::ClientWrote(r),
                    r = async {
                        let Some(bw) = bw.as_mut() else { return std::future::pending().await };
                        bw.write(to_backend).await
                    }, if !to_backend.is_empty() && bw.is_some() => Event::BackendWrote(r),
                    r = async {
                        match checkout.as_mut() {
                            Some(f) => f.await,
                            None => std::future::pending().await,
                        }
                    }, if checkout.is_some() => Event::CheckedOut(r),
                    () = tokio::time::sleep_until(progress + stall_after), if holding => Event::Stalled,
                }
            };
            match event {
                Event::ClientRead(Ok(0)) => return End::ClientVanished,
                Event::ClientRead(Ok(_)) => progress = Instant::now(),
                Event::ClientRead(Err(e)) => {
                    debug!(error = %e, "client read failed");
                    return End::ClientVanished;
                }
                Event::BackendRead(Ok(0)) => {
                    return End::UpstreamClosed { told_client: false };
                }
                Event::BackendRead(Ok(n)) => {
                    metrics::relayed(Direction::UpstreamToClient, n);
                    if let Err(end) = self.backend_messages() {
                        return end;
                    }
                }
                Event::BackendRead(Err(e)) => {
                    // The client is told, as when the server closes cleanly.
                    debug!(error = %e, "pooled backend read failed");
                    return End::UpstreamClosed { told_client: false };
                }
                Event::ClientWrote(Ok(n)) => {
                    progress = Instant::now();
                    self.to_client.advance(n);
                    if self.to_client.is_empty() {
                        let _ = cw.flush().await;
                    }
                }
                Event::ClientWrote(Err(e)) => return End::Io(format!("client write: {e}")),
                Event::BackendWrote(Ok(n)) => {
                    metrics::relayed(Direction::ClientToUpstream, n);
                    self.to_backend.advance(n);
                    if self.to_backend.is_empty() {
                        metrics::get().pool_backend_flushes.inc();
                        if let Some(l) = self.lease.as_mut() {
                            let _ = l.backend().writer.flush().await;
                        }
                    }
                }
                Event::BackendWrote(Err(e)) => {
                    debug!(error = %e, "pooled backend write failed");
                    return End::UpstreamClosed { told_client: false };
                }
                Event::Stalled => {
                    // Holding a backend idle inside a transaction, or not
                    // reading the replies: other sessions need it. A client
                    // waiting for a long statement is not stalled.
                    let status = self.lease.as_mut().map(|l| l.backend().status).unwrap_or(b'I');
                    let idle_in_transaction = self.queue.is_empty() && (status != b'I' || self.unsynced);
                    if idle_in_transaction || !self.to_client.is_empty() {
                        return End::Fatal(
                            ClientError::fatal(
                                SqlState::IdleInTransactionTimeout,
                                format!(
                                    "terminating connection due to idle-in-transaction timeout ({} s in transaction pool mode)",
                                    stall_after.as_secs()
                                ),
                            )
                            .with_hint("Commit or roll back promptly: the database connection is shared with other sessions."),
                        );
                    }
                    progress = Instant::now();
                }
                Event::CheckedOut(r) => {
                    checkout = None;
                    match r {
                        Ok(lease) => self.take(lease),
                        Err(e) => {
                            debug!(error = ?e, "no backend for the client");
                            self.refuse_current(e.to_client(), &mut cbuf);
                        }
                    }
                }
            }
        }
    }

    /// Whether the next client message needs a backend.
    fn needs_backend(&self, cbuf: &BytesMut) -> bool {
        match crate::protocol::frame::peek_header(cbuf, 0, usize::MAX) {
            Ok(Some(h)) => {
                let answered_here = h.tag == b'Q' && cbuf.len() >= h.total && self.is_discard_all(&cbuf[..h.total]);
                !(matches!(h.tag, b'X' | b'd' | b'c' | b'f') || self.skip_to_sync || answered_here)
            }
            _ => false,
        }
    }

    /// Whether a whole Query message is `DISCARD ALL` (answered by the proxy).
    fn is_discard_all(&self, frame: &[u8]) -> bool {
        let Some((sql, [])) = frame.get(5..).and_then(cstr) else {
            return false;
        };
        sql.windows(7).any(|w| w.eq_ignore_ascii_case(b"discard"))
            && self.ctx.guard.check_with_effects(sql, &self.ctx.scope).1.discard_all
    }

    /// A backend was checked out: it serves this client now.
    fn take(&mut self, mut lease: Lease) {
        let b = lease.backend();
        self.ctx.cancel.set(Some(HeldBackend {
            backend_id: b.id,
            key: b.key.unwrap_or((0, 0)),
            cancel_lock: b.cancel_lock.clone(),
        }));
        // Settings first: pipelined before the client's messages.
        let changes: Vec<(usize, &str)> = self
            .tracked
            .iter()
            .enumerate()
            .filter(|(i, v)| b.tracked.get(*i) != Some(*v))
            .map(|(i, v)| (i, v.as_str()))
            .collect();
        if let Some(sql) = replay_sql(&changes) {
            self.to_backend.put_slice(&query_message(&sql));
            self.queue.push_back(Expect::OwnQuery {
                readback: false,
                report: false,
            });
            b.tracked = self.tracked.clone();
        }
        // Statements over the per-backend cap are closed.
        for id in b.prepared.evict_over(MAX_PREPARED_PER_BACKEND) {
            write_message(&mut self.to_backend, b'C', |m| {
                m.put_u8(b'S');
                m.put_slice(format!("pgtp_s{id}").as_bytes());
                m.put_u8(0);
            });
            self.queue.push_back(Expect::Own(Reply::Close));
        }
        if self.pin.as_ref().map(|(id, ..)| *id) != Some(b.id) {
            let (pin, queries) = match self.pins.get(&b.id) {
                Some(p) => p.clone(),
                None => {
                    let values: PinValues = self.pool.connector().pin_values(&self.ctx.identity, &b.binding);
                    let p = if self.set_local {
                        super::backend::set_local_pin_messages(&values)
                    } else {
                        (Backend::pin_messages(&values), 0)
                    };
                    // A few per session: idle sessions stay small.
                    if self.pins.len() >= MAX_CACHED_PINS {
                        self.pins.clear();
                    }
                    self.pins.insert(b.id, p.clone());
                    p
                }
            };
            self.pin = Some((b.id, pin, queries));
        }
        self.unsynced = false;
        self.pinned_block = false;
        self.wrap = None;
        self.block_open = false;
        self.block_plain = true;
        self.block_ended = false;
        self.touched = false;
        self.reset_all = false;
        self.lease = Some(lease);
    }

    /// The checkout failed: the client's current request gets `err`, the
    /// rest of its Sync block is dropped, and ReadyForQuery follows.
    fn refuse_current(&mut self, err: ClientError, cbuf: &mut BytesMut) {
        wire::error_response(&mut self.to_client, &err);
        // A simple Query (or FunctionCall) is answered at once; an
        // extended-protocol block when its Sync arrives.
        match crate::protocol::frame::peek_header(cbuf, 0, usize::MAX) {
            Ok(Some(h)) if matches!(h.tag, b'Q' | b'F') && cbuf.len() >= h.total => {
                cbuf.advance(h.total);
                ready_for_query(&mut self.to_client, b'I');
            }
            _ => self.skip_to_sync = true,
        }
    }

    /// Handles every complete client message it can now. Stops at a message
    /// that needs a backend it does not hold, and at a simple Query while
    /// earlier replies are still to come.
    fn client_messages(&mut self, cbuf: &mut BytesMut) -> Result<(), End> {
        loop {
            if self.to_backend.len() >= HIGH_WATER {
                return Ok(());
            }
            let h = match crate::protocol::frame::peek_header(cbuf, 0, self.ctx.max_message) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(()),
                Err(e) => return Err(frame_error(e)),
            };
            if cbuf.len() < h.total {
                cbuf.reserve(h.total - cbuf.len());
                return Ok(());
            }
            if self.skip_to_sync {
                cbuf.advance(h.total);
                if h.tag == b'S' {
                    self.skip_to_sync = false;
                    ready_for_query(&mut self.to_client, b'I');
                }
                if h.tag == b'X' {
                    return Err(End::ClientClosed);
                }
                continue;
            }
            match h.tag {
                b'X' => return Err(End::ClientClosed),
                b'd' | b'c' | b'f' => {
                    let frame = cbuf.split_to(h.total);
                    // Outside COPY the server ignores them; so does the proxy.
                    if self.lease.is_some() {
                        self.to_backend.put_slice(&frame);
                        if h.tag != b'd' {
                            if self.copy_in {
                                self.copy_in = false;
                            } else {
                                self.queue.push_back(Expect::CopyEnd);
                            }
                        }
                    }
                    continue;
                }
                b'Q' | b'F' => {
                    // Status must be known: wait for every earlier reply.
                    if self.lease.is_some() && !self.queue.is_empty() {
                        return Ok(());
                    }
                    if self.lease.is_none() && !self.is_discard_all(&cbuf[..h.total]) {
                        return Ok(());
                    }
                    let frame = cbuf.split_to(h.total).freeze();
                    self.simple_query(frame)?;
                    continue;
                }
                _ => {}
            }
            if self.lease.is_none() {
                return Ok(());
            }
            if self.set_local && !self.block_open && h.tag != b'H' && self.awaits_ready() {
                // `set_local`: a new Sync block (or a lone Sync) goes once
                // the backend's status is known and the block before it is
                // committed. Only while a ReadyForQuery is on its way: after
                // a COPY FROM STDIN the server ignored the Sync, and the
                // client's next Sync is what makes it answer.
                return Ok(());
            }
            let frame = cbuf.split_to(h.total).freeze();
            self.extended(frame)?;
        }
    }

    /// A simple Query (or a FunctionCall, always refused).
    fn simple_query(&mut self, frame: Bytes) -> Result<(), End> {
        let body = frame.slice(5..);
        let (verdict, effects) = if frame[0] == b'F' {
            (self.ctx.guard.check_function_call(), Effects::default())
        } else {
            match cstr(&body) {
                Some((sql, [])) => self.ctx.guard.check_with_effects(sql, &self.ctx.scope),
                _ => (Verdict::Deny(malformed()), Effects::default()),
            }
        };
        let status = self.lease.as_mut().map(|l| l.backend().status).unwrap_or(b'I');
        if effects.discard_all && status == b'I' {
            // Answered here: the client's view is reset, no backend needed.
            self.discard_all();
            write_message(&mut self.to_client, b'C', |m| {
                m.put_slice(b"DISCARD ALL\0");
            });
            ready_for_query(&mut self.to_client, b'I');
            return Ok(());
        }
        if self.lease.is_none() {
            // `client_messages` hands over a Query without a backend only
            // when it is DISCARD ALL, answered above.
            return Err(End::Fatal(ClientError::fatal(
                SqlState::InternalError,
                "pg-tenant-proxy: internal error (a query without a backend)",
            )));
        }
        // The client's own unnamed statement does not survive a Query.
        self.unnamed = None;
        if let Some(l) = self.lease.as_mut() {
            l.backend().unnamed_owner = None;
        }
        let message = match verdict {
            Verdict::Allow => frame,
            Verdict::Rewrite(sql) => query_message(&sql),
            Verdict::Deny(err) => query_message(&self.refusals.register(err)),
        };
        if status == b'I' && !self.refusals.is_marker_query(&message) {
            self.push_pin();
        }
        self.touched |= effects.session_settings;
        self.reset_all |= effects.reset_all;
        self.to_backend.put_slice(&message);
        self.queue.push_back(Expect::Client(Reply::Query));
        if self.wrap.is_some() && !crate::guard::may_begin_or_copy(message.get(5..).unwrap_or_default()) {
            // Nothing in it opens a block of its own or waits for COPY
            // data: the block the proxy opened is committed in this write.
            self.send_commit();
        }
        self.unsynced = false;
        self.pinned_block = false;
        Ok(())
    }

    /// The pin messages for the current transaction.
    fn push_pin(&mut self) {
        let Some((_, pin, queries)) = &self.pin else { return };
        self.to_backend.put_slice(pin);
        if *queries == 0 {
            self.queue.push_back(Expect::Own(Reply::Bind));
            self.queue.push_back(Expect::Own(Reply::Execute));
            self.queue.push_back(Expect::Own(Reply::Close));
            return;
        }
        // BEGIN and the SET LOCALs: a transaction block the client does not
        // know about. A Query drops the unnamed statement.
        for _ in 0..*queries {
            self.queue.push_back(Expect::Own(Reply::Query));
        }
        self.wrap = Some(Wrap::default());
        self.backend().unnamed_owner = None;
    }

    /// Whether a ReadyForQuery is still to come for a request in flight.
    fn awaits_ready(&self) -> bool {
        self.queue.iter().any(|e| e.reply().is_some_and(Reply::survives_error))
    }

    /// `set_local`: the COMMIT of the block the proxy opened, sent now.
    fn send_commit(&mut self) {
        self.to_backend.put_slice(&query_message("COMMIT"));
        self.queue.push_back(Expect::Commit);
        if let Some(w) = self.wrap.as_mut() {
            w.commit_sent = true;
        }
    }

    /// `set_local`: an Execute. A statement after one that closed the
    /// transaction in the same Sync block is refused (the proxy pins only
    /// where a block begins).
    fn execute_set_local(&mut self, frame: &Bytes, effect: TxnEffect) -> Result<(), End> {
        if self.block_ended && !effect.ends {
            return self.refuse(crate::guard::set_local_statement_after_transaction_end());
        }
        self.block_ended |= effect.closes;
        self.block_plain &= !effect.may_begin_or_copy;
        self.to_backend.put_slice(frame);
        self.queue.push_back(Expect::Client(Reply::Execute));
        Ok(())
    }

    /// `DISCARD ALL` answered by the proxy: startup settings back, every
    /// statement and portal forgotten.
    fn discard_all(&mut self) {
        self.tracked = self.ctx.baseline.clone();
        self.statements.clear();
        self.unnamed = None;
        self.portals.clear();
        self.discard_statements.clear();
        self.discard_portals.clear();
    }

    /// Queues a reply the proxy makes itself.
    fn fake(&mut self, tag: u8, body: &[u8]) {
        let mut m = BytesMut::with_capacity(body.len() + 5);
        write_message(&mut m, tag, |b| b.put_slice(body));
        self.queue.push_back(Expect::Fake(m.freeze(), Undo::None));
    }

    /// An extended-protocol message (or Flush/Sync) with a backend held.
    fn extended(&mut self, frame: Bytes) -> Result<(), End> {
        let tag = frame[0];
        let body = frame.slice(5..);
        self.unsynced = true;
        if self.set_local && !self.block_open && matches!(tag, b'P' | b'B' | b'D' | b'E' | b'C') {
            // The first message of a Sync block, sent with every earlier
            // reply in (see `client_messages`): outside a transaction, the
            // proxy opens one and pins it before the client's messages.
            self.block_open = true;
            self.block_plain = true;
            self.block_ended = false;
            // With no ReadyForQuery still to come, the status is current.
            if !self.awaits_ready() && self.backend().status == b'I' {
                self.push_pin();
            }
        }
        match tag {
            b'P' => self.parse(&body),
            b'B' => self.bind(&frame, &body),
            b'D' => self.describe(&frame, &body),
            b'C' => self.close(&frame, &body),
            b'E' => {
                let Some((portal, _)) = cstr(&body) else {
                    return self.malformed_message();
                };
                if self.discard_portals.contains(portal) {
                    self.queue.push_back(Expect::FakeDiscard);
                    return Ok(());
                }
                let effect = self.portals.get(portal).copied().unwrap_or(TxnEffect::UNKNOWN);
                if self.set_local {
                    return self.execute_set_local(&frame, effect);
                }
                let ends = effect.ends;
                if !ends && !self.pinned_block {
                    self.push_pin();
                    self.pinned_block = true;
                }
                if ends {
                    self.pinned_block = false;
                }
                self.to_backend.put_slice(&frame);
                self.queue.push_back(Expect::Client(Reply::Execute));
                Ok(())
            }
            b'H' => {
                self.to_backend.put_slice(&frame);
                Ok(())
            }
            b'S' if self.copy_in => {
                // Read by the server in copy-in mode, where it is ignored.
                self.to_backend.put_slice(&frame);
                Ok(())
            }
            b'S' => {
                self.to_backend.put_slice(&frame);
                self.queue.push_back(Expect::Client(Reply::Sync));
                self.unsynced = false;
                self.pinned_block = false;
                if self.set_local {
                    if self.block_plain && self.wrap.as_ref().is_some_and(|w| !w.commit_sent) {
                        self.send_commit();
                    }
                    self.block_open = false;
                    self.block_ended = false;
                }
                Ok(())
            }
            other => Err(End::Fatal(ClientError::fatal(
                SqlState::ProtocolViolation,
                format!("invalid frontend message type {other}"),
            ))),
        }
    }

    fn backend(&mut self) -> &mut Backend {
        // Only called with a lease held (see `client_messages`).
        self.lease
            .as_mut()
            .map(Lease::backend)
            .unwrap_or_else(|| unreachable!("extended message without a backend"))
    }

    /// Sends a Parse that fails with `err` (through the refusal marker), in
    /// place of a client message.
    fn refuse(&mut self, err: ClientError) -> Result<(), End> {
        let marker = self.refusals.register(err);
        self.to_backend
            .put_slice(&parse_message(REFUSED_STATEMENT, &marker, &0i16.to_be_bytes()));
        self.queue.push_back(Expect::Client(Reply::Parse));
        Ok(())
    }

    fn malformed_message(&mut self) -> Result<(), End> {
        self.refuse(malformed())
    }

    fn parse(&mut self, body: &[u8]) -> Result<(), End> {
        let parsed = cstr(body).and_then(|(name, rest)| {
            let (sql, rest) = cstr(rest)?;
            let (n, types) = rest.split_first_chunk::<2>()?;
            let n = i16::from_be_bytes(*n);
            (n >= 0 && types.len() == n as usize * 4).then_some((name, sql, rest))
        });
        let Some((name, sql, tail)) = parsed else {
            return self.malformed_message();
        };
        if !name.is_empty() && (self.statements.contains_key(name) || self.discard_statements.contains(name)) {
            return self.refuse(ClientError::error(
                SqlState::DuplicatePreparedStatement,
                format!(
                    "prepared statement \"{}\" already exists",
                    String::from_utf8_lossy(name)
                ),
            ));
        }
        let (verdict, effects) = self.ctx.guard.check_with_effects(sql, &self.ctx.scope);
        if effects.discard_all && matches!(verdict, Verdict::Allow) {
            // Answered by the proxy, like the simple-protocol form.
            if name.is_empty() {
                self.unnamed = None;
            } else {
                self.statements.remove(name);
            }
            self.discard_statements.insert(name.to_vec());
            self.fake(b'1', b"");
            return Ok(());
        }
        let sql: std::borrow::Cow<'_, [u8]> = match verdict {
            Verdict::Allow => std::borrow::Cow::Borrowed(sql),
            Verdict::Rewrite(new) => std::borrow::Cow::Owned(new.into_bytes()),
            Verdict::Deny(err) => {
                // PostgreSQL drops the unnamed statement before it parses.
                if name.is_empty() {
                    self.unnamed = None;
                }
                return self.refuse(err);
            }
        };
        self.touched |= effects.session_settings;
        self.reset_all |= effects.reset_all;
        if name.is_empty() {
            self.discard_statements.remove(name);
            self.parse_seq += 1;
            let seq = self.parse_seq;
            let sql_str = String::from_utf8_lossy(&sql).into_owned();
            let message = parse_message(b"", &sql_str, tail);
            self.unnamed = Some(Unnamed {
                parse: message.clone(),
                effect: TxnEffect::of(&sql),
                seq,
            });
            let session = self.ctx.session_id;
            self.backend().unnamed_owner = Some((session, seq));
            self.to_backend.put_slice(&message);
            self.queue.push_back(Expect::Client(Reply::Parse));
            return Ok(());
        }
        let stmt = self.pool.statements.intern(&sql, tail);
        self.statements.insert(name.to_vec(), stmt.clone());
        let b = self.backend();
        if b.prepared.has(stmt.id) {
            let mut ok = BytesMut::new();
            write_message(&mut ok, b'1', |_| {});
            self.queue
                .push_back(Expect::Fake(ok.freeze(), Undo::Unprepare(name.to_vec())));
        } else {
            b.prepared.add(stmt.id);
            self.to_backend.put_slice(&stmt.parse);
            self.queue.push_back(Expect::ClientParse {
                id: stmt.id,
                name: Some(name.to_vec()),
            });
        }
        Ok(())
    }

    /// Makes sure the backend holds statement `name` of this client, and
    /// returns the name to use there. `Err(())`: the client has no such
    /// statement (the caller refuses with 26000).
    fn ensure_statement(&mut self, name: &[u8]) -> Result<(Vec<u8>, TxnEffect), ()> {
        if name.is_empty() {
            let session = self.ctx.session_id;
            let Some(u) = &self.unnamed else {
                return Err(());
            };
            let (parse, seq, ends) = (u.parse.clone(), u.seq, u.effect);
            let b = self.backend();
            if b.unnamed_owner != Some((session, seq)) {
                b.unnamed_owner = Some((session, seq));
                self.to_backend.put_slice(&parse);
                self.queue.push_back(Expect::Own(Reply::Parse));
            }
            return Ok((Vec::new(), ends));
        }
        let Some(stmt) = self.statements.get(name).cloned() else {
            return Err(());
        };
        let b = self.backend();
        if !b.prepared.has(stmt.id) {
            b.prepared.add(stmt.id);
            self.to_backend.put_slice(&stmt.parse);
            self.queue.push_back(Expect::OwnParse { id: stmt.id });
        }
        Ok((stmt.name.as_bytes().to_vec(), stmt.effect))
    }

    fn no_statement(&mut self, name: &[u8]) -> Result<(), End> {
        let msg = if name.is_empty() {
            "unnamed prepared statement does not exist".to_owned()
        } else {
            format!(
                "prepared statement \"{}\" does not exist",
                String::from_utf8_lossy(name)
            )
        };
        self.refuse(ClientError::error(SqlState::UndefinedPreparedStatement, msg).with_class("prepared_statement"))
    }

    fn bind(&mut self, frame: &Bytes, body: &[u8]) -> Result<(), End> {
        let Some((portal, rest)) = cstr(body) else {
            return self.malformed_message();
        };
        let Some((name, tail)) = cstr(rest) else {
            return self.malformed_message();
        };
        if self.discard_statements.contains(name) {
            self.portals.remove(portal);
            self.discard_portals.insert(portal.to_vec());
            self.fake(b'2', b"");
            return Ok(());
        }
        self.discard_portals.remove(portal);
        let Ok((server_name, ends)) = self.ensure_statement(name) else {
            return self.no_statement(name);
        };
        self.portals.insert(portal.to_vec(), ends);
        if server_name == name {
            self.to_backend.put_slice(frame);
        } else {
            write_message(&mut self.to_backend, b'B', |m| {
                m.put_slice(portal);
                m.put_u8(0);
                m.put_slice(&server_name);
                m.put_u8(0);
                m.put_slice(tail);
            });
        }
        self.queue.push_back(Expect::Client(Reply::Bind));
        Ok(())
    }

    fn describe(&mut self, frame: &Bytes, body: &[u8]) -> Result<(), End> {
        let Some((&kind, rest)) = body.split_first() else {
            return self.malformed_message();
        };
        let Some((name, [])) = cstr(rest) else {
            return self.malformed_message();
        };
        if kind == b'P' && self.discard_portals.contains(name) {
            self.fake(b'n', b"");
            return Ok(());
        }
        if kind == b'S' && self.discard_statements.contains(name) {
            self.fake(b't', &[0, 0]);
            self.fake(b'n', b"");
            return Ok(());
        }
        if kind == b'P' {
            self.to_backend.put_slice(frame);
            self.queue.push_back(Expect::Client(Reply::DescribePortal));
            return Ok(());
        }
        if kind != b'S' {
            return self.malformed_message();
        }
        let Ok((server_name, _)) = self.ensure_statement(name) else {
            return self.no_statement(name);
        };
        write_message(&mut self.to_backend, b'D', |m| {
            m.put_u8(b'S');
            m.put_slice(&server_name);
            m.put_u8(0);
        });
        self.queue.push_back(Expect::Client(Reply::DescribeStatement));
        Ok(())
    }

    fn close(&mut self, frame: &Bytes, body: &[u8]) -> Result<(), End> {
        let Some((&kind, rest)) = body.split_first() else {
            return self.malformed_message();
        };
        let Some((name, [])) = cstr(rest) else {
            return self.malformed_message();
        };
        match kind {
            b'P' if self.discard_portals.remove(name) => self.fake(b'3', b""),
            b'P' => {
                self.portals.remove(name);
                self.to_backend.put_slice(frame);
                self.queue.push_back(Expect::Client(Reply::Close));
            }
            b'S' if self.discard_statements.remove(name) => self.fake(b'3', b""),
            b'S' => {
                // Proxy-wide statements stay prepared on the backends; the
                // client's name is forgotten. Closing a name that does not
                // exist is not an error, as in PostgreSQL.
                let undo = if name.is_empty() {
                    self.unnamed = None;
                    Undo::None
                } else {
                    match self.statements.remove(name) {
                        Some(stmt) => Undo::Restore(name.to_vec(), stmt),
                        None => Undo::None,
                    }
                };
                let mut done = BytesMut::new();
                write_message(&mut done, b'3', |_| {});
                self.queue.push_back(Expect::Fake(done.freeze(), undo));
            }
            _ => return self.malformed_message(),
        }
        Ok(())
    }

    /// Handles every complete message from the backend.
    fn backend_messages(&mut self) -> Result<(), End> {
        loop {
            self.emit_fakes();
            let Some(lease) = self.lease.as_mut() else {
                return Ok(());
            };
            let b = lease.backend();
            let (tag, body) = match crate::protocol::frame::split_frame(&mut b.rbuf, MAX_SERVER_MESSAGE) {
                Ok(Some((tag, body))) => (tag, body.freeze()),
                Ok(None) => return Ok(()),
                Err(_) => return Err(bad_server("an invalid message")),
            };
            if tag == b'Z' {
                b.status = body.first().copied().unwrap_or(b'I');
            }
            self.backend_message(tag, body)?;
        }
    }

    /// Replies the proxy makes itself, once they are at the head.
    fn emit_fakes(&mut self) {
        loop {
            match self.queue.front() {
                Some(Expect::Fake(..)) => {
                    if let Some(Expect::Fake(bytes, _)) = self.queue.pop_front() {
                        self.to_client.put_slice(&bytes);
                    }
                }
                Some(Expect::CopyEnd) => {
                    self.queue.pop_front();
                }
                Some(Expect::FakeDiscard) => {
                    self.queue.pop_front();
                    self.discard_all();
                    write_message(&mut self.to_client, b'C', |m| m.put_slice(b"DISCARD ALL\0"));
                }
                _ => return,
            }
        }
    }

    fn backend_message(&mut self, tag: u8, body: Bytes) -> Result<(), End> {
        let own = self.queue.front().is_some_and(Expect::is_own);
        let report = matches!(self.queue.front(), Some(Expect::OwnQuery { report: true, .. }));
        match tag {
            // Asynchronous: a notice, a changed setting, a notification.
            b'N' | b'S' => {
                if (!own || (report && tag == b'S')) && !(tag == b'N' && self.wrap_notice(&body)) {
                    forward(&mut self.to_client, tag, &body);
                }
                return Ok(());
            }
            b'A' => {
                // LISTEN is refused in this mode; anything else is not ours.
                if let Some(r) = unscope_notification(&body, &self.ctx.scope) {
                    self.to_client.put_slice(&r);
                }
                return Ok(());
            }
            _ => {}
        }
        if tag == b'E' && closes_connection(&body) {
            // The server is ending this connection (terminated by an
            // administrator, shutting down, ...): whatever the request, the
            // client's session ends with it, as it would on a direct
            // connection. The backend is never given back.
            forward(&mut self.to_client, tag, &body);
            return Err(End::UpstreamClosed { told_client: true });
        }
        let Some(head) = self.queue.front() else {
            return Err(bad_server("a reply to no request"));
        };
        let Some(reply) = head.reply() else {
            return Err(bad_server("a reply out of order"));
        };
        if tag == b'E' {
            return self.error(reply, body);
        }
        let readback = matches!(head, Expect::OwnQuery { readback: true, .. });
        let commit = matches!(head, Expect::Commit);
        if tag == b'Z' && self.wrap.is_some() && matches!(head, Expect::Client(Reply::Query | Reply::Sync)) {
            self.queue.pop_front();
            self.wrapped_ready(&body);
            return Ok(());
        }
        if tag == b'G' {
            self.copy_in_started();
        }
        if readback {
            if tag == b'D' {
                if let Some(values) = data_row(&body).filter(|v| v.len() == TRACKED_SETTINGS.len()) {
                    self.tracked = values.clone();
                    if let Some(l) = self.lease.as_mut() {
                        l.backend().tracked = values;
                    }
                }
            }
        } else if !(own || (commit && tag == b'C')) {
            forward(&mut self.to_client, tag, &body);
        }
        if commit && tag == b'Z' {
            self.wrap = None;
        }
        if reply.ends_with(tag) {
            self.queue.pop_front();
        }
        Ok(())
    }

    /// `set_local`: a notice for the client while the proxy's block is
    /// open. Returns whether it is dropped: the warning 25001 of the
    /// client's own BEGIN inside the proxy's block (PostgreSQL would not
    /// warn on a direct connection, and the block is the client's
    /// transaction from then on), and the warning 25P01 of the proxy's
    /// COMMIT after the client's own COMMIT ended the block.
    fn wrap_notice(&mut self, body: &[u8]) -> bool {
        let commit = matches!(self.queue.front(), Some(Expect::Commit));
        let Some(w) = self.wrap.as_mut() else { return false };
        let code = super::backend::error_field(body, b'C');
        if commit {
            return code.as_deref() == Some("25P01");
        }
        if !w.client_began && code.as_deref() == Some("25001") {
            w.client_began = true;
            return true;
        }
        false
    }

    /// `set_local`: the ReadyForQuery that ends the client's Query or Sync
    /// block while the proxy's block is open. The client is told `I` only
    /// once the proxy's block is over: committed here (or by the COMMIT
    /// already on its way, whose ReadyForQuery it gets instead of this one),
    /// unless the client began a transaction of its own in it, which goes on.
    fn wrapped_ready(&mut self, body: &Bytes) {
        let status = body.first().copied().unwrap_or(b'I');
        let Some(w) = self.wrap.as_ref() else { return };
        if w.commit_sent {
            return;
        }
        if status == b'I' || w.client_began {
            // Ended by the client's COMMIT or ROLLBACK, or now the client's.
            self.wrap = None;
            forward(&mut self.to_client, b'Z', body);
            return;
        }
        // `T` or `E`: committed (or, after an error, rolled back) now. The
        // client waits for this ReadyForQuery: its next block and any lone
        // Sync wait for the COMMIT's (see `client_messages`).
        self.send_commit();
    }

    /// The server entered copy-in mode for the request at the head: every
    /// Sync the client sent after it and before its CopyDone/CopyFail is
    /// read (and ignored) by the server inside the copy.
    fn copy_in_started(&mut self) {
        let mut i = 1;
        let mut ended = false;
        while i < self.queue.len() {
            match self.queue.get(i) {
                Some(Expect::CopyEnd) => {
                    ended = true;
                    break;
                }
                Some(Expect::Client(Reply::Sync)) => {
                    self.queue.remove(i);
                }
                _ => i += 1,
            }
        }
        self.copy_in = !ended;
    }

    /// An ErrorResponse for the request at the head.
    fn error(&mut self, reply: Reply, body: Bytes) -> Result<(), End> {
        let head = self.queue.front();
        let own_query = matches!(head, Some(Expect::OwnQuery { .. }));
        if own_query {
            // The proxy's replay or read-back failed: the backend's settings
            // are unknown, so it is not given back to the pool.
            warn!(
                message = %super::backend::error_field(&body, b'M').unwrap_or_default(),
                "settings replay or read-back failed on a pooled backend"
            );
            if let Some(l) = self.lease.as_mut() {
                l.backend().tracked.clear();
            }
        } else if self.refusals.any_in_flight() {
            match replace_marker_error(&body, &self.refusals) {
                Some(r) => self.to_client.put_slice(&r),
                None => forward(&mut self.to_client, b'E', &body),
            }
        } else {
            forward(&mut self.to_client, b'E', &body);
        }
        if reply == Reply::Query {
            // A Query goes on to its ReadyForQuery.
            return Ok(());
        }
        // The request failed; the server now skips everything up to Sync.
        if let Some(e) = self.queue.pop_front() {
            self.undo(e);
        }
        while let Some(e) = self.queue.front() {
            match e.reply() {
                Some(r) if r.survives_error() => break,
                _ => {
                    if let Some(e) = self.queue.pop_front() {
                        self.undo(e);
                    }
                }
            }
        }
        // A Query right after the failed request (the pin before a simple
        // Query) is skipped too, and the server waits for a Sync: send one,
        // and its ReadyForQuery answers the Query.
        if let Some(front) = self.queue.front_mut() {
            if front.reply() == Some(Reply::Query) {
                let client = matches!(front, Expect::Client(_));
                *front = if client {
                    Expect::Client(Reply::Sync)
                } else {
                    Expect::Own(Reply::Sync)
                };
                write_message(&mut self.to_backend, b'S', |_| {});
            }
        }
        Ok(())
    }

    /// A request the server skipped or failed: its effect on the records is
    /// undone.
    fn undo(&mut self, e: Expect) {
        match e {
            Expect::ClientParse { id, name } => {
                if let Some(l) = self.lease.as_mut() {
                    l.backend().prepared.remove(id);
                }
                if let Some(n) = name {
                    self.statements.remove(&n);
                }
            }
            Expect::OwnParse { id } => {
                if let Some(l) = self.lease.as_mut() {
                    l.backend().prepared.remove(id);
                }
            }
            Expect::Fake(_, Undo::Unprepare(n)) => {
                self.statements.remove(&n);
            }
            Expect::Fake(_, Undo::Restore(n, stmt)) => {
                self.statements.insert(n, stmt);
            }
            Expect::Client(Reply::Parse) | Expect::Own(Reply::Parse) => {
                // An unnamed Parse: whose statement the backend holds is unknown.
                if let Some(l) = self.lease.as_mut() {
                    l.backend().unnamed_owner = None;
                }
            }
            _ => {}
        }
    }

    /// Gives the backend back once it is idle with nothing owed; after a
    /// transaction that changed settings, reads them back first.
    fn maybe_release(&mut self) -> Option<End> {
        let lease = self.lease.as_mut()?;
        let b = lease.backend();
        if !self.queue.is_empty() || self.unsynced || b.status != b'I' || !self.to_backend.is_empty() {
            return None;
        }
        if b.tracked.len() != TRACKED_SETTINGS.len() {
            // Its settings are unknown: close it rather than give it back.
            self.ctx.cancel.set(None);
            self.lease = None;
            return None;
        }
        if self.touched || self.reset_all {
            let reset = std::mem::take(&mut self.reset_all);
            self.touched = false;
            if reset {
                // RESET ALL brought back the backend's login values; the
                // client's own startup values come back, as in PostgreSQL.
                let changes: Vec<(usize, &str)> = self
                    .ctx
                    .baseline
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i, v.as_str()))
                    .collect();
                if let Some(sql) = replay_sql(&changes) {
                    self.to_backend.put_slice(&query_message(&sql));
                    // The client saw RESET ALL's ParameterStatus; it sees
                    // its startup values come back too.
                    self.queue.push_back(Expect::OwnQuery {
                        readback: false,
                        report: true,
                    });
                }
            }
            self.to_backend.put_slice(&query_message(&readback_sql()));
            self.queue.push_back(Expect::OwnQuery {
                readback: true,
                report: false,
            });
            return None;
        }
        self.ctx.cancel.set(None);
        if let Some(l) = self.lease.take() {
            l.release();
        }
        None
    }

    /// At the end of the session: a backend still held is given back if it
    /// is idle, else its work is cancelled and it is closed.
    async fn finish(&mut self, end: &End) {
        self.ctx.cancel.set(None);
        let Some(mut lease) = self.lease.take() else { return };
        let idle = self.queue.is_empty() && !self.unsynced && self.to_backend.is_empty() && {
            let b = lease.backend();
            b.status == b'I' && b.rbuf.is_empty() && b.tracked.len() == TRACKED_SETTINGS.len()
        };
        if idle && !matches!(end, End::Io(_) | End::UpstreamClosed { .. }) && !self.touched && !self.reset_all {
            lease.release();
            return;
        }
        let abandoned = !self.queue.is_empty();
        if abandoned {
            if let Some((pid, secret)) = lease.backend().key {
                let connector = self.pool.connector().clone();
                tokio::spawn(async move {
                    let _ = connector.cancel(pid, secret).await;
                });
            }
        }
        let b = lease.backend();
        let _ = tokio::time::timeout(LAST_WRITE_TIMEOUT, async {
            b.writer.write_all(&[b'X', 0, 0, 0, 4]).await?;
            b.writer.shutdown().await
        })
        .await;
        drop(lease);
    }
}

/// Whether an ErrorResponse is FATAL or PANIC: the server closes the
/// connection after it. Read from the non-localised severity (`V`), or the
/// localised one (`S`) from a server that sends no `V`.
fn closes_connection(body: &[u8]) -> bool {
    let severity = super::backend::error_field(body, b'V').or_else(|| super::backend::error_field(body, b'S'));
    matches!(severity.as_deref(), Some("FATAL" | "PANIC"))
}

/// Appends a message with `tag` and `body`.
fn forward(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.reserve(body.len() + 5);
    out.put_u8(tag);
    out.put_i32((body.len() + 4) as i32);
    out.put_slice(body);
}

fn ready_for_query(out: &mut BytesMut, status: u8) {
    write_message(out, b'Z', |m| m.put_u8(status));
}

fn malformed() -> ClientError {
    ClientError::error(
        SqlState::ProtocolViolation,
        "malformed protocol message refused by pg-tenant-proxy",
    )
}

fn bad_server(what: &str) -> End {
    warn!(what, "pooled backend sent something unexpected");
    End::Fatal(ClientError::fatal(
        SqlState::ConnectionFailure,
        format!("the database server sent {what}"),
    ))
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
