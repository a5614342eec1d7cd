//! The statement policy: decides, for every client Query, Parse and
//! FunctionCall, whether it may reach the server unchanged, must be rewritten
//! (tenant-scoped LISTEN/NOTIFY channels) or is refused. Fail closed.
//!
//! Input: statement text from the client, untrusted bytes. It is parsed with
//! PostgreSQL's own parser (`pg_query`) and every node of the resulting tree
//! is visited (see [`tree`] and [`walk`]); anything that cannot be decoded,
//! parsed or flattened is refused.
//!
//! # Layout
//! - `flat`: parses with PostgreSQL's grammar straight into flattened trees.
//! - `parse`: the protobuf parse tree, for the LISTEN/NOTIFY rewrite.
//! - `tree`: the flattened, pre-order form of a statement's parse tree.
//! - `walk`: the per-node rules.
//! - `settings`: SET / RESET / set_config decisions.
//! - `functions`: side-channel and dynamic-SQL names.
//! - `notify`: per-tenant channel scoping.
//! - `prefilter`: lets plainly safe statements skip the full walk.
//! - `cache`: the shared verdict cache.
//! - `refusal`: the client-visible messages.
//!
//! See `docs/threat-model.md` for the classes of attack and each decision.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::panic))]

mod cache;
mod flat;
mod functions;
mod limits;
mod notify;
mod parse;
mod prefilter;
mod refusal;
mod settings;
mod tree;
mod walk;

use crate::error::ClientError;
use crate::metrics::{self, GuardPath};
use cache::{Cached, VerdictCache};
pub use limits::{LimitError, SettingLimits, DEFAULT_LIMITS};
pub use notify::MAX_CLIENT_CHANNEL_BYTES;
pub use walk::Effects;

/// The settings the proxy pins at upstream startup (see [`crate::pin`]).
/// Always protected, even when the configured list omits them.
pub use crate::pin::PINNED_SETTINGS;

/// Policy switches, from the `[guard]` section of the configuration.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Settings no client may SET, RESET or set_config. The two pinned
    /// settings are always added.
    pub protected_settings: Vec<String>,
    /// Let `DO` blocks through (their body cannot be inspected).
    pub allow_do_blocks: bool,
    /// Let `CREATE FUNCTION` / `CREATE PROCEDURE` through (`SET` clauses and
    /// SQL-standard bodies are still checked; string bodies are not).
    pub allow_create_function: bool,
    /// Let `EXPLAIN` through. Its row estimates (and `EXPLAIN ANALYZE`'s
    /// "rows removed by filter") come from every tenant's rows.
    pub allow_explain: bool,
    /// Ceilings on resource settings (name to value, e.g. `work_mem =
    /// "64MB"`); absent: [`DEFAULT_LIMITS`]. Applies to SET, set_config and
    /// startup parameters; a timeout with a ceiling cannot be set to 0.
    pub setting_limits: Option<std::collections::BTreeMap<String, String>>,
    /// Verdicts kept in the shared cache; 0 disables it.
    pub verdict_cache_entries: usize,
    /// Longest statement text (one Query or Parse) the guard parses; longer
    /// ones are refused with 54000. Bounds the memory one message can make
    /// the parser use (about 100-150 bytes per byte of text at worst).
    pub max_statement_bytes: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            protected_settings: PINNED_SETTINGS.iter().map(|s| (*s).to_owned()).collect(),
            allow_do_blocks: false,
            allow_create_function: false,
            allow_explain: false,
            setting_limits: None,
            verdict_cache_entries: DEFAULT_VERDICT_CACHE_ENTRIES,
            max_statement_bytes: DEFAULT_MAX_STATEMENT_BYTES,
        }
    }
}

/// Default of [`GuardConfig::verdict_cache_entries`].
pub const DEFAULT_VERDICT_CACHE_ENTRIES: usize = 4096;

