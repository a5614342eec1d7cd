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
//! transaction or cursor command (see [`QUERY_KEYWORDS`]), whose trees cannot
//! hold SET, DO, CREATE FUNCTION, ALTER ... SET, role, lock, two-phase,
//! LISTEN/NOTIFY or large-object statements; and the text must contain no
//! anchor of a name the walk reacts to (set_config, pg_*, lo_*, ..., compared
//! ASCII-case-insensitively), no `U&` or backslash escape and no string
//! continuation, so no such name can be spelled in a way the raw text does
//! not show.
//!
//! # Agreeing with PostgreSQL's lexer
//! The screen is a second lexer for the few constructs it reads: whitespace,
//! comments before the first keyword, the first keyword itself, string
//! continuations. It reads them exactly as `scan.l` does, and declines every
//! byte on which lexers disagree or that it does not model:
//! - whitespace is space, tab, LF, CR and form feed in every PostgreSQL
//!   version; a `--` comment ends at LF *or* CR (`newline [\n\r]`);
//! - vertical tab is whitespace for pg_query's lexer but not for a
//!   PostgreSQL 15 server, so a VT anywhere declines the text, as do NUL and
//!   every other C0 control byte except tab, LF, CR and form feed, and DEL;
//! - block comments nest, and `/*`, `*/` are read with flex's longest-match
//!   rules (see [`skip_block_comment`]);
//! - the keyword must end where PostgreSQL's identifier ends: a following
//!   letter, digit, `_`, `$` or non-ASCII byte makes it another identifier;
//! - a quote followed by whitespace and `--` comments containing a newline
//!   (LF or CR) and another quote is a continuation: the text is declined.
//!
//! The fuzz targets in `fuzz/` check this against PostgreSQL's own scanner
//! and parser (pg_query), and `tests/guard_soundness.rs` against a server.

/// Substrings at least one of which occurs in every sensitive name, and in
/// every keyword that turns a statement starting with one of
/// [`QUERY_KEYWORDS`] into one the walk refuses (`COMMIT PREPARED`).
pub(crate) const ANCHORS: &[&str] = &[
    "pg_",
    "pgrowlocks",
    "lo_",
    "loread",
    "lowrite",
    "set_config",
    "ts_stat",
    "ts_rewrite",
    "_to_xml",
    "dblink",
    "crosstab",
    "onnectby",
    "xpath_table",
    "repared",
    "reltuples",
    "relpages",
    "relallvisible",
];

/// Leading keywords of statements the prefilter may pass: queries and DML,
/// and the transaction and cursor commands drivers send all the time. None
/// of these statements can contain a SET, DO, function definition, role,
/// lock, LISTEN/NOTIFY or large-object node; the only things in them the walk
/// could refuse are names and `COMMIT`/`ROLLBACK PREPARED`, which the anchors
/// catch. (`PREPARE` is not here: `PREPARE TRANSACTION` is refused.)
pub(crate) const QUERY_KEYWORDS: &[&str] = &[
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

/// Whitespace in every PostgreSQL lexer (`space` in `scan.l`, less the
/// vertical tab that only newer lexers accept).
#[inline]
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// `newline` in `scan.l`: a `--` comment ends at either.
#[inline]
fn is_newline(c: u8) -> bool {
    matches!(c, b'\n' | b'\r')
}

/// `ident_cont` in `scan.l`: a byte that continues an identifier or keyword.
#[inline]
fn continues_identifier(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// No `;` other than trailing ones (with only whitespace around them).
fn at_most_one_statement(b: &[u8]) -> bool {
    match b.iter().position(|c| *c == b';') {
        None => true,
        Some(at) => b.iter().skip(at).all(|c| *c == b';' || is_space(*c)),
    }
}

/// No declined control byte, backslash, `U&`, anchor (ASCII case ignored) or
/// string continuation: every name in the text is spelled as the raw bytes
/// show it. One pass, no allocation: a byte is compared further only if it
/// and the next byte begin an anchor or `U&` (see [`NEXT_BYTE`]).
pub(crate) fn no_hidden_names(b: &[u8]) -> bool {
    // End of the last continuation scan: a quote before it lies inside the
    // whitespace or comment that scan crossed, and a continuation from it
    // would reach the same quote the scan reached (a `--` comment ends at
    // the first newline after it, which is also the first after the quote).
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

/// In [`NEXT_BYTE`]: this byte is never plainly safe (NUL, backslash,
/// vertical tab and the other control bytes no lexer treats as whitespace).
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
    let mut c = 0;
    while c < 0x20 {
        if !matches!(c, b'\t' | b'\n' | b'\r' | b'\x0c') {
            t[c as usize] = STOP;
        }
        c += 1;
    }
    t[0x7f] = STOP;
    t[b'\\' as usize] = STOP;
    t[b'\'' as usize] = QUOTE;
    t
};

/// `'a'` newline `'b'` is one literal `'ab'` in SQL: a name split this way
/// would not appear in the raw text. Whether the quote at `at` is followed,
/// across whitespace and `--` comments that include a newline (LF or CR),
/// by another quote; and where the whitespace and comments after it end.
/// It answers "continues" for every continuation PostgreSQL 15's `scan.l`
/// reads (`quotecontinue`), and for some texts that are not one (such as a
/// block comment's quote), which only sends them to the full walk. Newer
/// lexers also continue across a vertical tab (`'a'\x0b\n'b'`), which this
/// scan stops at; [`no_hidden_names`] declines every text with a VT, so such
/// a text never takes the parse-free path either way.
pub(crate) fn string_continues_after(b: &[u8], at: usize) -> (bool, usize) {
    let mut j = at.saturating_add(1);
    let mut newline = false;
    loop {
        match b.get(j) {
            Some(c) if is_space(*c) => {
                newline |= is_newline(*c);
                j = j.saturating_add(1);
            }
            Some(b'-') if b.get(j.saturating_add(1)) == Some(&b'-') => {
                while b.get(j).is_some_and(|c| !is_newline(*c)) {
                    j = j.saturating_add(1);
                }
            }
            _ => break,
        }
    }
    (newline && b.get(j) == Some(&b'\''), j)
}

/// Where the nested block comment starting at `at` (`/*`) ends, or `None`
/// if it does not end. `scan.l` reads `/*` as `xcstart` and `*/` as
/// `xcstop` (`\*+\/`: the last `*` of a run pairs with the `/`); both are
/// found here by looking at each byte and the next, which gives the same
/// pairs.
fn skip_block_comment(b: &[u8], at: usize) -> Option<usize> {
    let mut i = at;
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
                    return Some(i);
                }
            }
            (Some(_), _) => i = i.saturating_add(1),
            (None, _) => return None,
        }
    }
}

