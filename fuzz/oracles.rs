//! The differential oracles: each compares one of the guard's decisions with
//! PostgreSQL's own scanner and parser (`pg_query`, PostgreSQL 18's lexer and
//! grammar) and returns `Err(description)` on a disagreement.
//!
//! Shared, unchanged, by the libFuzzer targets (`fuzz/fuzz_targets/*.rs`,
//! `#[path]`-included) and by the stable replay of the committed corpora
//! (`tests/fuzz_corpus.rs`), so every oracle is written once.
//!
//! What each target proves (for the inputs it runs):
//! - `fast_path`: whenever the parse-free path (`one_plain_statement`) or the
//!   prefilter (`plainly_safe`) passes a text, the full parse and walk allow it
//!   or find it unparsable; `one_plain_statement` texts are one statement;
//!   every statement the prefilter passed starts with one of its keywords as
//!   PostgreSQL's scanner reads it ([`first_keyword_claim`]). The same holds
//!   for the guard of transaction pool mode, whose walk must moreover report
//!   no session effect for what its parse-free paths pass ([`pooled_claims`]).
//! - `first_keyword`: `starts_with_query_keyword` is true only if the first
//!   token PostgreSQL's scanner reads (after comments and `(`) is a keyword of
//!   `query_keywords()`, and no byte before it is read as whitespace by
//!   pg_query's lexer but not by PostgreSQL 15 (vertical tab).
//! - `string_continuation`: wherever the scanner reads one string constant
//!   across a continuation (`'a'` newline `'b'`), `string_continues_after`
//!   answers true at the quote that ends the first part and `no_hidden_names`
//!   is false; and `no_hidden_names` is false for every text holding a
//!   backslash, `U&`, or a control byte other than tab, LF, CR and FF.
//! - `notify_rewrite`: a rewritten text parses into as many statements, each
//!   top-level LISTEN/NOTIFY/UNLISTEN carries the tenant prefix (same payload),
//!   every other byte is unchanged, and no channel anywhere in the rewritten
//!   tree lacks the prefix; an allowed text holds no LISTEN/NOTIFY/UNLISTEN of
//!   a channel at all.
//! - `frame`: `peek_header` at every offset reads exactly what the header
//!   bytes say (lengths below 4 and frames over the cap refused, nothing
//!   longer than the cap reported); `split_frame` gives the frames an
//!   independent reading of the layout gives, whole and with a read boundary
//!   anywhere; the relay's client loop sends the same bytes upstream and ends
//!   the same way for one read, one byte per read and seeded reads, and when
//!   it must end the session it has sent nothing of the failing frame.
//! - `startup`: the startup reader, as the handshake runs it, takes exactly
//!   one packet (never a byte past it) and reads what the layout says, the
//!   same in any reads; accepted packets re-encode byte for byte with
//!   postgres-protocol's frontend encoder; others are refused with the
//!   error their layout calls for; accepted startup messages pass the
//!   parameter policy or are refused FATAL with 28000 / 3D000.
//! - `options`: `parse_options` equals a model of PostgreSQL's
//!   `pg_split_opts` and its `-c` / `--` switch reading, and the policy
//!   forwards exactly the settings PostgreSQL would have set (or refuses).
//! - `jwt_claims`: the organization / user id at a dotted claim path equals
//!   a JSON Pointer lookup in `serde_json::Value` (objects only) with the
//!   UUID formats `Uuid::parse_str` documents; a signed token with the same
//!   claims verifies to exactly those ids or is refused.
//!
//! Known limit: a text pg_query's scanner cannot lex (an unterminated quote,
//! PostgreSQL 16+'s "trailing junk after numeric literal") gives no tokens, so
//! `string_continuation` checks only its byte claims on it; `fast_path` still
//! checks such texts against the walk.

#![allow(dead_code)]

use pg_query::protobuf::{KeywordKind, ScanToken, Token};
use pg_query::NodeEnum;
use pg_tenant_proxy::auth::jwt::{probe as jwt_probe, AuthError, Verifier};
use pg_tenant_proxy::config::{JwtConfig, KeySource};
use pg_tenant_proxy::error::{ClientError, Severity, SqlState};
use pg_tenant_proxy::guard::probe::{self, Walk};
use pg_tenant_proxy::guard::{Effects, Guard, GuardConfig, TenantScope, Verdict};
use pg_tenant_proxy::handshake::{probe as handshake_probe, HandshakePolicy};
use pg_tenant_proxy::protocol::frame::{self, FrameError};
use pg_tenant_proxy::protocol::startup::{probe as startup_probe, StartupError, StartupPacket};
use std::sync::OnceLock;

/// The fuzz targets, which are also the corpus directories under `fuzz/corpus/`.
pub const TARGETS: [&str; 8] = [
    "fast_path",
    "first_keyword",
    "string_continuation",
    "notify_rewrite",
    "frame",
    "startup",
    "options",
    "jwt_claims",
];

/// The tenant whose scope the rewrite oracle uses.
pub const ORG: uuid::Uuid = uuid::Uuid::from_u128(0xaaaa_aaaa_0000_4000_8000_0000_0000_0001);

/// Its channel prefix, computed outside the guard (base64url of the 16 bytes,
/// no padding, then `:`), so the oracle does not trust `notify.rs`.
pub const ORG_CHANNEL_PREFIX: &str = "qqqqqgAAQACAAAAAAAAAAQ:";

/// Runs the oracle of `target` on one input.
pub fn check(target: &str, data: &[u8]) -> Result<(), String> {
    match target {
        "fast_path" => fast_path(data),
        "first_keyword" => first_keyword(data),
        "string_continuation" => string_continuation(data),
        "notify_rewrite" => notify_rewrite(data),
        "frame" => frame(data),
        "startup" => startup(data),
        "options" => options(data),
        "jwt_claims" => jwt_claims(data),
        other => Err(format!("no oracle named {other}")),
    }
}

/// The guard as shipped, but without the verdict cache (every call decides).
pub fn guard() -> &'static Guard {
    static GUARD: OnceLock<Guard> = OnceLock::new();
    GUARD.get_or_init(|| {
        let cfg = GuardConfig {
            verdict_cache_entries: 0,
            ..GuardConfig::default()
        };
        match Guard::new(&cfg) {
            Ok(g) => g,
            Err(e) => panic!("default guard configuration refused: {e}"),
        }
    })
}

/// The guard of transaction pool mode, without the verdict cache.
pub fn pooled_guard() -> &'static Guard {
    static GUARD: OnceLock<Guard> = OnceLock::new();
    GUARD.get_or_init(|| {
        let cfg = GuardConfig {
            verdict_cache_entries: 0,
            ..GuardConfig::default()
        };
        match Guard::for_mode(&cfg, true) {
            Ok(g) => g,
            Err(e) => panic!("default guard configuration refused: {e}"),
        }
    })
}

fn scope() -> &'static TenantScope {
    static SCOPE: OnceLock<TenantScope> = OnceLock::new();
    SCOPE.get_or_init(|| TenantScope::new(ORG))
}

// ---------------------------------------------------------------- fast_path

/// Target 1: the prefilter's "plainly safe" against the full parse and walk.
pub fn fast_path(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        // The guard decodes first: invalid UTF-8 never reaches the prefilter.
        return match guard().check_query(data, scope()) {
            Verdict::Deny(e) if e.code == SqlState::CharacterNotInRepertoire => Ok(()),
            other => Err(format!("invalid UTF-8 {data:?} was not refused with 22021: {other:?}")),
        };
    };
    fast_path_claims(text, probe::one_plain_statement(text), probe::plainly_safe(text))?;
    pooled_claims(
        text,
        probe::one_plain_statement_pooled(text),
        probe::plainly_safe_pooled(text),
    )
}