/// Default of [`GuardConfig::max_statement_bytes`]: 1 MiB.
pub const DEFAULT_MAX_STATEMENT_BYTES: usize = 1 << 20;

/// What to do with one client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the message unchanged.
    Allow,
    /// Forward this statement text instead (re-encode the Query/Parse).
    Rewrite(String),
    /// Refuse the message; send this ErrorResponse (`Severity::Error`).
    Deny(ClientError),
}

/// The statement policy, built once and shared by all sessions.
pub struct Guard {
    policy: walk::Policy,
    /// Transaction pool mode (see [`walk::Policy::pooled`]).
    pooled: bool,
    max_statement_bytes: usize,
    cache: Option<VerdictCache>,
}

/// Per-session state the policy needs: the tenant's channel prefix.
#[derive(Debug, Clone)]
pub struct TenantScope {
    prefix: String,
}

impl TenantScope {
    /// The scope of a session pinned to `organization_id`.
    pub fn new(organization_id: uuid::Uuid) -> TenantScope {
        TenantScope {
            prefix: notify::channel_prefix(&organization_id),
        }
    }

    /// For an upstream NotificationResponse channel: `Some(name the client
    /// used)` if the channel belongs to this tenant, `None` to drop it.
    pub fn unscope_channel<'a>(&self, upstream_channel: &'a str) -> Option<&'a str> {
        upstream_channel.strip_prefix(self.prefix.as_str())
    }

    /// The upstream name of a client channel (for tests and diagnostics).
    pub fn scoped_channel(&self, client_channel: &str) -> String {
        format!("{}{client_channel}", self.prefix)
    }
}

/// Outcome of the tenant-independent part of a check.
enum Checked {
    Verdict(Cached),
    /// Allowed, but top-level LISTEN/NOTIFY/UNLISTEN statements, and this
    /// many `pg_notify()` calls, need scoping.
    NeedsRewrite(pg_query::protobuf::ParseResult, usize, Effects),
}

/// Words that send a statement to the full walk in transaction pool mode,
/// on top of the prefilter's own screen: the session state the parse-free
/// path would otherwise let through (`SELECT ... INTO TEMP`, `DECLARE ...
/// WITH HOLD`, SQL-level `EXECUTE`/`DEALLOCATE`, `DISCARD ALL`). Keywords
/// are ASCII and matched case-insensitively by PostgreSQL, so a substring
/// test finds every keyword use (and some other words, which merely take
/// the longer path).
const POOLED_SCREEN: &[&[u8]] = &[b"temp", b"hold", b"execute", b"deallocate", b"discard", b"declare"];

fn pooled_screen_hit(text: &[u8]) -> bool {
    text.iter().enumerate().any(|(i, b)| {
        matches!(b | 0x20, b't' | b'h' | b'e' | b'd')
            && POOLED_SCREEN.iter().any(|word| {
                text.get(i..i.saturating_add(word.len()))
                    .is_some_and(|w| w.eq_ignore_ascii_case(word))
            })
    })
}

impl Guard {
    /// Validates the configuration and builds the guard for session mode.
    pub fn new(cfg: &GuardConfig) -> Result<Guard, String> {
        Self::for_mode(cfg, false)
    }

    /// Builds the guard; `pooled` for transaction pool mode, which also
    /// refuses session state that would outlive a transaction and reports
    /// changes of tracked settings.
    pub fn for_mode(cfg: &GuardConfig, pooled: bool) -> Result<Guard, String> {
        let mut protected: Vec<String> = Vec::new();
        for raw in cfg.protected_settings.iter().map(String::as_str).chain(PINNED_SETTINGS) {
            let name = settings::normalise_config_name(raw)?;
            if !protected.contains(&name) {
                protected.push(name);
            }
        }
        if cfg.max_statement_bytes == 0 {
            return Err("guard.max_statement_bytes must be at least 1".into());
        }
        Ok(Guard {
            pooled,
            max_statement_bytes: cfg.max_statement_bytes,
            policy: walk::Policy {
                settings: settings::Settings::new(protected, SettingLimits::new(cfg.setting_limits.as_ref())?),
                allow_do_blocks: cfg.allow_do_blocks,
                allow_create_function: cfg.allow_create_function,
                allow_explain: cfg.allow_explain,
                pooled,
            },
            cache: VerdictCache::new(cfg.verdict_cache_entries),
        })
    }

