//! Scopes LISTEN / NOTIFY / UNLISTEN channels to the session's tenant.
//!
//! Input: channel names and payloads the parser decoded from untrusted SQL
//! (going up), and channel names in upstream NotificationResponse messages
//! (coming down). Every channel the upstream session sees is
//! `<tenant prefix><client channel>`; the prefix encodes all 128 bits of the
//! organization id, so two tenants never share a channel.

use super::refusal::{self, Refusal};
use super::tree::Tree;
use base64::Engine as _;

/// The function whose channel argument is scoped like NOTIFY's.
pub(crate) const PG_NOTIFY: &str = "pg_notify";

/// Statements whose `pg_notify()` calls run now, in this session, so the
/// channel can be scoped by rewriting the call. Anywhere else (a view, rule,
/// trigger, policy, default, function body) the call would run later, for
/// whoever triggers it.
const RUNS_NOW: &[&str] = &[
    "SelectStmt",
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
    "PrepareStmt",
    "DeclareCursorStmt",
    "ExecuteStmt",
];

/// Whether the `pg_notify` call at item `i` has a shape the rewrite scopes:
/// a plain call with exactly two positional arguments, in a statement that
/// runs now.
pub(crate) fn check_pg_notify_call(tree: &Tree, i: usize) -> Result<(), Refusal> {
    let plain = !tree.bool_field(i, "func_variadic")
        && !tree.bool_field(i, "agg_star")
        && !tree.bool_field(i, "agg_distinct")
        && !tree.bool_field(i, "agg_within_group")
        && tree.field(i, "over").is_none()
        && tree.field(i, "agg_filter").is_none()
        && tree.list(i, "agg_order").next().is_none();
    let two_positional =
        tree.list(i, "args").count() == 2 && tree.list(i, "args").all(|a| tree.ty(a) != Some("NamedArgExpr"));
    let runs_now = tree.ty(0).is_some_and(|t| RUNS_NOW.contains(&t));
    if plain && two_positional && runs_now {
        Ok(())
    } else {
        Err(refusal::pg_notify())
    }
}

/// How many `pg_notify` calls a statement the walk allowed holds.
pub(crate) fn pg_notify_calls(tree: &Tree) -> usize {
    (0..tree.items.len()).filter(|&i| is_pg_notify_call(tree, i)).count()
}

fn is_pg_notify_call(tree: &Tree, i: usize) -> bool {
    tree.ty(i) == Some("FuncCall")
        && tree
            .list(i, "funcname")
            .last()
            .and_then(|n| tree.string_node(n))
            .is_some_and(|n| n.eq_ignore_ascii_case(PG_NOTIFY))
}