/// Transaction pool mode: what its parse-free paths pass, its walk allows
/// with no session effect (or finds unparsable), so nothing that would
/// outlive the transaction, and no tracked setting, skips the walk.
pub fn pooled_claims(text: &str, one: bool, many: bool) -> Result<(), String> {
    if !one && !many {
        return Ok(());
    }
    match probe::walk(pooled_guard(), text) {
        Walk::Unparsable => Ok(()),
        Walk::Allow => match probe::walk_effects(pooled_guard(), text) {
            Some(e) if e == Effects::default() => Ok(()),
            other => Err(format!(
                "pooled prefilter passed (one={one}, many={many}) a text with session effects {other:?}: {text:?}"
            )),
        },
        other => Err(format!(
            "pooled prefilter passed (one={one}, many={many}) but the pooled walk says {other:?}: {text:?}"
        )),
    }
}

/// The oracle, with the prefilter's answers passed in so tests can check it
/// rejects wrong ones.
pub fn fast_path_claims(text: &str, one: bool, many: bool) -> Result<(), String> {
    if !one && !many {
        return Ok(());
    }
    match probe::walk(guard(), text) {
        Walk::Allow | Walk::Unparsable => {}
        other => {
            return Err(format!(
            "prefilter passed (one_plain_statement={one}, plainly_safe={many}) but the walk says {other:?}: {text:?}"
        ))
        }
    }
    if one {
        first_keyword_claim(text, true)?;
        if let Ok(statements) = pg_query::split_with_parser(text) {
            if statements.len() > 1 {
                return Err(format!(
                    "one_plain_statement passed {} statements: {text:?}",
                    statements.len()
                ));
            }
        }
    }
    if many {
        let statements = pg_query::split_with_parser(text)
            .map_err(|e| format!("plainly_safe passed a text the parser cannot split ({e}): {text:?}"))?;
        for s in statements {
            first_keyword_claim(s, true)?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------ first_keyword

/// Target 2: `starts_with_query_keyword` against the scanner's first token.
pub fn first_keyword(data: &[u8]) -> Result<(), String> {
    let Ok(stmt) = std::str::from_utf8(data) else {
        return Ok(());
    };
    // PostgreSQL reads a statement only up to a NUL (a C string), and the
    // guard never asks this question of such a text: `no_hidden_names`
    // declines NUL and `split_with_parser` fails on it (`fast_path` checks
    // both callers end to end).
    if stmt.contains('\0') {
        return Ok(());
    }
    first_keyword_claim(stmt, probe::starts_with_query_keyword(stmt))
}

/// Tokens `starts_with_query_keyword` may skip before the keyword.
fn skipped_before_keyword(t: &ScanToken) -> bool {
    t.token == Token::SqlComment as i32 || t.token == Token::CComment as i32 || t.token == Token::Ascii40 as i32
}

/// `pg_query::scan_tokens`, except on text without a token: there it would
/// build a slice from a null pointer (undefined behaviour, which nightly's
/// precondition checks abort on). Only whitespace gives no token (every
/// other byte starts a token, a comment or an error).
fn scan_tokens(text: &str) -> pg_query::Result<Vec<ScanToken>> {
    if text
        .bytes()
        .all(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'))
    {
        return Ok(Vec::new());
    }
    pg_query::scan_tokens(text)
}

fn span(t: &ScanToken) -> Option<(usize, usize)> {
    Some((usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?))
}

/// `ident_cont` in scan.l: the bytes that continue an identifier or keyword.
fn continues_identifier(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// The tokens up to and including the first one not skipped before the
/// keyword, as PostgreSQL's scanner reads `stmt`.
///
/// When the whole text does not lex (an error after the first token), the
/// shortest prefix that lexes and reads a first token that cannot grow with
/// the bytes after the prefix gives the same tokens: one ending before the
/// prefix does, or a word (identifier or keyword, two bytes or more, so not
/// the `E`, `B`, `X`, `N` or `U` of a string start) followed in the full text
/// by a byte that is not `ident_cont` (no scan.l rule matching from the
/// word's start is longer then).
fn leading_tokens(stmt: &str) -> Result<Vec<ScanToken>, String> {
    let bytes = stmt.as_bytes();
    let take = |tokens: Vec<ScanToken>, limit: usize| -> Option<Vec<ScanToken>> {
        let at = tokens.iter().position(|t| !skipped_before_keyword(t))?;
        let first = tokens.get(at)?;
        let (s, e) = span(first)?;
        let word = first.token == Token::Ident as i32 || first.keyword_kind != KeywordKind::NoKeyword as i32;
        let complete =
            e < limit || (e == limit && word && e - s >= 2 && !bytes.get(e).copied().is_some_and(continues_identifier));
        complete.then(|| tokens.into_iter().take(at + 1).collect())
    };
    if let Ok(tokens) = scan_tokens(stmt) {
        return take(tokens, usize::MAX).ok_or_else(|| format!("no token after comments and '(': {stmt:?}"));
    }
    for (k, _) in stmt.char_indices().skip(1) {
        if let Some(prefix) = stmt.get(..k) {
            if let Ok(tokens) = scan_tokens(prefix) {
                if let Some(t) = take(tokens, k) {
                    return Ok(t);
                }
            }
        }
    }
    Err(format!("the scanner reads no first token: {stmt:?}"))
}

/// Checks a claim that `stmt` starts with one of the prefilter's keywords.
/// Public so tests can feed it claims an old or wrong screen would make.
pub fn first_keyword_claim(stmt: &str, claimed: bool) -> Result<(), String> {
    if !claimed {
        return Ok(());
    }
    let tokens = leading_tokens(stmt)?;
    let Some(first) = tokens.last() else {
        return Err(format!("no first token: {stmt:?}"));
    };
    let (start, end) = span(first).ok_or("bad span")?;
    let word = stmt.get(start..end).unwrap_or_default().to_ascii_lowercase();
    if first.keyword_kind == KeywordKind::NoKeyword as i32 || !probe::query_keywords().contains(&word.as_str()) {
        return Err(format!(
            "starts_with_query_keyword is true but PostgreSQL's first token is {word:?} (token {}, keyword kind {}): {stmt:?}",
            first.token, first.keyword_kind
        ));
    }
    // Bytes between the tokens are whitespace to pg_query's lexer; PostgreSQL
    // 15 does not count vertical tab as whitespace, so it would read otherwise.
    let mut prev_end = 0usize;
    for t in &tokens {
        let (s, e) = span(t).ok_or("bad span")?;
        if stmt.get(prev_end..s).unwrap_or_default().contains('\x0b') {
            return Err(format!(
                "vertical tab before the first keyword (not whitespace in PostgreSQL 15): {stmt:?}"
            ));
        }
        prev_end = e;
    }
    Ok(())
}

// ------------------------------------------------------ string_continuation

const STRING_TOKENS: [Token; 4] = [Token::Sconst, Token::Usconst, Token::Bconst, Token::Xconst];

/// Byte positions of every quote that ends one part of a string constant the
/// scanner continues (`'a'<newline>'b'`: the quote after `a`). A quote ends a
/// part if the token's text up to it lexes, alone, as one whole string
/// constant of the same kind; the token continues after it if more of the
/// token follows and the next byte is not a quote (which would be a doubled
/// quote). Each comes with the end of its token. Empty if the text does not
/// lex.
pub fn continuations(text: &str) -> Vec<(usize, usize)> {
    let Ok(tokens) = scan_tokens(text) else {
        return Vec::new();
    };
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    for t in tokens
        .iter()
        .filter(|t| STRING_TOKENS.iter().any(|k| *k as i32 == t.token))
    {
        let Some((s, e)) = span(t) else { continue };
        for q in s..e {
            let after = q + 1;
            if bytes.get(q) != Some(&b'\'') || after >= e || bytes.get(after) == Some(&b'\'') {
                continue;
            }
            let Some(head) = text.get(s..after) else { continue };
            let whole = match scan_tokens(head) {
                Ok(v) => {
                    v.len() == 1
                        && v.first()
                            .is_some_and(|h| h.token == t.token && span(h) == Some((0, head.len())))
                }
                Err(_) => false,
            };
            if whole {
                found.push((q, e));
            }
        }
    }
    found
}

/// Target 3: `no_hidden_names` and `string_continues_after` against the
/// scanner's string constants.
pub fn string_continuation(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    string_continuation_claims(text, probe::no_hidden_names, probe::string_continues_after)
}

/// The oracle, with the screen passed in so tests can check it rejects a
/// wrong one.
pub fn string_continuation_claims(
    text: &str,
    no_hidden_names: impl Fn(&[u8]) -> bool,
    string_continues_after: impl Fn(&[u8], usize) -> (bool, usize),
) -> Result<(), String> {
    let b = text.as_bytes();
    let passes = no_hidden_names(b);
    for (q, token_end) in continuations(text) {
        // pg_query's lexer reads a vertical tab as whitespace, PostgreSQL 15's
        // does not (there the string ends at the quote): the screen follows
        // PostgreSQL 15 and declines every text with a vertical tab instead
        // (checked below). So where a vertical tab follows the quote within
        // the token, only that decline is required.
        let vt_after = b.get(q..token_end).unwrap_or_default().contains(&b'\x0b');
        if !vt_after && !string_continues_after(b, q).0 {
            return Err(format!(
                "the scanner continues the string after the quote at byte {q}, string_continues_after says no: {text:?}"
            ));
        }
        if passes {
            return Err(format!(
                "no_hidden_names passed a string continued after byte {q}: {text:?}"
            ));
        }
    }
    if passes {
        let lower = text.to_ascii_lowercase();
        if let Some(c) = b
            .iter()
            .find(|c| (**c < 0x20 && !matches!(**c, b'\t' | b'\n' | b'\r' | b'\x0c')) || **c == 0x7f || **c == b'\\')
        {
            return Err(format!("no_hidden_names passed byte {c:#04x}: {text:?}"));
        }
        if lower.contains("u&") {
            return Err(format!("no_hidden_names passed a U& escape: {text:?}"));
        }
    }
    Ok(())
}

// ----------------------------------------------------------- notify_rewrite

/// Target 4: the LISTEN/NOTIFY/UNLISTEN rewrite against the parser.
pub fn notify_rewrite(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    match guard().check_query(data, scope()) {
        Verdict::Rewrite(new) => check_rewrite(text, &new),
        Verdict::Allow => no_channel_statement(text),
        Verdict::Deny(_) => Ok(()),
    }
}

/// A top-level statement's channel statement: (kind, channel, payload).
fn channel_stmt(node: Option<&NodeEnum>) -> Option<(&'static str, String, String)> {
    match node? {
        NodeEnum::ListenStmt(s) => Some(("LISTEN", s.conditionname.clone(), String::new())),
        NodeEnum::UnlistenStmt(s) => Some(("UNLISTEN", s.conditionname.clone(), String::new())),
        NodeEnum::NotifyStmt(s) => Some(("NOTIFY", s.conditionname.clone(), s.payload.clone())),
        _ => None,
    }
}

fn stmt_span(text: &str, raw: &pg_query::protobuf::RawStmt) -> Result<(usize, usize), String> {
    let start = usize::try_from(raw.stmt_location).map_err(|e| e.to_string())?;
    let end = if raw.stmt_len == 0 {
        text.len()
    } else {
        start + usize::try_from(raw.stmt_len).map_err(|e| e.to_string())?
    };
    if start > end || end > text.len() {
        return Err(format!("statement span {start}..{end} outside {text:?}"));
    }
    Ok((start, end))
}

/// Every channel named by a LISTEN/NOTIFY/UNLISTEN node anywhere in the tree
/// (a full recursive walk of the serialized tree: no helper skips a subtree).
fn all_channels(text: &str) -> Result<Vec<(String, String)>, String> {
    let parsed = pg_query::parse(text, 0).map_err(|e| format!("does not parse ({e}): {text:?}"))?;
    let value = serde_json::to_value(&parsed.protobuf).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut stack = vec![&value];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    if matches!(k.as_str(), "ListenStmt" | "NotifyStmt" | "UnlistenStmt") {
                        let name = child.get("conditionname").and_then(|c| c.as_str()).unwrap_or_default();
                        out.push((k.clone(), name.to_owned()));
                    }
                    stack.push(child);
                }
            }
            serde_json::Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    Ok(out)
}

pub fn check_rewrite(old_text: &str, new_text: &str) -> Result<(), String> {
    let old =
        pg_query::parse(old_text, 0).map_err(|e| format!("rewrote a text that does not parse ({e}): {old_text:?}"))?;
    let new = pg_query::parse(new_text, 0)
        .map_err(|e| format!("rewritten text does not parse ({e}): {old_text:?} -> {new_text:?}"))?;
    let (old_stmts, new_stmts) = (&old.protobuf.stmts, &new.protobuf.stmts);
    if old_stmts.len() != new_stmts.len() {
        return Err(format!(
            "{} statements became {}: {old_text:?} -> {new_text:?}",
            old_stmts.len(),
            new_stmts.len()
        ));
    }
    // The rewritten text, rebuilt from the original: each rewritten statement's
    // span replaced by the corresponding span of the new text, every other
    // byte copied. It must equal the new text exactly.
    let mut rebuilt = String::new();
    let mut copied = 0usize;
    let mut rewritten = 0usize;
    for (o, n) in old_stmts.iter().zip(new_stmts) {
        let node = |r: &pg_query::protobuf::RawStmt| r.stmt.as_ref().and_then(|s| s.node.clone());
        let (o_node, n_node) = (node(o), node(n));
        let (os, oe) = stmt_span(old_text, o)?;
        let (ns, ne) = stmt_span(new_text, n)?;
        let o_sql = old_text.get(os..oe).unwrap_or_default();
        let n_sql = new_text.get(ns..ne).unwrap_or_default();
        match (channel_stmt(o_node.as_ref()), channel_stmt(n_node.as_ref())) {
            (Some((ok, oc, op)), Some((nk, nc, np))) if !(ok == "UNLISTEN" && oc.is_empty()) => {
                let want = format!("{ORG_CHANNEL_PREFIX}{oc}");
                if ok != nk || nc != want || op != np {
                    return Err(format!(
                        "{ok} {oc:?} {op:?} became {nk} {nc:?} {np:?} (want channel {want:?}): {old_text:?} -> {new_text:?}"
                    ));
                }
                rebuilt.push_str(old_text.get(copied..os).unwrap_or_default());
                rebuilt.push_str(n_sql);
                copied = oe;
                rewritten += 1;
            }
            (None, None) if o_sql != n_sql => {
                // Only pg_notify() channels may change: undoing the prefix
                // must give back the original statement's tree exactly.
                pg_notify_only_scoped(o_sql, n_sql).map_err(|e| format!("{e}: {old_text:?} -> {new_text:?}"))?;
                rebuilt.push_str(old_text.get(copied..os).unwrap_or_default());
                rebuilt.push_str(n_sql);
                copied = oe;
                rewritten += 1;
            }
            (Some(_), _) | (None, Some(_)) | (None, None) => {
                if o_sql != n_sql {
                    return Err(format!(
                        "statement {o_sql:?} changed to {n_sql:?}: {old_text:?} -> {new_text:?}"
                    ));
                }
            }
        }
    }
    rebuilt.push_str(old_text.get(copied..).unwrap_or_default());
    if rebuilt != new_text {
        return Err(format!(
            "bytes outside the rewritten statements changed: {old_text:?} -> {new_text:?} (expected {rebuilt:?})"
        ));
    }
    if rewritten == 0 {
        return Err(format!(
            "Rewrite verdict but no statement needed one: {old_text:?} -> {new_text:?}"
        ));
    }
    if let Some(call) = unscoped_pg_notify(new_text)? {
        return Err(format!("pg_notify call without the prefix: {call} in {new_text:?}"));
    }
    for (kind, channel) in all_channels(new_text)? {
        if !(channel.starts_with(ORG_CHANNEL_PREFIX) || kind == "UnlistenStmt" && channel.is_empty()) {
            return Err(format!("{kind} of unscoped channel {channel:?} in {new_text:?}"));
        }
    }
    Ok(())
}

/// The parse tree as JSON, without the fields that only say where a node
/// was written.
fn tree_json(sql: &str) -> Result<serde_json::Value, String> {
    let parsed = pg_query::parse(sql, 0).map_err(|e| format!("does not parse ({e}): {sql:?}"))?;
    let mut v = serde_json::to_value(&parsed.protobuf).map_err(|e| e.to_string())?;
    strip_locations(&mut v);
    Ok(v)
}

/// Every field of a PostgreSQL 18 parse node that is a `ParseLoc` (a byte
/// offset into the statement text, or -1), as pg_query 18.1 serializes them.
/// Inserting the channel prefix moves every later node, so these, and only
/// these, may differ between a statement and its rewrite. The list must be
/// complete: a location left out (once `list_start`/`list_end` of
/// `ARRAY[...]`, new in PostgreSQL 18) makes every rewrite with such a node
/// after the channel a false disagreement. pg_query is pinned (`=18.1.0`);
/// on an upgrade, take the list again from its `pg_query.proto`
/// (`grep -E 'int32 \w*(location|_start|_end|_len) ='`).
const LOCATION_FIELDS: [&str; 11] = [
    "location",
    "stmt_location",
    "stmt_len",
    "rexpr_list_start",
    "rexpr_list_end",
    "list_start",
    "list_end",
    "arg_location",
    "name_location",
    "payload_location",
    "conninfo_location",
];

/// Removes the location fields: only numbers, because one field of that
/// name is data (`CreateTableSpaceStmt.location` is the directory, a
/// string) and must still be compared.
fn strip_locations(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|k, val| !(LOCATION_FIELDS.contains(&k.as_str()) && val.is_number()));
            map.values_mut().for_each(strip_locations);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_locations),
        _ => {}
    }
}