/// Whether a statement, after whitespace, comments and `(`, begins with one
/// of [`QUERY_KEYWORDS`] as a whole token.
pub(crate) fn starts_with_query_keyword(stmt: &str) -> bool {
    first_word(stmt).is_some_and(|word| QUERY_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word)))
}

/// The statement's first word if it is made of ASCII letters only and ends
/// where PostgreSQL's identifier ends (after whitespace, comments and
/// opening parentheses); `None` otherwise.
pub(crate) fn first_word(stmt: &str) -> Option<&str> {
    let b = stmt.as_bytes();
    let mut i = 0usize;
    loop {
        match b.get(i) {
            Some(c) if is_space(*c) || *c == b'(' => i = i.saturating_add(1),
            Some(b'-') if b.get(i.saturating_add(1)) == Some(&b'-') => {
                while b.get(i).is_some_and(|c| !is_newline(*c)) {
                    i = i.saturating_add(1);
                }
            }
            Some(b'/') if b.get(i.saturating_add(1)) == Some(&b'*') => match skip_block_comment(b, i) {
                Some(end) => i = end,
                None => return None,
            },
            _ => break,
        }
    }
    let word_end = b
        .iter()
        .skip(i)
        .position(|c| !c.is_ascii_alphabetic())
        .map_or(b.len(), |n| i.saturating_add(n));
    if b.get(word_end).is_some_and(|c| continues_identifier(*c)) {
        return None;
    }
    stmt.get(i..word_end).filter(|w| !w.is_empty())
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
    fn lexer_corners_decline_the_parse_free_path() {
        for sql in [
            // A `--` comment ends at CR: the server then reads a block comment
            // that hides the keyword the screen would otherwise see.
            "-- x\r/*\nSELECT */ SET app.current_organization_id = 'b'",
            "-- x\r/*\nSELECT */ ALTER ROLE CURRENT_USER SET work_mem = '1GB'",
            "--\r/* \n select */ reset all",
            // A CR is a newline in a string continuation, alone or after a comment.
            "SELECT 'set_'\r'config'",
            "SELECT 'set_' -- x\r'config'",
            "SELECT 'pg_'\x0c\r 'sleep'",
            // Vertical tab: whitespace for pg_query's lexer, not for PostgreSQL 15.
            "SELECT\x0b1",
            "SELECT 1 --\x0b",
            // Other control bytes and DEL.
            "SELECT 1\x01",
            "SELECT 1\x7f",
            // The keyword glued to identifier characters is another identifier.
            "SELECT1",
            "select_x",
            "SELECT$1",
            "selecté",
            // Refused by the walk although they start with a passing keyword.
            "COMMIT PREPARED 'x'",
            "ROLLBACK PREPARED 'x'",
            "PREPARE TRANSACTION 'x'",
            "PREPARE p AS SELECT 1",
            "SELECT * FROM pgrowlocks('t')",
            "SELECT * FROM crosstab('select 1')",
            "SELECT * FROM connectby('t', 'a', 'b', '1', 0)",
            "SELECT * FROM xpath_table('a','b','c','d','e')",
            "SELECT reltuples FROM pg_class",
            "SELECT RelPages FROM x",
        ] {
            assert!(!one_plain_statement(sql), "{sql:?}");
            assert!(!plainly_safe(sql), "{sql:?}");
        }
        for sql in [
            "-- x\nSELECT 1",
            "-- x\r\nSELECT 1",
            "/* a */\r\n\x0cSELECT 1\r\n",
            "SELECT 'x', 'y' -- z\r\n",
            "SELECT 'it''s', ''",
            "SELECT 'é'",
        ] {
            assert!(one_plain_statement(sql), "{sql:?}");
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
