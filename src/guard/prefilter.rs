//! A cheap first look that lets plainly safe statements skip the full walk.
//!
//! Input: untrusted statement text (valid UTF-8, checked by the caller). It
//! answers "plainly safe" only when the full walk would allow the text, or
//! refuse it only because it does not parse (the server then refuses it with
//! its own 42601), and "don't know" otherwise, in which case the full parse
//! and walk decide. Two paths share the same screens:
//! - [`one_plain_statement`], which never calls the parser: the text is a
//!   single statement, because it holds no `;` except trailing ones (a second
//!   statement needs a `;` token, and every `;` token is a `;` byte);
//! - [`plainly_safe`], for any number of statements: PostgreSQL's parser
//!   (`pg_query::split_with_parser`, the same grammar as the full parse)
//!   splits the text.
//!
//! On both, every statement must start with a keyword of a query, DML,
//! transaction, cursor or prepared-statement command (see
//! [`QUERY_KEYWORDS`]), whose trees cannot hold SET, DO, CREATE FUNCTION,
//! ALTER ... SET, role, LISTEN/NOTIFY or large-object statements; and the
//! text must contain no anchor of a name the walk reacts to (set_config,
//! pg_*, lo_*, ..., compared ASCII-case-insensitively), no NUL, no `U&` or
//! backslash escape and no string continuation across a newline, so no such
//! name can be spelled in a way the raw text does not show.
//!
//! The walk's only other refusals are for node kinds outside query/DML
//! statements, so "plainly safe" implies the walk allows the text or finds
//! it unparsable; the tests check this on both corpora.

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

/// Longest text [`one_plain_statement`] looks at. It runs before the verdict
/// cache, so it must stay cheaper than a cache lookup would be worth.
const MAX_LEXICAL_BYTES: usize = 4 * 1024;

/// The parse-free path: true only if `text` is one plainly safe statement.
/// Such a text cannot hold anything the walk reacts to (see the module
/// docs); if it does not parse, the server refuses it itself.
pub(crate) fn one_plain_statement(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() <= MAX_LEXICAL_BYTES && at_most_one_statement(b) && no_hidden_names(b) && starts_with_query_keyword(text)
}

