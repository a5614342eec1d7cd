//! Log output that a client cannot forge. Client-supplied strings (the
//! startup user name, database, application_name, values quoted inside
//! refusal messages) reach the log; a newline or an escape sequence in one
//! could otherwise write a line that looks like another session's entry.
//!
//! Two layers: call sites log client strings with `?` (Debug), which quotes
//! and escapes them; and [`init`] installs a field formatter that escapes
//! every control character (and the Unicode line and paragraph separators)
//! in every field and message, whatever the call site did.

use std::fmt;

use tracing_subscriber::field::MakeExt;

/// Whether `c` must not appear raw in a log line.
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Writes `s` with every character that could break a log line escaped the
/// way Rust writes it (`\n`, `\r`, `\u{1b}`, ...).
pub fn write_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    for c in s.chars() {
        if needs_escape(c) {
            write!(out, "{}", c.escape_default())?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

/// `s` as it appears in the log.
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // Writing to a String cannot fail.
    let _ = write_escaped(&mut out, s);
    out
}

/// Installs the process-wide subscriber: `RUST_LOG` filter (default `info`),
/// to stderr. Text: ANSI colours only on a terminal, every field escaped.
/// JSON: one object per line with the session's span fields (connection id,
/// peer, organization, user); JSON string escaping keeps every client string
/// inside its field.
pub fn init(format: crate::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if format == crate::config::LogFormat::Json {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        return;
    }
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        if field.name() != "message" {
            write!(w, "{}=", field.name())?;
        }
        write_escaped(w, &text)
    })
    .delimited(" ");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(fields)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_escapes_are_escaped() {
        assert_eq!(
            escaped("app\n2026-01-01T00:00:00Z  INFO session started\r\u{1b}[2J\u{2028}x\t"),
            "app\\n2026-01-01T00:00:00Z  INFO session started\\r\\u{1b}[2J\\u{2028}x\\t"
        );
        assert_eq!(escaped("plain \"quoted\" ünïcode"), "plain \"quoted\" ünïcode");
    }
}