    /// Longest statement text the guard inspects; longer ones are refused.
    pub fn max_statement_bytes(&self) -> usize {
        self.max_statement_bytes
    }

    /// Body of a simple-protocol Query message, without the trailing NUL.
    /// Untrusted bytes. Any refused statement refuses the whole message.
    pub fn check_query(&self, sql: &[u8], scope: &TenantScope) -> Verdict {
        self.check(sql, scope).0
    }

    /// Query string of an extended-protocol Parse message, without the NUL.
    pub fn check_parse(&self, sql: &[u8], scope: &TenantScope) -> Verdict {
        self.check(sql, scope).0
    }

    /// Like [`Guard::check_query`] and [`Guard::check_parse`], with what an
    /// allowed text does to the session (transaction pool mode).
    pub fn check_with_effects(&self, sql: &[u8], scope: &TenantScope) -> (Verdict, Effects) {
        self.check(sql, scope)
    }

    /// The fast-path FunctionCall (`'F'`) message: always refused, since it
    /// calls any function by OID (`set_config` included).
    pub fn check_function_call(&self) -> Verdict {
        Verdict::Deny(refusal::fast_path())
    }

    fn check(&self, sql: &[u8], scope: &TenantScope) -> (Verdict, Effects) {
        let text = match std::str::from_utf8(sql) {
            Ok(t) => t,
            Err(_) => return (Verdict::Deny(refusal::invalid_utf8()), Effects::default()),
        };
        // One plain statement: decided from the bytes alone, cheaper than a
        // cache lookup and never cached (statements with ever-new literals
        // would only push out the verdicts of statements that repeat).
        if text.len() <= self.max_statement_bytes
            && prefilter::one_plain_statement(text)
            && !(self.pooled && pooled_screen_hit(sql))
        {
            metrics::guard_path(GuardPath::FastPath);
            return (Verdict::Allow, Effects::default());
        }
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(sql)) {
            metrics::guard_path(GuardPath::Cache);
            return to_verdict(hit);
        }
        metrics::guard_path(GuardPath::FullWalk);
        let started = std::time::Instant::now();
        let checked = self.check_text(text);
        metrics::get()
            .guard_walk_seconds
            .observe(started.elapsed().as_secs_f64());
        match checked {
            Checked::Verdict(v) => {
                if let Some(c) = &self.cache {
                    c.insert(sql, v.clone());
                }
                to_verdict(v)
            }
            Checked::NeedsRewrite(parsed, calls, effects) => match rewrite(text, &parsed, calls, scope) {
                Ok(new_sql) => (Verdict::Rewrite(new_sql), effects),
                Err(e) => (Verdict::Deny(e), Effects::default()),
            },
        }
    }

    /// The tenant-independent decision for valid UTF-8 text.
    fn check_text(&self, text: &str) -> Checked {
        if text.contains('\0') {
            return Checked::Verdict(Cached::Deny(refusal::nul_byte()));
        }
        if text.len() > self.max_statement_bytes {
            return Checked::Verdict(Cached::Deny(refusal::statement_too_long(
                text.len(),
                self.max_statement_bytes,
            )));
        }
        if prefilter::plainly_safe(text) && !(self.pooled && pooled_screen_hit(text.as_bytes())) {
            return Checked::Verdict(Cached::Allow(Effects::default()));
        }
        self.walk_text(text)
    }

    /// The full decision: parse, flatten and walk every statement.
    fn walk_text(&self, text: &str) -> Checked {
        let trees = match flat::parse(text) {
            Ok(t) => t,
            Err(e) => return Checked::Verdict(Cached::Deny(parse_refusal(e))),
        };
        let mut rewrite_needed = false;
        let mut calls = 0usize;
        let mut effects = Effects::default();
        for tree in &trees {
            match self.policy.check(tree) {
                Ok(e) => effects = effects.union(e),
                Err(e) => return Checked::Verdict(Cached::Deny(e)),
            }
            rewrite_needed |= notify::needs_rewrite(tree);
            calls += notify::pg_notify_calls(tree);
        }
        // DISCARD ALL runs only outside a transaction block, so only alone.
        if effects.discard_all && trees.len() != 1 {
            return Checked::Verdict(Cached::Deny(refusal::pooled_outside_block(
                "DISCARD ALL together with other statements",
            )));
        }
        if !rewrite_needed && calls == 0 {
            return Checked::Verdict(Cached::Allow(effects));
        }
        // Rare (LISTEN/NOTIFY/pg_notify): the rewrite needs statement spans
        // and values, which the protobuf tree carries.
        match parse::parse(text) {
            Ok(parsed) => Checked::NeedsRewrite(parsed, calls, effects),
            Err(e) => Checked::Verdict(Cached::Deny(parse_refusal(e))),
        }
    }
}