/// True only if the full walk would certainly allow `text` unchanged, or
/// find it unparsable.
pub(crate) fn plainly_safe(text: &str) -> bool {
    if text.len() > MAX_PREFILTER_BYTES || !no_hidden_names(text.as_bytes()) {
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

/// No `;` other than trailing ones (with only whitespace around them).
fn at_most_one_statement(b: &[u8]) -> bool {
    match b.iter().position(|c| *c == b';') {
        None => true,
        Some(at) => b
            .iter()
            .skip(at)
            .all(|c| matches!(c, b';' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')),
    }
}

/// No NUL, backslash, `U&`, anchor (ASCII case ignored) or string
/// continuation: every name in the text is spelled as the raw bytes show it.
/// One pass, no allocation: a byte is compared further only if it and the
/// next byte begin an anchor or `U&` (see [`NEXT_BYTE`]).
fn no_hidden_names(b: &[u8]) -> bool {
    // End of the last continuation scan: a quote before it lies inside the
    // comment that scan crossed, and its own scan would end the same way.
    // Skipping it keeps the pass linear (`'-- '-- '-- ...` would otherwise
    // rescan the comment from every quote).
    let mut scanned_to = 0usize;
    for (i, c) in b.iter().enumerate() {
        let want = NEXT_BYTE.get(usize::from(*c)).copied().unwrap_or(0);
        if want == 0 {
            continue;
        }
        if want == STOP {
            return false;
        }
        if want == QUOTE {
            if i < scanned_to {
                continue;
            }
            let (continues, end) = string_continues_after(b, i);
            if continues {
                return false;
            }
            scanned_to = end;
            continue;
        }
        if b.get(i.saturating_add(1)).map(u8::to_ascii_lowercase) != Some(want) {
            continue;
        }
        if want == b'&' {
            return false;
        }
        let rest = b.get(i..).unwrap_or_default();
        if ANCHORS.iter().any(|a| {
            rest.get(..a.len())
                .is_some_and(|r| r.eq_ignore_ascii_case(a.as_bytes()))
        }) {
            return false;
        }
    }
    true
}

/// In [`NEXT_BYTE`]: this byte is never plainly safe (NUL, backslash).
const STOP: u8 = 0xff;
/// In [`NEXT_BYTE`]: a quote, which a continuation may follow.
const QUOTE: u8 = 0xfe;

/// For each byte: the (lowercase) byte that must follow it to begin an
/// anchor, `&` after `u`/`U`, [`STOP`], [`QUOTE`], or 0 for bytes that
/// begin nothing.
/// Anchors that share a first byte share their second (checked here).
#[allow(clippy::indexing_slicing)] // Constant evaluation: a bad index fails the build.
const NEXT_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut k = 0;
    while k < ANCHORS.len() {
        let a = ANCHORS[k].as_bytes();
        let (first, second) = (a[0], a[1].to_ascii_lowercase());
        assert!(t[first as usize] == 0 || t[first as usize] == second);
        assert!(first != b'u' && first != b'U');
        t[first.to_ascii_lowercase() as usize] = second;
        t[first.to_ascii_uppercase() as usize] = second;
        k += 1;
    }
    t[b'u' as usize] = b'&';
    t[b'U' as usize] = b'&';
    t[0] = STOP;
    t[b'\\' as usize] = STOP;
    t[b'\'' as usize] = QUOTE;
    t
};

/// `'a'` newline `'b'` is one literal `'ab'` in SQL: a name split this way
/// would not appear in the raw text. Whether the quote at `at` is followed,
/// across whitespace or `--` comments that include a newline, by another
/// quote; and where the whitespace and comments after it end.
fn string_continues_after(b: &[u8], at: usize) -> (bool, usize) {
    let mut j = at.saturating_add(1);
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
    (newline && b.get(j) == Some(&b'\''), j)
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
    fn one_plain_statement_needs_no_parse_and_declines_the_rest() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 7;\n ; ",
            "SELECT * FROM agent_instances WHERE id = $1",
            " -- a comment\n/* x */ (SELECT 1) UNION SELECT 2",
            "INSERT INTO t (a, b) VALUES ('x', 'it''s') RETURNING id",
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            // Quotes inside a comment, and no continuation after it.
            "SELECT 'a' -- '-- '-- \n, 'b'",
            // Not valid SQL: the server refuses it with its own syntax error.
            "SELECT FROM WHERE (",
        ] {
            assert!(one_plain_statement(sql), "{sql}");
        }
        for sql in [
            // A second statement, or a `;` that may be inside a literal: the parser decides.
            "SELECT 1; SET ROLE postgres",
            "SELECT 1;SELECT 2",
            "SELECT 'a;b'",
            "SELECT 1; -- trailing comment",
            // Names the walk reacts to, in any case, or spelled so the bytes hide them.
            "SELECT Set_Config('app.current_organization_id', 'x', false)",
            "SELECT * FROM PG_STAT_ACTIVITY",
            "SELECT LO_import('/etc/passwd')",
            "SELECT * FROM ts_Stat('select 1')",
            "SELECT DBLINK('x', 'y')",
            "SELECT table_to_XML('t', true, true, '')",
            "SELECT U&\"\\0070g_sleep\"(1)",
            "SELECT u&'x'",
            "SELECT E'\\x41'",
            "SELECT 'set_'\n'config'",
            "SELECT 'set_' -- ' '\n 'config'",
            "SELECT 1\0",
            // Statements that are not queries or DML.
            "SET statement_timeout = 1",
            "RESET ALL",
            "DO $$ BEGIN END $$",
            "LISTEN x",
            "SELEC 1",
            "",
        ] {
            assert!(!one_plain_statement(sql), "{sql:?}");
        }
        let long = format!("SELECT 1 {}", " ".repeat(MAX_LEXICAL_BYTES));
        assert!(!one_plain_statement(&long));
        assert!(plainly_safe(&long));
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