fn is_pg_notify(call: &serde_json::Value) -> bool {
    call.get("funcname")
        .and_then(|f| f.as_array())
        .and_then(|f| f.last())
        .and_then(|n| n.pointer("/node/String/sval"))
        .and_then(|s| s.as_str())
        .is_some_and(|s| s.eq_ignore_ascii_case("pg_notify"))
}

/// Whether the first argument of a pg_notify call is `'<prefix>' || x`.
fn scoped_argument(call: &serde_json::Value) -> Option<serde_json::Value> {
    let arg = call.get("args")?.as_array()?.first()?.pointer("/node/AExpr")?;
    let op = arg.pointer("/name/0/node/String/sval")?.as_str()?;
    let left = arg.pointer("/lexpr/node/AConst/val/Sval/sval")?.as_str()?;
    (op == "||" && left == ORG_CHANNEL_PREFIX).then(|| arg.get("rexpr").cloned())?
}

/// Applies `f` to every pg_notify FuncCall object in `v`.
fn each_pg_notify(
    v: &mut serde_json::Value,
    f: &mut dyn FnMut(&mut serde_json::Value) -> Result<(), String>,
) -> Result<(), String> {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(call) = map.get_mut("FuncCall") {
                if is_pg_notify(call) {
                    f(call)?;
                }
            }
            for child in map.values_mut() {
                each_pg_notify(child, f)?;
            }
        }
        serde_json::Value::Array(items) => {
            for child in items {
                each_pg_notify(child, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The new statement is the old one with every pg_notify channel argument
/// `x` turned into `'<prefix>' || x`, and nothing else changed.
fn pg_notify_only_scoped(old_sql: &str, new_sql: &str) -> Result<(), String> {
    let old = tree_json(old_sql)?;
    let mut new = tree_json(new_sql)?;
    let mut calls = 0usize;
    each_pg_notify(&mut new, &mut |call| {
        let inner = scoped_argument(call).ok_or_else(|| format!("unscoped pg_notify in {new_sql:?}"))?;
        if let Some(first) = call
            .get_mut("args")
            .and_then(|a| a.as_array_mut())
            .and_then(|a| a.first_mut())
        {
            *first = inner;
        }
        calls += 1;
        Ok(())
    })?;
    if calls == 0 {
        return Err(format!(
            "statement {old_sql:?} changed to {new_sql:?} without a pg_notify call"
        ));
    }
    if old != new {
        return Err(format!(
            "statement {old_sql:?} changed beyond its pg_notify channels: {new_sql:?}"
        ));
    }
    Ok(())
}

/// The first pg_notify call in `text` whose channel lacks the prefix.
fn unscoped_pg_notify(text: &str) -> Result<Option<String>, String> {
    if !text.to_ascii_lowercase().contains("notify") {
        return Ok(None);
    }
    let Ok(mut v) = tree_json(text) else {
        return Ok(None); // Unparsable: the server refuses it too.
    };
    let mut found = None;
    each_pg_notify(&mut v, &mut |call| {
        if found.is_none() && scoped_argument(call).is_none() {
            found = Some(call.to_string());
        }
        Ok(())
    })?;
    Ok(found)
}

/// An allowed text must not reach any channel unscoped.
fn no_channel_statement(text: &str) -> Result<(), String> {
    if let Some(call) = unscoped_pg_notify(text)? {
        return Err(format!("allowed unchanged with a pg_notify call: {call} in {text:?}"));
    }
    let lower = text.to_ascii_lowercase();
    // LISTEN, NOTIFY and UNLISTEN are keywords: no quoting or escape spells them.
    if !(lower.contains("listen") || lower.contains("notify")) {
        return Ok(());
    }
    let Ok(channels) = all_channels(text) else {
        return Ok(()); // Unparsable: the server refuses it too.
    };
    match channels
        .into_iter()
        .find(|(kind, channel)| !(kind == "UnlistenStmt" && channel.is_empty()))
    {
        Some((kind, channel)) => Err(format!(
            "allowed unchanged with {kind} of channel {channel:?}: {text:?}"
        )),
        None => Ok(()),
    }
}

// -------------------------------------------------------------------- frame

/// Message caps the frame target picks from (the first input byte): the
/// smallest legal frame, around small frames, and the configured default.
pub const FRAME_CAPS: [usize; 8] = [5, 6, 9, 16, 40, 64, 300, 1 << 20];

/// Statement limit of the relay's guard in the frame target: small, so Query
/// and Parse frames over it take the relay's streamed-refusal path.
pub const RELAY_MAX_STATEMENT_BYTES: usize = 24;

/// What an independent reading of the frame layout (tag, int32 length that
/// counts itself, body) finds in a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFrames {
    /// (tag, body) of each whole frame, in order.
    pub frames: Vec<(u8, Vec<u8>)>,
    /// Where reading stopped: the offset of a refused header, or of the
    /// first incomplete frame (the end of the stream if none).
    pub stop: usize,
    /// The refusal at `stop`, if the header there is refused.
    pub error: Option<FrameError>,
}

/// The frame layout read from scratch: every frame whose length field is at
/// least 4 and whose whole size is at most `cap`, until the first header
/// that is not, or the first frame not all there.
pub fn model_frames(stream: &[u8], cap: usize) -> ModelFrames {
    let mut frames = Vec::new();
    let mut at = 0usize;
    loop {
        let Some(header) = stream.get(at..at + 5) else {
            return ModelFrames {
                frames,
                stop: at,
                error: None,
            };
        };
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if len < 4 {
            return ModelFrames {
                frames,
                stop: at,
                error: Some(FrameError::BadLength(len)),
            };
        }
        let total = i64::from(len) + 1;
        if total > cap as i64 {
            let total = total as usize;
            return ModelFrames {
                frames,
                stop: at,
                error: Some(FrameError::TooLarge { total, max: cap }),
            };
        }
        let end = at + total as usize;
        let Some(body) = stream.get(at + 5..end) else {
            return ModelFrames {
                frames,
                stop: at,
                error: None,
            };
        };
        frames.push((header[0], body.to_vec()));
        at = end;
    }
}

/// `peek_header` at `at` against the header bytes there.
fn peek_header_claims(stream: &[u8], at: usize, cap: usize) -> Result<(), String> {
    let got = frame::peek_header(stream, at, cap);
    let want = match stream.get(at..at + 5) {
        None => Ok(None),
        Some(h) => {
            let len = i32::from_be_bytes([h[1], h[2], h[3], h[4]]);
            let total = i64::from(len) + 1;
            if len < 4 {
                Err(FrameError::BadLength(len))
            } else if total > cap as i64 {
                Err(FrameError::TooLarge {
                    total: total as usize,
                    max: cap,
                })
            } else {
                Ok(Some(frame::Header {
                    tag: h[0],
                    total: total as usize,
                }))
            }
        }
    };
    if got != want {
        return Err(format!(
            "peek_header at {at} (cap {cap}) gave {got:?}, the header says {want:?}: {stream:?}"
        ));
    }
    if let Ok(Some(h)) = got {
        if h.total < 5 || h.total > cap {
            return Err(format!("peek_header reported a frame of {} bytes (cap {cap})", h.total));
        }
    }
    Ok(())
}

/// `split_frame` run over the reads `chunks`, as a reader would: after each
/// read, every whole frame is taken off. Stops at the first refused header.
fn split_frames(chunks: &[&[u8]], cap: usize) -> Result<ModelFrames, String> {
    let mut buf = bytes::BytesMut::new();
    let mut frames = Vec::new();
    let mut taken = 0usize;
    let mut fed = 0usize;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            match frame::split_frame(&mut buf, cap) {
                Ok(Some((tag, body))) => {
                    let total = body.len() + 5;
                    if total > cap || taken + total > fed {
                        return Err(format!(
                            "split_frame gave a frame of {total} bytes at {taken}, with {fed} bytes read (cap {cap})"
                        ));
                    }
                    taken += total;
                    frames.push((tag, body.to_vec()));
                }
                Ok(None) => break,
                Err(e) => {
                    return Ok(ModelFrames {
                        frames,
                        stop: taken,
                        error: Some(e),
                    })
                }
            }
        }
    }
    Ok(ModelFrames {
        frames,
        stop: taken,
        error: None,
    })
}