/// Whether the statement text (one statement, as in a Parse) begins with
/// COMMIT, END, ROLLBACK or ABORT: it ends the transaction (ROLLBACK TO
/// SAVEPOINT included, which PostgreSQL also runs in a failed transaction).
/// Read with the prefilter's lexer, whose first-keyword answer is fuzzed
/// against PostgreSQL's scanner.
pub fn ends_transaction(sql: &[u8]) -> bool {
    std::str::from_utf8(sql)
        .ok()
        .and_then(prefilter::first_word)
        .is_some_and(|w| {
            ["commit", "end", "rollback", "abort"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(w))
        })
}

/// Whether the statement text ends its transaction for good: COMMIT, END,
/// ABORT or ROLLBACK, but not `ROLLBACK TO [SAVEPOINT]`, after which the
/// transaction (and what was set in it before the savepoint) goes on.
/// Used by the `set_local` pin form, which refuses a statement that follows
/// one of these in the same Sync block (it would run unpinned).
pub fn closes_transaction(sql: &[u8]) -> bool {
    if !ends_transaction(sql) {
        return false;
    }
    // `ROLLBACK [WORK | TRANSACTION] TO ...` is asked of PostgreSQL's own
    // grammar (comments and any whitespace between the words are its to
    // read). Only ROLLBACK texts get here, rarely, and never per message.
    let is_rollback = std::str::from_utf8(sql)
        .ok()
        .and_then(prefilter::first_word)
        .is_some_and(|w| w.eq_ignore_ascii_case("rollback"));
    if !is_rollback {
        return true;
    }
    let rollback_to = std::str::from_utf8(sql)
        .ok()
        .and_then(|text| parse::parse(text).ok())
        .is_some_and(|tree| {
            use pg_query::protobuf::node::Node;
            use pg_query::protobuf::TransactionStmtKind;
            matches!(
                tree.stmts.as_slice(),
                [one] if matches!(
                    one.stmt.as_ref().and_then(|n| n.node.as_ref()),
                    Some(Node::TransactionStmt(t)) if t.kind() == TransactionStmtKind::TransStmtRollbackTo
                )
            )
        });
    // A text PostgreSQL cannot parse fails there; `true` refuses what
    // follows it in the block, which is never unsafe.
    !rollback_to
}

