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
//!   PostgreSQL's scanner reads it ([`first_keyword_claim`]).
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
//!
//! Known limit: a text pg_query's scanner cannot lex (an unterminated quote,
//! PostgreSQL 16+'s "trailing junk after numeric literal") gives no tokens, so
//! `string_continuation` checks only its byte claims on it; `fast_path` still
//! checks such texts against the walk.

#![allow(dead_code)]

use pg_query::protobuf::{KeywordKind, ScanToken, Token};
use pg_query::NodeEnum;
use pg_tenant_proxy::error::SqlState;
use pg_tenant_proxy::guard::probe::{self, Walk};
use pg_tenant_proxy::guard::{Guard, GuardConfig, TenantScope, Verdict};
use std::sync::OnceLock;

/// The fuzz targets, which are also the corpus directories under `fuzz/corpus/`.
pub const TARGETS: [&str; 4] = ["fast_path", "first_keyword", "string_continuation", "notify_rewrite"];

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
    fast_path_claims(text, probe::one_plain_statement(text), probe::plainly_safe(text))
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
