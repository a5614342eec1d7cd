//! A cheap first look that lets plainly safe statements skip the full walk.
//!
//! Input: untrusted statement text (valid UTF-8 without NUL, checked by the
//! caller). It answers "plainly safe" only when all of these hold, and "don't
//! know" otherwise, in which case the full parse and walk decide:
//! - PostgreSQL's parser accepts the text (`pg_query::split_with_parser`,
//!   the same grammar as the full parse);
//! - every statement starts with a keyword of a query, DML, transaction,
//!   cursor or prepared-statement command (see [`QUERY_KEYWORDS`]), whose
//!   trees cannot hold SET, DO, CREATE FUNCTION, ALTER ... SET, role,
//!   LISTEN/NOTIFY or large-object statements;
//! - the lowercased text contains no anchor of a name the walk reacts to
//!   (set_config, pg_*, lo_*, ...), no `U&` or backslash escape and no string
//!   continuation across a newline, so no such name can be spelled in a way
//!   the raw text does not show.
//!
//! The walk's only other refusals are for node kinds outside query/DML
//! statements, so "plainly safe" implies the walk allows the text; the tests
//! check this on both corpora.

/// Substrings at least one of which occurs in every sensitive name.
pub(crate) const ANCHORS: &[&str] = &[
    "pg_",
    "lo_",
    "loread",
    "lowrite",
    "set_config",
    "ts_stat",
    "ts_rewrite",
    "_to_xml",
    "dblink",
];

/// Leading keywords of statements the prefilter may pass: queries and DML,
/// and the transaction, cursor and prepared-statement commands drivers send
/// all the time. None of these statements can contain a SET, DO, function
/// definition, role, LISTEN/NOTIFY or large-object node; the only things in
/// them the walk could refuse are names, which the anchors catch.
const QUERY_KEYWORDS: &[&str] = &[
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "with",
    "values",
    "table",
    "begin",
    "start",
    "commit",
    "end",
    "rollback",
    "abort",
    "savepoint",
    "release",
    "prepare",
    "execute",
    "deallocate",
    "show",
    "discard",
    "declare",
    "fetch",
    "move",
    "close",
];

/// Longer statements always take the full walk (and are rarely hot).
const MAX_PREFILTER_BYTES: usize = 16 * 1024;

/// True only if the full walk would certainly allow `text` unchanged.
pub(crate) fn plainly_safe(text: &str) -> bool {
    if text.len() > MAX_PREFILTER_BYTES {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains('\\') || lower.contains("u&") {
        return false;
    }
    if ANCHORS.iter().any(|a| lower.contains(a)) {
        return false;
    }
    if has_string_continuation(lower.as_bytes()) {
        return false;
    }
    let Ok(statements) = std::panic::catch_unwind(|| pg_query::split_with_parser(text)) else {
        return false;
    };
    let Ok(statements) = statements else {
        return false;
    };
    statements.iter().all(|s| starts_with_query_keyword(s))
}

/// `'a'` newline `'b'` is one literal `'ab'` in SQL: a name split this way
/// would not appear in the raw text. Reports any quote followed, across
/// whitespace or `--` comments that include a newline, by another quote.
fn has_string_continuation(b: &[u8]) -> bool {
    let mut i = 0usize;
    while i < b.len() {
        if b.get(i) == Some(&b'\'') {
            let mut j = i.saturating_add(1);
            let mut newline = false;
            loop {
                match b.get(j) {
                    Some(b' ' | b'\t' | b'\r' | b'\x0c') => j = j.saturating_add(1),
                    Some(b'\n') => {
                        newline = true;
                        j = j.saturating_add(1);
                    }
                    Some(b'-') if b.get(j.saturating_add(1)) == Some(&b'-') => {
                        while b.get(j).is_some_and(|c| *c != b'\n') {
                            j = j.saturating_add(1);
                        }
                    }
                    _ => break,
                }
            }
            if newline && b.get(j) == Some(&b'\'') {
                return true;
            }
        }
        i = i.saturating_add(1);
    }
    false
}

/// Whether a statement, after comments, whitespace and `(`, begins with one
/// of [`QUERY_KEYWORDS`].
fn starts_with_query_keyword(stmt: &str) -> bool {
    let b = stmt.as_bytes();
    let mut i = 0usize;
    loop {
        match b.get(i) {
            Some(c) if c.is_ascii_whitespace() || *c == b'(' => i = i.saturating_add(1),
            Some(b'-') if b.get(i.saturating_add(1)) == Some(&b'-') => {
                while b.get(i).is_some_and(|c| *c != b'\n') {
                    i = i.saturating_add(1);
                }
            }
            Some(b'/') if b.get(i.saturating_add(1)) == Some(&b'*') => {
                // Block comments nest in PostgreSQL.
                let mut depth = 0usize;
                loop {
                    match (b.get(i), b.get(i.saturating_add(1))) {
                        (Some(b'/'), Some(b'*')) => {
                            depth = depth.saturating_add(1);
                            i = i.saturating_add(2);
                        }
                        (Some(b'*'), Some(b'/')) => {
                            depth = depth.saturating_sub(1);
                            i = i.saturating_add(2);
                            if depth == 0 {
                                break;
                            }
                        }
                        (Some(_), _) => i = i.saturating_add(1),
                        (None, _) => return false,
                    }
                }
            }
            _ => break,
        }
    }
    let word_end = b
        .iter()
        .skip(i)
        .position(|c| !c.is_ascii_alphabetic())
        .map_or(b.len(), |n| i.saturating_add(n));
    let Some(word) = stmt.get(i..word_end) else {
        return false;
    };
    QUERY_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::functions;

    #[test]
    fn every_sensitive_name_contains_an_anchor() {
        for name in functions::sensitive_names() {
            let lower = name.to_ascii_lowercase();
            assert!(
                ANCHORS.iter().any(|a| lower.contains(a)),
                "{name} has no prefilter anchor"
            );
        }
    }

    #[test]
    fn plain_statements_pass_and_tricky_ones_fall_back() {
        assert!(plainly_safe("SELECT * FROM agent_instances WHERE id = $1"));
        assert!(plainly_safe("/* a /* nested */ c */ (SELECT 1) UNION SELECT 2"));
        assert!(plainly_safe("BEGIN ISOLATION LEVEL SERIALIZABLE"));
        assert!(plainly_safe("SAVEPOINT s1; RELEASE SAVEPOINT s1; COMMIT"));
        for sql in [
            "SET statement_timeout = 1",
            "SELECT set_config('a', 'b', false)",
            "SELECT 'x'\n'y'",
            "SELECT 'x' -- c\n 'y'",
            "SELECT U&\"\\0070g_stat_activity\"",
            "SELECT E'\\x41'",
            "SELEC 1",
            "DO $$ BEGIN END $$",
            "SELECT 1; LISTEN x",
            "SELECT * FROM PG_STAT_ACTIVITY",
            "DECLARE c CURSOR FOR SELECT lo_get(1)",
            "EXECUTE p(set_config('a', 'b', false))",
            "SET ROLE NONE",
            "RESET ALL",
        ] {
            assert!(!plainly_safe(sql), "{sql}");
        }
    }
}