/// Whether the statement text may open a transaction block of its own
/// (`BEGIN`, `START TRANSACTION`) or start a COPY: any `begin`, `start` or
/// `copy` in its bytes, in any case. The `set_local` pin form commits the
/// block it opened in the same write as the client's statement only when
/// this is `false`; otherwise it waits for the statement's ReadyForQuery.
/// A false `true` (the word in a string or a name) costs that wait, nothing
/// else.
pub fn may_begin_or_copy(sql: &[u8]) -> bool {
    let has = |word: &[u8]| sql.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word));
    has(b"copy") || has(b"begin") || has(b"start")
}

/// The refusal, in the `set_local` pin form, of a statement that follows
/// COMMIT or ROLLBACK in the same Sync block: the proxy pins a transaction
/// only where a Sync block begins.
pub fn set_local_statement_after_transaction_end() -> ClientError {
    refusal::pooled(
        "a statement after COMMIT or ROLLBACK in the same Sync block (pin form set_local)",
        "Send Sync after COMMIT or ROLLBACK, then the next statement.",
    )
}

/// The refusal for a statement of `len` bytes, over the `max` the guard
/// inspects (for callers that refuse before the text is complete).
pub fn statement_too_long(len: usize, max: usize) -> ClientError {
    refusal::statement_too_long(len, max)
}

/// The refusal for text that has no usable parse tree.
fn parse_refusal(e: parse::ParseError) -> ClientError {
    match e {
        parse::ParseError::Syntax(msg) => refusal::unparsable(&msg),
        parse::ParseError::TooDeep => refusal::too_deep(),
        parse::ParseError::TooLarge => refusal::too_large(),
        parse::ParseError::Nul | parse::ParseError::NotUtf8 => refusal::invalid_utf8(),
        parse::ParseError::Internal(_) => refusal::internal(),
    }
}

fn to_verdict(c: Cached) -> (Verdict, Effects) {
    match c {
        Cached::Allow(effects) => (Verdict::Allow, effects),
        Cached::Deny(e) => (Verdict::Deny(e), Effects::default()),
    }
}

/// Replaces the span of each top-level LISTEN/NOTIFY/UNLISTEN with its
/// tenant-scoped form, and the channel argument of each of the `calls`
/// `pg_notify()` calls with the prefixed one; every other byte of the message
/// is kept. The result is parsed again and every `pg_notify()` call in it
/// must begin its channel with the prefix, and its protobuf tree must decode
/// within the same nesting limit as the original's, or the message is
/// refused.
fn rewrite(
    text: &str,
    parsed: &pg_query::protobuf::ParseResult,
    calls: usize,
    scope: &TenantScope,
) -> Result<String, ClientError> {
    let mut edits: Vec<(usize, usize, String)> = Vec::with_capacity(parsed.stmts.len() + calls);
    for raw in &parsed.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            return Err(refusal::internal());
        };
        let Some(replacement) = notify::rewrite(node, &scope.prefix) else {
            continue;
        };
        let replacement = replacement?;
        let start = usize::try_from(raw.stmt_location).map_err(|_| refusal::internal())?;
        let end = if raw.stmt_len == 0 {
            text.len()
        } else {
            let len = usize::try_from(raw.stmt_len).map_err(|_| refusal::internal())?;
            start.checked_add(len).ok_or_else(refusal::internal)?
        };
        edits.push((start, end, replacement));
    }
    if calls > 0 {
        let scoped = notify::scope_pg_notify_calls(text, &scope.prefix)?;
        if scoped.len() != calls {
            return Err(refusal::internal());
        }
        edits.extend(scoped);
    }
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(text.len() + 64);
    let mut copied = 0usize;
    for (start, end, replacement) in &edits {
        if *start < copied || *end > text.len() {
            return Err(refusal::internal());
        }
        let before = text.get(copied..*start).ok_or_else(refusal::internal)?;
        out.push_str(before);
        out.push_str(replacement);
        copied = *end;
    }
    let rest = text.get(copied..).ok_or_else(refusal::internal)?;
    out.push_str(rest);
    if calls > 0 {
        if !notify::all_pg_notify_scoped(&out, &scope.prefix, calls, parsed.stmts.len()) {
            return Err(refusal::internal());
        }
        // Each channel argument is now two levels deeper. The original was
        // read into the protobuf tree within its decoder's nesting limit
        // (deeper originals are refused above as too deep); what is sent
        // must be readable the same way, so a call nested right at the limit
        // is refused, not sent deeper than the proxy's rewrite path can read.
        match parse::parse(&out) {
            Ok(_) => {}
            Err(parse::ParseError::TooDeep) => return Err(refusal::too_deep()),
            Err(_) => return Err(refusal::internal()),
        }
    }
    Ok(out)
}