/// Read sizes from a seed: 1 to `max` bytes each, covering `len` bytes.
pub fn chunk_sizes(len: usize, max: u8, seed: u8) -> Vec<usize> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let max = usize::from(max.max(1));
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (1 + state as usize % max).min(left);
        out.push(n);
        left -= n;
    }
    out
}

fn chunks_of<'a>(stream: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(sizes.len());
    let mut at = 0;
    for n in sizes {
        out.push(&stream[at..at + n]);
        at += n;
    }
    out
}

/// The guard the frame target's relay runs: as shipped, no cache, and a
/// small statement limit.
fn relay_guard() -> &'static Guard {
    static GUARD: OnceLock<Guard> = OnceLock::new();
    GUARD.get_or_init(|| {
        let cfg = GuardConfig {
            verdict_cache_entries: 0,
            max_statement_bytes: RELAY_MAX_STATEMENT_BYTES,
            ..GuardConfig::default()
        };
        match Guard::new(&cfg) {
            Ok(g) => g,
            Err(e) => panic!("relay guard configuration refused: {e}"),
        }
    })
}

/// The relay's client-to-upstream loop over `chunks`: the bytes it sent
/// upstream, its refusal markers replaced by one fixed spelling of the same
/// length, and how it ended.
fn relay(chunks: &[&[u8]], cap: usize) -> (Vec<u8>, String) {
    let r = pg_tenant_proxy::relay::probe::client_to_upstream(chunks, relay_guard(), scope(), cap);
    let marker = r.marker_prefix.as_bytes();
    let fixed = "pgtp_refused_".to_owned() + &"x".repeat(marker.len().saturating_sub(14)) + "_";
    let mut out = r.upstream;
    if !marker.is_empty() && fixed.len() == marker.len() {
        let mut i = 0;
        while i + marker.len() <= out.len() {
            if &out[i..i + marker.len()] == marker {
                out[i..i + marker.len()].copy_from_slice(fixed.as_bytes());
                i += marker.len();
            } else {
                i += 1;
            }
        }
    }
    (out, format!("{:?}", r.end))
}

