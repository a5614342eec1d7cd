//! Scopes LISTEN / NOTIFY / UNLISTEN channels to the session's tenant.
//!
//! Input: channel names and payloads the parser decoded from untrusted SQL
//! (going up), and channel names in upstream NotificationResponse messages
//! (coming down). Every channel the upstream session sees is
//! `<tenant prefix><client channel>`; the prefix encodes all 128 bits of the
//! organization id, so two tenants never share a channel.

use super::refusal::{self, Refusal};
use base64::Engine as _;

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