/// The edits that scope every `pg_notify(` call in `text`: each first
/// argument's span and the text to put there, `('<prefix>' || (<arg>\n))`
/// (the newline ends a `--` comment the argument may end with). Calls are
/// found as PostgreSQL's scanner reads the text: the name `pg_notify`
/// (unquoted in any case, or as `"pg_notify"`) followed by `(`. The caller
/// checks that this finds exactly the calls the parser found.
pub(crate) fn scope_pg_notify_calls(text: &str, prefix: &str) -> Result<Vec<(usize, usize, String)>, Refusal> {
    if prefix.len() != PREFIX_BYTES {
        return Err(refusal::internal());
    }
    let scanned = pg_query::scan(text).map_err(|_| refusal::internal())?;
    let tokens: Vec<(usize, usize, &str)> = scanned
        .tokens
        .iter()
        .filter(|t| !matches!(t.token, SQL_COMMENT | C_COMMENT))
        .filter_map(|t| {
            let (a, b) = (usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?);
            Some((a, b, text.get(a..b)?))
        })
        .collect();
    let mut edits = Vec::new();
    for (k, t) in tokens.iter().enumerate() {
        let named = t.2.eq_ignore_ascii_case(PG_NOTIFY) || t.2 == "\"pg_notify\"";
        if !named || tokens.get(k + 1).map(|n| n.2) != Some("(") {
            continue;
        }
        let open = k + 1;
        let mut depth = 0usize;
        let mut end = None;
        for (j, a) in tokens.iter().enumerate().skip(open + 1) {
            match a.2 {
                "(" | "[" => depth += 1,
                ")" | "]" if depth > 0 => depth -= 1,
                "," | ")" if depth == 0 => {
                    end = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(refusal::internal)?;
        if end <= open + 1 {
            return Err(refusal::internal());
        }
        let arg_start = tokens.get(open + 1).ok_or_else(refusal::internal)?.0;
        let arg_end = tokens.get(end - 1).ok_or_else(refusal::internal)?.1;
        let arg = text.get(arg_start..arg_end).ok_or_else(refusal::internal)?;
        edits.push((arg_start, arg_end, format!("({} || ({arg}\n))", quote_literal(prefix))));
    }
    Ok(edits)
}

/// Whether `text` (a rewritten message) parses into `statements` statements
/// whose `pg_notify()` calls, `calls` of them, each begin their channel with
/// the literal `prefix`: `'<prefix>' || (...)`.
pub(crate) fn all_pg_notify_scoped(text: &str, prefix: &str, calls: usize, statements: usize) -> bool {
    let Ok(trees) = super::flat::parse(text) else {
        return false;
    };
    if trees.len() != statements {
        return false;
    }
    let mut seen = 0usize;
    for tree in &trees {
        for i in (0..tree.items.len()).filter(|&i| is_pg_notify_call(tree, i)) {
            seen += 1;
            let Some(channel) = tree.list(i, "args").next() else {
                return false;
            };
            let concat = tree.ty(channel) == Some("AExpr")
                && tree
                    .list(channel, "name")
                    .filter_map(|n| tree.string_node(n))
                    .eq(["||"]);
            let left = tree.field(channel, "lexpr");
            let left_is_prefix = left.is_some_and(|l| {
                tree.ty(l) == Some("AConst") && tree.field(l, "val").and_then(|v| tree.string_node(v)) == Some(prefix)
            });
            if !(concat && left_is_prefix) {
                return false;
            }
        }
    }
    seen == calls
}

/// `Token` numbers of comments in pg_query's protobuf.
const SQL_COMMENT: i32 = 275;
const C_COMMENT: i32 = 276;

/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
pub(crate) const MAX_IDENTIFIER_BYTES: usize = 63;

/// Bytes of the prefix: 22 characters of unpadded base64url for 16 bytes,
/// plus a ':' separator. The same for every tenant.
pub(crate) const PREFIX_BYTES: usize = 23;

/// Longest channel name a client can use through the proxy.
pub const MAX_CLIENT_CHANNEL_BYTES: usize = MAX_IDENTIFIER_BYTES - PREFIX_BYTES;

/// The channel prefix of one tenant: fixed length, injective in the id.
pub(crate) fn channel_prefix(organization_id: &uuid::Uuid) -> String {
    let mut p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(organization_id.as_bytes());
    p.push(':');
    p
}

/// A double-quoted identifier (`"` doubled), as the server lexes it.
pub(crate) fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A string literal (`'` doubled). Correct because the session runs with
/// `standard_conforming_strings=on`, pinned at startup and guarded.
pub(crate) fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn scoped(prefix: &str, channel: &str) -> Result<String, Refusal> {
    if channel.len() > MAX_CLIENT_CHANNEL_BYTES || prefix.len() != PREFIX_BYTES {
        return Err(refusal::channel_too_long(MAX_CLIENT_CHANNEL_BYTES));
    }
    let mut full = String::with_capacity(prefix.len() + channel.len());
    full.push_str(prefix);
    full.push_str(channel);
    Ok(quote_ident(&full))
}

/// The replacement text for a top-level LISTEN/NOTIFY/UNLISTEN statement,
/// or `None` if the node is not one (or needs no change, like `UNLISTEN *`).
pub(crate) fn rewrite(stmt: &pg_query::NodeEnum, prefix: &str) -> Option<Result<String, Refusal>> {
    match stmt {
        pg_query::NodeEnum::ListenStmt(s) => Some(scoped(prefix, &s.conditionname).map(|c| format!("LISTEN {c}"))),
        pg_query::NodeEnum::UnlistenStmt(s) => {
            if s.conditionname.is_empty() {
                // UNLISTEN *: only this session's channels, all of them ours.
                None
            } else {
                Some(scoped(prefix, &s.conditionname).map(|c| format!("UNLISTEN {c}")))
            }
        }
        pg_query::NodeEnum::NotifyStmt(s) => Some(scoped(prefix, &s.conditionname).map(|c| {
            if s.payload.is_empty() {
                format!("NOTIFY {c}")
            } else {
                format!("NOTIFY {c}, {}", quote_literal(&s.payload))
            }
        })),
        _ => None,
    }
}

/// Whether the statement (the tree's root) is a LISTEN/NOTIFY/UNLISTEN that
/// [`rewrite`] will change.
pub(crate) fn needs_rewrite(stmt: &super::tree::Tree) -> bool {
    match stmt.ty(0) {
        Some("ListenStmt" | "NotifyStmt") => true,
        Some("UnlistenStmt") => !stmt.str_field(0, "conditionname").is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_fixed_length_and_distinct() {
        let a = channel_prefix(&uuid::Uuid::from_u128(1));
        let b = channel_prefix(&uuid::Uuid::from_u128(1 << 127));
        assert_eq!(a.len(), PREFIX_BYTES);
        assert_eq!(b.len(), PREFIX_BYTES);
        assert_ne!(a, b);
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