/// Client message types the relay accepts; any other ends the session.
const RELAYED_TAGS: &[u8] = b"QPFXBCdcfDEHS";

/// Where the relay must stop with a FATAL error, if it must: the first frame
/// (in the model's reading) whose header is refused or whose type is unknown,
/// unless a Terminate comes first.
fn relay_fatal_at(stream: &[u8], cap: usize) -> Option<usize> {
    let m = model_frames(stream, cap);
    let mut at = 0usize;
    for (tag, body) in &m.frames {
        if *tag == b'X' {
            return None;
        }
        if !RELAYED_TAGS.contains(tag) {
            return Some(at);
        }
        at += body.len() + 5;
    }
    if m.error.is_some() {
        return Some(m.stop);
    }
    // An incomplete frame: its type counts once its header is all there.
    match stream.get(m.stop..m.stop + 5) {
        Some(h) if !RELAYED_TAGS.contains(&h[0]) => Some(m.stop),
        _ => None,
    }
}

/// Target 5: the client frame decoder (`peek_header`, `split_frame`) and the
/// relay's own splitting of a client stream, at any read boundaries.
pub fn frame(data: &[u8]) -> Result<(), String> {
    let Some((&[sel, max_read, seed], stream)) = data.split_first_chunk::<3>() else {
        return Ok(());
    };
    let cap = FRAME_CAPS[usize::from(sel) % FRAME_CAPS.len()];
    for at in 0..=stream.len() + 1 {
        peek_header_claims(stream, at, cap)?;
    }
    let model = model_frames(stream, cap);
    let whole = split_frames(&[stream], cap)?;
    if whole != model {
        return Err(format!(
            "split_frame read {whole:?}, the layout is {model:?} (cap {cap}): {stream:?}"
        ));
    }
    for k in 1..stream.len() {
        let two = split_frames(&[&stream[..k], &stream[k..]], cap)?;
        if two != model {
            return Err(format!(
                "split_frame with a read boundary at {k} read {two:?}, whole {model:?} (cap {cap}): {stream:?}"
            ));
        }
    }
    let sizes = chunk_sizes(stream.len(), max_read, seed);
    let seeded = chunks_of(stream, &sizes);
    let many = split_frames(&seeded, cap)?;
    if many != model {
        return Err(format!(
            "split_frame in reads of {sizes:?} read {many:?}, whole {model:?}: {stream:?}"
        ));
    }

    // The relay: the same bytes upstream and the same end for every way the
    // stream is cut into reads.
    let (whole_out, whole_end) = relay(&[stream], cap);
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    let runs = [
        ("one byte per read", relay(&bytewise, cap)),
        ("seeded reads", relay(&seeded, cap)),
    ];
    for (how, (_, end)) in &runs {
        if *end != whole_end {
            return Err(format!(
                "relay ended {end} in {how}, {whole_end} in one read: {stream:?}"
            ));
        }
    }
    match relay_fatal_at(stream, cap) {
        None => {
            if whole_end.starts_with("Fatal") {
                return Err(format!(
                    "relay ended {whole_end} on frames the layout accepts: {stream:?}"
                ));
            }
            for (how, (out, _)) in &runs {
                if *out != whole_out {
                    return Err(format!(
                        "relay sent {out:?} upstream in {how}, {whole_out:?} in one read: {stream:?}"
                    ));
                }
            }
        }
        Some(stop) => {
            if !whole_end.starts_with("Fatal") {
                return Err(format!(
                    "relay ended {whole_end}, but the frame at {stop} must end it: {stream:?}"
                ));
            }
            // Every read before the failing frame was sent; nothing of it or after.
            let (before, before_end) = relay(&[&stream[..stop]], cap);
            if before_end.starts_with("Fatal") {
                return Err(format!(
                    "relay ended {before_end} on the frames before {stop}: {stream:?}"
                ));
            }
            if runs[0].1 .0 != before {
                return Err(format!(
                    "one byte per read, the relay sent {:?} before failing at {stop}, the frames before it give {before:?}: {stream:?}",
                    runs[0].1 .0
                ));
            }
            for (how, out) in [("one read", &whole_out), ("seeded reads", &runs[1].1 .0)] {
                if !before.starts_with(out) {
                    return Err(format!(
                        "relay sent {out:?} in {how}, more than the frames before {stop} give ({before:?}): {stream:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ startup

/// What a startup-phase packet should read as, from the protocol's layout
/// and the proxy's documented limits; written without the parser's code.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ModelPacket {
    /// The stream ends before the packet does.
    Eof,
    BadLength(u32),
    Malformed,
    Unsupported(u16, u16),
    Accepted(StartupPacket),
}

/// The body's parameter list: `name\0value\0`... then `\0`, as fields
/// between NULs: n1, v1, ..., nk, vk, "", "" (the final NUL ends the last
/// field). Names non-empty, at most 64 pairs, UTF-8, names unique.
fn model_params(rest: &[u8]) -> Option<Vec<(String, String)>> {
    if rest.last() != Some(&0) {
        return None;
    }
    let fields: Vec<&[u8]> = rest.split(|b| *b == 0).collect();
    let k = fields.len().checked_sub(2)? / 2;
    if fields.len() != 2 * k + 2 || !fields[2 * k].is_empty() || !fields[2 * k + 1].is_empty() || k > 64 {
        return None;
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in fields[..2 * k].chunks(2) {
        let name = std::str::from_utf8(pair[0]).ok()?;
        let value = std::str::from_utf8(pair[1]).ok()?;
        if name.is_empty() || params.iter().any(|(n, _)| n == name) {
            return None;
        }
        params.push((name.to_owned(), value.to_owned()));
    }
    Some(params)
}

fn model_packet(stream: &[u8]) -> (ModelPacket, usize) {
    let Some(len) = stream.first_chunk::<4>().map(|l| u32::from_be_bytes(*l)) else {
        return (ModelPacket::Eof, stream.len());
    };
    if !(8..=10_000).contains(&len) {
        return (ModelPacket::BadLength(len), 4);
    }
    let len = len as usize;
    let Some(packet) = stream.get(..len) else {
        return (ModelPacket::Eof, stream.len());
    };
    let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let rest = &packet[8..];
    let read = match code {
        80_877_103 if rest.is_empty() => ModelPacket::Accepted(StartupPacket::SslRequest),
        80_877_104 if rest.is_empty() => ModelPacket::Accepted(StartupPacket::GssEncRequest),
        80_877_103 | 80_877_104 => ModelPacket::Malformed,
        80_877_102 if (8..=260).contains(&rest.len()) => ModelPacket::Accepted(StartupPacket::Cancel {
            pid: i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
            secret: rest[4..].to_vec(),
        }),
        80_877_102 => ModelPacket::Malformed,
        _ if code >> 16 != 3 => ModelPacket::Unsupported((code >> 16) as u16, code as u16),
        _ => match model_params(rest) {
            Some(params) => ModelPacket::Accepted(StartupPacket::Startup {
                major: 3,
                minor: code as u16,
                params,
            }),
            None => ModelPacket::Malformed,
        },
    };
    (read, len)
}

/// The bytes of an accepted packet, written by postgres-protocol's
/// frontend encoder (a cancel key longer than 4 bytes, of protocol 3.2,
/// and GSSENCRequest, which it has no encoder for, by hand).
fn encode_packet(p: &StartupPacket) -> Result<Vec<u8>, String> {
    use postgres_protocol::message::frontend;
    let mut buf = bytes::BytesMut::new();
    match p {
        StartupPacket::SslRequest => frontend::ssl_request(&mut buf),
        StartupPacket::GssEncRequest => buf.extend_from_slice(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]),
        StartupPacket::Cancel { pid, secret } if secret.len() == 4 => {
            let key = i32::from_be_bytes([secret[0], secret[1], secret[2], secret[3]]);
            frontend::cancel_request(*pid, key, &mut buf);
        }
        StartupPacket::Cancel { pid, secret } => {
            let len = u32::try_from(12 + secret.len()).map_err(|e| e.to_string())?;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&80_877_102u32.to_be_bytes());
            buf.extend_from_slice(&pid.to_be_bytes());
            buf.extend_from_slice(secret);
        }
        StartupPacket::Startup { major, minor, params } => {
            frontend::startup_message(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), &mut buf)
                .map_err(|e| e.to_string())?;
            let version = (u32::from(*major) << 16 | u32::from(*minor)).to_be_bytes();
            buf[4..8].copy_from_slice(&version);
        }
    }
    Ok(buf.to_vec())
}

/// The handshake's policy, with the default pass-through list.
pub fn handshake_policy() -> &'static HandshakePolicy {
    static POLICY: OnceLock<HandshakePolicy> = OnceLock::new();
    POLICY.get_or_init(|| HandshakePolicy {
        tls: None,
        allow_plaintext_from: vec![],
        databases: vec!["app".into()],
        passthrough: pg_tenant_proxy::config::DEFAULT_PASSTHROUGH_PARAMETERS
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        setting_limits: match pg_tenant_proxy::guard::SettingLimits::new(None) {
            Ok(l) => l,
            Err(e) => panic!("default setting limits refused: {e}"),
        },
    })
}

/// A refusal of the startup parameter policy is FATAL, with the SQLSTATE
/// PostgreSQL uses for it.
fn proper_policy_refusal(e: &ClientError) -> Result<(), String> {
    if e.severity == Severity::Fatal
        && matches!(e.code, SqlState::InvalidAuthorization | SqlState::InvalidCatalogName)
        && !e.message.is_empty()
    {
        Ok(())
    } else {
        Err(format!("startup parameters refused with {e:?}"))
    }
}

/// Target 6: the startup-phase packet reader (as the handshake reads a
/// socket), against the layout read from scratch and postgres-protocol's
/// encoder; accepted startup messages go on through the parameter policy.
pub fn startup(data: &[u8]) -> Result<(), String> {
    let Some((&mode, rest)) = data.split_first() else {
        return Ok(());
    };
    let mut stream = rest.to_vec();
    // Odd modes write the real length into the length field, so that most
    // inputs reach the body.
    if mode & 1 == 1 && stream.len() >= 4 {
        let len = u32::try_from(stream.len()).unwrap_or(u32::MAX);
        stream[..4].copy_from_slice(&len.to_be_bytes());
    }
    let (got, consumed) = startup_probe::read_packet(&[&stream]);
    let sizes = chunk_sizes(stream.len(), mode >> 1, mode);
    let (again, consumed_again) = startup_probe::read_packet(&chunks_of(&stream, &sizes));
    if format!("{got:?}") != format!("{again:?}") || consumed != consumed_again {
        return Err(format!(
            "read_packet gave {got:?} ({consumed} bytes) in one read, {again:?} ({consumed_again}) in reads of {sizes:?}: {stream:?}"
        ));
    }
    let (want, want_consumed) = model_packet(&stream);
    if consumed != want_consumed {
        return Err(format!(
            "read_packet took {consumed} bytes, the packet is {want_consumed} ({want:?}): {stream:?}"
        ));
    }
    match (&want, &got) {
        (ModelPacket::Eof, Err(StartupError::Io(e))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        (ModelPacket::BadLength(w), Err(StartupError::BadLength(g))) if w == g => {}
        (ModelPacket::Malformed, Err(StartupError::Malformed(m))) if !m.is_empty() => {}
        (ModelPacket::Unsupported(a, b), Err(StartupError::UnsupportedProtocol(c, d))) if (a, b) == (c, d) => {}
        (ModelPacket::Accepted(w), Ok(g)) if w == g => {
            let encoded = encode_packet(g)?;
            if encoded != stream[..consumed] {
                return Err(format!(
                    "{g:?} encodes as {encoded:?}, read from {:?}",
                    &stream[..consumed]
                ));
            }
            if let StartupPacket::Startup { params, .. } = g {
                if let Err(e) = handshake_probe::check_params(params.clone(), handshake_policy()) {
                    proper_policy_refusal(&e)?;
                }
            }
        }
        _ => {
            return Err(format!(
                "read_packet gave {got:?}, the layout says {want:?}: {stream:?}"
            ))
        }
    }
    if let Err(e) = &got {
        if e.to_string().is_empty() {
            return Err(format!("{e:?} has no message"));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ options

/// C's `isspace` in the C locale (and for ASCII in every locale glibc has).
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// PostgreSQL's `pg_split_opts` (src/backend/utils/init/postinit.c), byte
/// for byte: skip spaces; a word runs to the next space not escaped by a
/// backslash; a backslash is dropped and the byte after it kept as is (a
/// trailing one is dropped, and still makes a word, possibly empty).
pub fn pg_split_opts(opts: &[u8]) -> Vec<Vec<u8>> {
    let mut argv = Vec::new();
    let mut i = 0usize;
    while i < opts.len() {
        while i < opts.len() && c_isspace(opts[i]) {
            i += 1;
        }
        if i == opts.len() {
            break;
        }
        let mut s = Vec::new();
        let mut last_was_escape = false;
        while i < opts.len() {
            if c_isspace(opts[i]) && !last_was_escape {
                break;
            }
            if !last_was_escape && opts[i] == b'\\' {
                last_was_escape = true;
            } else {
                last_was_escape = false;
                s.push(opts[i]);
            }
            i += 1;
        }
        argv.push(s);
    }
    argv
}

/// The settings PostgreSQL takes from a startup `options` string made only
/// of `-c name=value` / `-cname=value` / `--name=value` switches: its
/// getopt reads `-c` with the rest of the word or else the next word as the
/// argument, `--` alone ends the switches (a word after it is an error),
/// `--x` is switch `-` with argument `x`; `ParseLongOption` splits at the
/// first `=` (none: an error) and turns `-` into `_` in the name. `None`:
/// PostgreSQL refuses the string, or it holds another switch (which the
/// proxy refuses).
pub fn model_options(opts: &[u8]) -> Option<Vec<(String, String)>> {
    let argv = pg_split_opts(opts);
    let mut out = Vec::new();
    let mut i = 0usize;
    while i < argv.len() {
        let w = &argv[i];
        let arg: &[u8] = if w.as_slice() == b"--" {
            return (i + 1 == argv.len()).then_some(out);
        } else if w.as_slice() == b"-c" {
            i += 1;
            argv.get(i)?
        } else {
            // Anything else is another switch or a stray word.
            w.strip_prefix(b"-c").or_else(|| w.strip_prefix(b"--"))?
        };
        let eq = arg.iter().position(|b| *b == b'=')?;
        let name: Vec<u8> = arg[..eq].iter().map(|b| if *b == b'-' { b'_' } else { *b }).collect();
        if name.is_empty() {
            return None; // No setting has an empty name.
        }
        out.push((
            String::from_utf8(name).ok()?,
            String::from_utf8(arg[eq + 1..].to_vec()).ok()?,
        ));
        i += 1;
    }
    Some(out)
}

/// Target 7: the startup `options` string, against PostgreSQL's splitting
/// and switch reading, and what the parameter policy forwards from it.
pub fn options(data: &[u8]) -> Result<(), String> {
    // A startup parameter is a NUL-terminated UTF-8 string: no NUL inside.
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    if text.contains('\0') {
        return Ok(());
    }
    let got = pg_tenant_proxy::handshake::parse_options(text);
    let want = model_options(data);
    if got != want {
        return Err(format!(
            "parse_options read {got:?}, PostgreSQL reads {want:?}: {text:?}"
        ));
    }
    let raw = vec![
        ("user".to_owned(), "u".to_owned()),
        ("database".to_owned(), "app".to_owned()),
        ("options".to_owned(), text.to_owned()),
    ];
    match handshake_probe::check_params(raw, handshake_policy()) {
        Err(e) => proper_policy_refusal(&e),
        Ok((_, _, forwarded)) => {
            let Some(pairs) = want else {
                return Err(format!(
                    "options PostgreSQL refuses were accepted, forwarding {forwarded:?}: {text:?}"
                ));
            };
            // What the server would have set, last one winning, minus the
            // two settings the proxy pins (accepted only when restating it).
            let mut expected = std::collections::BTreeMap::new();
            for (k, v) in pairs {
                let k = k.to_ascii_lowercase();
                if k != "client_encoding" && k != "standard_conforming_strings" {
                    expected.insert(k, v);
                }
            }
            let sent: std::collections::BTreeMap<String, String> = forwarded.iter().cloned().collect();
            if sent.len() != forwarded.len() || sent != expected {
                return Err(format!(
                    "options {text:?} forwarded {forwarded:?}, PostgreSQL would set {expected:?}"
                ));
            }
            match forwarded
                .iter()
                .find(|(k, _)| !handshake_policy().passthrough.contains(k))
            {
                Some((k, _)) => Err(format!("forwarded {k:?}, which is not passed through: {text:?}")),
                None => Ok(()),
            }
        }
    }
}

// --------------------------------------------------------------- jwt_claims

/// The UUID formats `Uuid::parse_str` documents: 32 hex digits; 8-4-4-4-12
/// hex digits with hyphens; that in braces; or after `urn:uuid:` (the
/// prefix in any case). Hex digits in either case.
pub fn model_uuid(s: &str) -> Option<u128> {
    let hyphenated = |h: &str| -> Option<String> {
        let b = h.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|i| b[*i] != b'-') {
            return None;
        }
        Some(h.replace('-', ""))
    };
    let digits = if s.len() == 32 {
        s.to_owned()
    } else if let Some(inner) = s.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        hyphenated(inner)?
    } else if s.len() == 45 && s.as_bytes()[..9].eq_ignore_ascii_case(b"urn:uuid:") {
        hyphenated(&s[9..])?
    } else {
        hyphenated(s)?
    };
    if digits.len() != 32 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(&digits, 16).ok()
}

/// What a claim path should give, by JSON Pointer: every prefix of the path
/// must name an object (arrays are not indexed), the last key the value.
#[derive(Debug, PartialEq, Eq)]
enum ModelClaim {
    Absent,
    Id(u128),
    Refused,
}

fn model_claim(claims: &serde_json::Value, name: &str) -> ModelClaim {
    let mut pointer = String::new();
    for key in name.split('.') {
        if !claims.pointer(&pointer).is_some_and(serde_json::Value::is_object) {
            return ModelClaim::Absent;
        }
        pointer.push('/');
        pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
    }
    match claims.pointer(&pointer) {
        None | Some(serde_json::Value::Null) => ModelClaim::Absent,
        Some(serde_json::Value::String(s)) if s.len() <= 64 => match model_uuid(s) {
            Some(0) | None => ModelClaim::Refused,
            Some(id) => ModelClaim::Id(id),
        },
        Some(_) => ModelClaim::Refused,
    }
}

fn claim_agrees(got: &Result<Option<uuid::Uuid>, AuthError>, want: &ModelClaim) -> bool {
    match (got, want) {
        (Ok(None), ModelClaim::Absent) => true,
        (Ok(Some(id)), ModelClaim::Id(w)) => id.as_u128() == *w,
        (Err(AuthError::NotAllowed(m)), ModelClaim::Refused) => !m.is_empty(),
        _ => false,
    }
}

/// Claim paths the end-to-end check verifies tokens with: (organization,
/// user).
pub const VERIFIER_CLAIMS: [(&str, &str); 2] = [
    ("organization_id", "sub"),
    ("app_metadata.organization_id", "pgtp.user_id"),
];

/// An HMAC secret for the end-to-end check (test material, not a key).
const FUZZ_SECRET: &str = "fuzz-only-hmac-secret-0123456789abcdef";

fn verifiers() -> &'static Vec<Verifier> {
    static VERIFIERS: OnceLock<Vec<Verifier>> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("pgtp-fuzz-jwt-secret-{}", std::process::id()));
        if let Err(e) = std::fs::write(&path, FUZZ_SECRET) {
            panic!("cannot write {}: {e}", path.display());
        }
        let built = VERIFIER_CLAIMS
            .iter()
            .map(|(org, user)| {
                let cfg = JwtConfig {
                    key: KeySource::SecretFile(path.clone()),
                    issuers: vec![],
                    audiences: vec![],
                    leeway_secs: 0,
                    algorithms: vec![],
                    organization_claim: (*org).to_owned(),
                    user_claim: (*user).to_owned(),
                    require_user: false,
                    max_ttl_secs: 0,
                };
                match Verifier::new(&cfg) {
                    Ok(v) => v,
                    Err(e) => panic!("verifier refused: {e}"),
                }
            })
            .collect();
        let _ = std::fs::remove_file(&path);
        built
    })
}

/// Target 8: the organization and user ids read from token claims, at a
/// dotted claim path, against JSON Pointer lookups in `serde_json::Value`;
/// and, end to end, a signed token with those claims through the verifier.
/// Input: the claim path, a newline, the claims JSON.
pub fn jwt_claims(data: &[u8]) -> Result<(), String> {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(name) = std::str::from_utf8(&data[..split]) else {
        return Ok(());
    };
    // The token's claims decode as jsonwebtoken decodes them.
    let Ok(mut claims) = serde_json::from_slice::<serde_json::Value>(data.get(split + 1..).unwrap_or_default()) else {
        return Ok(());
    };
    let got = jwt_probe::uuid_claim(&claims, name);
    let want = model_claim(&claims, name);
    if !claim_agrees(&got, &want) {
        return Err(format!(
            "claim {name:?} read as {got:?}, the claims say {want:?}: {claims}"
        ));
    }
    let Some(map) = claims.as_object_mut() else {
        return Ok(());
    };
    // A token the verifier accepts but for its ids: valid for an hour, no nbf.
    let now = pg_tenant_proxy::auth::jwt::unix_now();
    map.insert("exp".into(), (now + 3600).into());
    map.remove("nbf");
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(FUZZ_SECRET.as_bytes()),
    )
    .map_err(|e| format!("cannot sign {claims}: {e}"))?;
    // jsonwebtoken reads `sub` as a string for its own checks and cannot
    // decode claims where it is an object or array (RFC 7519 makes it a
    // string): such a token is refused as malformed, whichever claims the
    // ids come from.
    let sub_undecodable = claims.get("sub").is_some_and(|s| s.is_object() || s.is_array());
    for (verifier, (org, user)) in verifiers().iter().zip(VERIFIER_CLAIMS) {
        let got = verifier.verify_at(&token, now);
        let want = match (model_claim(&claims, org), model_claim(&claims, user)) {
            (ModelClaim::Id(o), ModelClaim::Id(u)) => Some((o, Some(u))),
            (ModelClaim::Id(o), ModelClaim::Absent) => Some((o, None)),
            _ => None,
        };
        let agrees = match (&got, want) {
            (got, _) if sub_undecodable => matches!(got, Err(AuthError::InvalidToken(_))),
            (Ok(id), Some((o, u))) => {
                id.organization_id.as_u128() == o && id.user_id.map(|u| u.as_u128()) == u && id.expires_at == now + 3600
            }
            (Err(AuthError::NotAllowed(m)), None) => !m.is_empty(),
            _ => false,
        };
        if !agrees {
            return Err(format!(
                "token with claims {claims} ({org:?}, {user:?}) verified as {got:?}"
            ));
        }
    }
    Ok(())
}
