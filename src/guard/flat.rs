//! Parses statement text with PostgreSQL's grammar and turns the tree into
//! one flattened [`Tree`] per statement, without a protobuf round trip.
//!
//! The C side (`flat.c`, compiled by `build.rs` against the libpg_query
//! sources the `pg_query` crate links) instantiates libpg_query's generated
//! walker over every node kind and writes one event per message, list and
//! non-default scalar, in the order and with the field names of pg_query's
//! protobuf messages. This module reads those events into [`Tree`]s.
//! Serialising the tree to protobuf and decoding it again was about
//! four-fifths of a full check; this path skips both (see
//! `docs/benchmarks.md`). A test checks that both paths give the same trees.
//!
//! Input: untrusted statement text (valid UTF-8, checked by the caller).

use std::ffi::{c_char, c_int, c_void, CString};

use super::parse::ParseError;
use super::tree::{Tree, Writer, MAX_ITEMS};

/// Deepest nesting of messages and lists the walk accepts. An expression
/// level costs one; PostgreSQL's own stack check stops far deeper input.
pub(crate) const MAX_DEPTH: u32 = 1000;

/// Most events for one text: every item plus the close of each container.
const MAX_EVENTS: usize = MAX_ITEMS * 2;

const STRUCT: u32 = 1;
const SEQ: u32 = 2;
const CLOSE: u32 = 3;
const STR: u32 = 4;
const INT: u32 = 5;
const TRUE: u32 = 6;
const NO_STMT: u32 = 7;

/// `PgtpEvent` in flat.c.
#[repr(C)]
struct Event {
    name: *const c_char,
    field: *const c_char,
    ival: i64,
    name_len: u32,
    field_len: u32,
    kind: u32,
}

/// `PgtpFlat` in flat.c.
#[repr(C)]
struct Output {
    events: *mut Event,
    len: usize,
    cap: usize,
    status: c_int,
    message: *mut c_char,
    ctx: *mut c_void,
    field: *const c_char,
    field_len: u32,
    depth: u32,
    max_depth: u32,
    max_events: usize,
}

extern "C" {
    fn pgtp_flat_parse(input: *const c_char, max_depth: u32, max_events: usize, out: *mut Output);
    fn pgtp_flat_free(out: *mut Output);
}

/// Owns the C side's result and frees it (events, error, parse tree memory).
struct Parsed(Output);

impl Drop for Parsed {
    fn drop(&mut self) {
        // SAFETY: `self.0` was filled by pgtp_flat_parse and is freed once;
        // pgtp_flat_free nulls what it frees.
        unsafe { pgtp_flat_free(&mut self.0) };
    }
}

/// Parses `text` (default parser options) into one tree per statement.
pub(crate) fn parse(text: &str) -> Result<Vec<Tree>, ParseError> {
    let input = CString::new(text).map_err(|_| ParseError::Nul)?;
    let mut parsed = Parsed(Output {
        events: std::ptr::null_mut(),
        len: 0,
        cap: 0,
        status: 0,
        message: std::ptr::null_mut(),
        ctx: std::ptr::null_mut(),
        field: std::ptr::null(),
        field_len: 0,
        depth: 0,
        max_depth: 0,
        max_events: 0,
    });
    // SAFETY: `input` is NUL-terminated and outlives the call; `parsed.0`
    // is a valid, exclusively borrowed Output that the call fills in.
    unsafe { pgtp_flat_parse(input.as_ptr(), MAX_DEPTH, MAX_EVENTS, &mut parsed.0) };
    let out = &parsed.0;
    match out.status {
        0 => {}
        1 => return Err(ParseError::Syntax(message(out))),
        2 => return Err(ParseError::TooDeep),
        4 => return Err(ParseError::TooLarge),
        _ => return Err(ParseError::Internal(message(out))),
    }
    if out.events.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: on success `events` points to `len` initialised events, owned
    // by `parsed`, which lives until the end of this function.
    let events = unsafe { std::slice::from_raw_parts(out.events, out.len) };
    read(events)
}

fn message(out: &Output) -> String {
    if out.message.is_null() {
        return String::new();
    }
    // SAFETY: a non-null message is a NUL-terminated string owned by `out`.
    unsafe { std::ffi::CStr::from_ptr(out.message) }
        .to_string_lossy()
        .into_owned()
}

/// A type or field name. flat.c passes only string literals of its own
/// object code for these (C identifiers: ASCII), so they live as long as the
/// program and need no UTF-8 check on this hot path.
fn static_name(ptr: *const c_char, len: u32) -> Result<&'static str, ParseError> {
    if len == 0 {
        return Ok("");
    }
    if ptr.is_null() {
        return Err(ParseError::Internal("null name".into()));
    }
    let len = usize::try_from(len).map_err(|_| ParseError::Internal("name length".into()))?;
    // SAFETY: `ptr` is a string literal in static storage (see above) with
    // at least `len` bytes.
    let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    debug_assert!(bytes.is_ascii());
    // SAFETY: the literals are C identifiers, ASCII and hence UTF-8.
    Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// A string value from the parse tree (valid while the events are).
fn value(ev: &Event) -> Result<&str, ParseError> {
    if ev.name.is_null() {
        return Err(ParseError::Internal("null string".into()));
    }
    let len = usize::try_from(ev.name_len).map_err(|_| ParseError::Internal("string length".into()))?;
    // SAFETY: for a STR event, `name` points to `name_len` bytes of the
    // parse tree, which is freed only when the owning `Parsed` drops.
    let bytes = unsafe { std::slice::from_raw_parts(ev.name.cast::<u8>(), len) };
    // An escape can spell bytes that are not UTF-8; fail closed.
    std::str::from_utf8(bytes).map_err(|_| ParseError::NotUtf8)
}

fn read(events: &[Event]) -> Result<Vec<Tree>, ParseError> {
    let limit = |e: super::tree::FlattenError| {
        if e.is_too_large() {
            ParseError::TooLarge
        } else {
            ParseError::Internal(e.to_string())
        }
    };
    let mut trees = Vec::with_capacity(1);
    let mut w = Writer::new();
    for ev in events {
        let field = static_name(ev.field, ev.field_len)?;
        if w.depth() == 0 && !matches!(ev.kind, STRUCT | NO_STMT) {
            return Err(ParseError::Internal("scalar outside a statement".into()));
        }
        match ev.kind {
            STRUCT => w
                .open_struct(field, static_name(ev.name, ev.name_len)?)
                .map_err(limit)?,
            SEQ => w.open_seq(field).map_err(limit)?,
            CLOSE => {
                w.close().map_err(limit)?;
                if w.depth() == 0 {
                    trees.push(std::mem::replace(&mut w, Writer::new()).finish().map_err(limit)?);
                }
            }
            STR => w.str(field, value(ev)?).map_err(limit)?,
            INT => w.int(field, ev.ival).map_err(limit)?,
            TRUE => w.truth(field).map_err(limit)?,
            NO_STMT => return Err(ParseError::Internal("statement without a tree".into())),
            _ => return Err(ParseError::Internal("unknown event".into())),
        }
    }
    if w.depth() != 0 {
        return Err(ParseError::Internal("unbalanced events".into()));
    }
    Ok(trees)
}
