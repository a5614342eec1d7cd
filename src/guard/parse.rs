//! Parses statement text into PostgreSQL's parse tree (protobuf form) by
//! calling libpg_query's protobuf entry point directly.
//!
//! `pg_query::parse` does the same C call and decode, then builds table,
//! function and filter-column summaries the guard never reads; that summary
//! pass costs several times the parse itself. The C library is the one the
//! `pg_query` crate builds and links (its version is pinned in Cargo.toml, so
//! these declarations match `libpg_query/pg_query.h` of that release), and
//! the decoded tree is the crate's own `protobuf::ParseResult`. A test checks
//! the two entry points agree on both corpora.
//!
//! Input: untrusted statement text (valid UTF-8 without NUL, checked by the
//! caller).

use std::ffi::{c_char, c_int, CStr, CString};

use pg_query::protobuf::ParseResult;
use prost::Message;

#[repr(C)]
struct PgQueryError {
    message: *mut c_char,
    funcname: *mut c_char,
    filename: *mut c_char,
    lineno: c_int,
    cursorpos: c_int,
    context: *mut c_char,
}

#[repr(C)]
struct PgQueryProtobuf {
    len: usize,
    data: *mut c_char,
}

#[repr(C)]
struct PgQueryProtobufParseResult {
    parse_tree: PgQueryProtobuf,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

extern "C" {
    fn pg_query_parse_protobuf_opts(input: *const c_char, parser_options: c_int) -> PgQueryProtobufParseResult;
    fn pg_query_free_protobuf_parse_result(result: PgQueryProtobufParseResult);
}

/// Why a text has no parse tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// PostgreSQL's grammar rejects it (its message).
    Syntax(String),
    /// The tree is nested deeper than the guard's limit (or PostgreSQL's
    /// stack check).
    TooDeep,
    /// The tree has more nodes than the guard's limit.
    TooLarge,
    /// The text holds a NUL byte.
    Nul,
    /// A string in the tree (spelled with escapes) is not valid UTF-8.
    NotUtf8,
    /// The tree could not be written out (never expected; fail closed).
    Internal(String),
}

/// Parses `text` with PostgreSQL's grammar (default parser options).
pub(crate) fn parse(text: &str) -> Result<ParseResult, ParseError> {
    let input = CString::new(text).map_err(|_| ParseError::Nul)?;
    // SAFETY: `input` is a valid NUL-terminated string that outlives the
    // call; the result is freed exactly once below, after its buffers were
    // copied out (the error message) or decoded into owned values (the tree).
    let raw = unsafe { pg_query_parse_protobuf_opts(input.as_ptr(), 0) };
    let out = if !raw.error.is_null() {
        // SAFETY: a non-null error points to a PgQueryError whose message is
        // a NUL-terminated string owned by `raw`.
        let msg = unsafe { CStr::from_ptr((*raw.error).message) }
            .to_string_lossy()
            .into_owned();
        Err(ParseError::Syntax(msg))
    } else if raw.parse_tree.data.is_null() {
        Ok(ParseResult::default())
    } else {
        // SAFETY: on success `data` points to `len` bytes owned by `raw`.
        let bytes = unsafe { std::slice::from_raw_parts(raw.parse_tree.data as *const u8, raw.parse_tree.len) };
        ParseResult::decode(bytes).map_err(|_| ParseError::TooDeep)
    };
    // SAFETY: `raw` came from pg_query_parse_protobuf_opts and is freed once.
    unsafe { pg_query_free_protobuf_parse_result(raw) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_pg_query_parse() {
        let corpus = [
            "SELECT 1",
            "SELECT * FROM agent_instances WHERE id = $1",
            "WITH x AS (SELECT set_config('a.b', 'c', false)) SELECT * FROM x; SET ROLE none",
            "LISTEN jobs; NOTIFY jobs, 'x'",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
            "",
            "  ;  ",
        ];
        for sql in corpus {
            let ours = parse(sql).unwrap();
            let theirs = pg_query::parse(sql, 0).unwrap().protobuf;
            assert_eq!(ours, theirs, "{sql}");
        }
    }

    #[test]
    fn syntax_errors_and_nul_are_reported() {
        assert!(matches!(parse("SELEC 1"), Err(ParseError::Syntax(m)) if m.contains("syntax error")));
        assert_eq!(parse("SELECT 1\0"), Err(ParseError::Nul));
    }

    #[test]
    fn deep_trees_are_reported_not_crashed() {
        let deep = format!("SELECT 1{}", " + 1".repeat(300));
        assert!(parse(&deep).is_err());
    }
}