/// The guard's internal decisions, one by one, for the fuzz targets in
/// `fuzz/` and the property tests in `tests/`. Not a stable interface.
#[doc(hidden)]
pub mod probe {
    use super::{prefilter, Checked, Guard};
    use crate::error::ClientError;

    /// What the full parse and walk decide for a text, without the
    /// parse-free path and the cache.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Walk {
        /// Allowed unchanged.
        Allow,
        /// Allowed once LISTEN/NOTIFY/UNLISTEN channels are scoped.
        Rewrite,
        /// Refused because PostgreSQL's parser rejects the text (42601).
        Unparsable,
        /// Refused for any other reason.
        Deny(ClientError),
    }

    /// The full decision for `text` (the walk, never the prefilter).
    pub fn walk(guard: &Guard, text: &str) -> Walk {
        match guard.walk_text(text) {
            Checked::NeedsRewrite(..) => Walk::Rewrite,
            Checked::Verdict(super::cache::Cached::Allow(_)) => Walk::Allow,
            Checked::Verdict(super::cache::Cached::Deny(e)) if e.code == crate::error::SqlState::SyntaxError => {
                Walk::Unparsable
            }
            Checked::Verdict(super::cache::Cached::Deny(e)) => Walk::Deny(e),
        }
    }

    /// The parse-free path's answer.
    pub fn one_plain_statement(text: &str) -> bool {
        prefilter::one_plain_statement(text)
    }

    /// The prefilter's answer for any number of statements, in transaction
    /// pool mode.
    pub fn plainly_safe_pooled(text: &str) -> bool {
        prefilter::plainly_safe(text) && !super::pooled_screen_hit(text.as_bytes())
    }

    /// The parse-free path's answer in transaction pool mode.
    pub fn one_plain_statement_pooled(text: &str) -> bool {
        prefilter::one_plain_statement(text) && !super::pooled_screen_hit(text.as_bytes())
    }

    /// The full walk's decision and session effects (for a guard built with
    /// [`Guard::for_mode`]): `None` when it refuses or needs a rewrite.
    pub fn walk_effects(guard: &Guard, text: &str) -> Option<super::Effects> {
        match guard.walk_text(text) {
            Checked::Verdict(super::cache::Cached::Allow(e)) => Some(e),
            _ => None,
        }
    }

    /// The prefilter's answer for any number of statements.
    pub fn plainly_safe(text: &str) -> bool {
        prefilter::plainly_safe(text)
    }

    /// The byte screen shared by both prefilter paths.
    pub fn no_hidden_names(text: &[u8]) -> bool {
        prefilter::no_hidden_names(text)
    }

    /// Whether the quote at `at` is followed by a string continuation.
    pub fn string_continues_after(text: &[u8], at: usize) -> (bool, usize) {
        prefilter::string_continues_after(text, at)
    }

    /// Whether the statement's first token is one of the prefilter's keywords.
    pub fn starts_with_query_keyword(stmt: &str) -> bool {
        prefilter::starts_with_query_keyword(stmt)
    }

    /// The prefilter's keywords, lower case.
    pub fn query_keywords() -> &'static [&'static str] {
        prefilter::QUERY_KEYWORDS
    }
}

#[cfg(test)]
mod tests;
