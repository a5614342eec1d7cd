//! The pin contract: which settings the proxy fixes in every upstream session,
//! to which values, and which spellings of those values PostgreSQL itself
//! reads as the same thing. The handshake (client startup parameters), the
//! upstream login (the startup packet the proxy builds) and the statement
//! guard (`SET` of a pinned setting to its pinned value) all ask this module,
//! so the three can never disagree.
//!
//! Every value passed in here is untrusted client text; the functions only
//! compare, never allocate more than the input's size, and never panic.

/// The tenant, pinned from the token in every upstream startup packet.
pub const ORG_SETTING: &str = "app.current_organization_id";
/// The user, pinned from the token (empty for a token without one).
pub const USER_SETTING: &str = "app.current_user_id";

/// `client_encoding`, pinned to [`CLIENT_ENCODING_VALUE`].
pub const CLIENT_ENCODING: &str = "client_encoding";
/// The settings the proxy pins from the token at upstream startup: the
/// tenant, the user and the proof PostgreSQL verifies them with. The guard
/// protects them whatever its configuration says.
pub const PINNED_SETTINGS: [&str; 3] = [ORG_SETTING, USER_SETTING, crate::context::PROOF_SETTING];
/// The pinned client encoding, as PostgreSQL spells it canonically.
pub const CLIENT_ENCODING_VALUE: &str = "UTF8";
/// `standard_conforming_strings`, pinned to [`STANDARD_CONFORMING_STRINGS_VALUE`].
pub const STANDARD_CONFORMING_STRINGS: &str = "standard_conforming_strings";
/// The pinned value of `standard_conforming_strings`.
pub const STANDARD_CONFORMING_STRINGS_VALUE: &str = "on";

/// Whether PostgreSQL reads `name` as the UTF8 encoding.
///
/// This follows `clean_encoding_name` and `pg_char_to_encoding` in
/// PostgreSQL's `src/common/encnames.c`: every character that is not an ASCII
/// letter or digit is dropped, letters are lower-cased, and the result is
/// looked up, where `utf8` and its alias `unicode` both mean UTF8. So `UTF8`,
/// `utf-8`, `'utf-8'` (asyncpg sends the quotes), `Unicode` and `U_T_F_8` are
/// all UTF8, and `UTF16`, `SQL_ASCII` or an empty string are not.
///
/// PostgreSQL 15 puts no limit on the name's length (its tests here prove
/// it); newer releases refuse names of 64 bytes or more. Accepting them too is
/// safe: the proxy pins UTF8 whatever the client wrote, and a server that
/// refuses the name changes nothing.
pub fn is_utf8_encoding_name(name: &str) -> bool {
    cleaned_encoding_name_is(name, &[b"utf8", b"unicode"])
}

/// Whether PostgreSQL reads `name` as SQL_ASCII (same rules as
/// [`is_utf8_encoding_name`]). Interactive psql sends it in the C locale
/// (`client_encoding=auto`); the handshake accepts it at startup because the
/// session still runs as UTF8 and says so in ParameterStatus, which libpq
/// adopts. It never restates the pin: `SET client_encoding` to it would
/// really change how the server reads and writes text.
pub fn is_sql_ascii_encoding_name(name: &str) -> bool {
    cleaned_encoding_name_is(name, &[b"sqlascii"])
}

/// `clean_encoding_name(name)` is one of `targets` (each at most 8 bytes).
fn cleaned_encoding_name_is(name: &str, targets: &[&[u8]]) -> bool {
    let mut head = [0u8; 8];
    let mut n = 0;
    for b in name.bytes().filter(u8::is_ascii_alphanumeric) {
        match head.get_mut(n) {
            Some(slot) => *slot = b.to_ascii_lowercase(),
            // Longer than every target.
            None => return false,
        }
        n += 1;
    }
    head.get(..n).is_some_and(|h| targets.contains(&h))
}

/// Whether PostgreSQL's `parse_bool` reads `value` as true: a non-empty,
/// case-insensitive prefix of `true` or `yes`, `on` (at least two letters:
/// `o` alone is ambiguous), or `1`. No surrounding spaces are allowed.
pub fn is_pg_true(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    let prefix_of = |word: &str| !v.is_empty() && word.starts_with(v.as_str());
    prefix_of("true") || prefix_of("yes") || v == "on" || v == "1"
}

/// Whether setting `name` to `value` re-states what the proxy pinned, so it
/// changes nothing: `client_encoding` to any spelling of UTF8, or
/// `standard_conforming_strings` to any spelling of true. `name` is compared
/// case-insensitively; every other setting gives `false`.
pub fn restates_pin(name: &str, value: &str) -> bool {
    if name.eq_ignore_ascii_case(CLIENT_ENCODING) {
        is_utf8_encoding_name(value)
    } else if name.eq_ignore_ascii_case(STANDARD_CONFORMING_STRINGS) {
        is_pg_true(value)
    } else {
        false
    }
}

/// Whether a client may not set startup parameter `name` freely: the proxy
/// sets it itself from the token or pins it (`client_encoding` and
/// `standard_conforming_strings` are then accepted only when they restate the
/// pin), reads it (`user`, `database`, `options`), or refuses it outright
/// (`replication`, role changes, and every dotted placeholder such as
/// [`ORG_SETTING`]).
pub fn is_pinned_parameter(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "user"
            | "database"
            | "client_encoding"
            | "standard_conforming_strings"
            | "options"
            | "replication"
            | "role"
            | "session_authorization"
    ) || n.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_postgres_spelling_of_utf8_is_utf8() {
        for name in [
            "UTF8",
            "utf8",
            "utf-8",
            "'utf-8'",
            "\"UTF-8\"",
            "Unicode",
            "UNICODE",
            "U_T_F_8",
            " utf 8 ",
            "utf8\u{e9}",
            &format!("utf8{}", "-".repeat(2000)),
        ] {
            assert!(is_utf8_encoding_name(name), "{name:?}");
        }
    }

    #[test]
    fn other_encodings_and_oversized_names_are_not_utf8() {
        for name in [
            "",
            "'",
            "UTF16",
            "utf",
            "utf88",
            "SQL_ASCII",
            "LATIN1",
            "unicode8",
            "utf8utf8",
        ] {
            assert!(!is_utf8_encoding_name(name), "{name:?}");
        }
    }

    #[test]
    fn sql_ascii_spellings_are_recognised_but_do_not_restate_the_pin() {
        for name in ["SQL_ASCII", "sql-ascii", "'SqlAscii'"] {
            assert!(is_sql_ascii_encoding_name(name), "{name:?}");
            assert!(!restates_pin("client_encoding", name), "{name:?}");
        }
        assert!(!is_sql_ascii_encoding_name("sqlasciii"));
        assert!(!is_sql_ascii_encoding_name("utf8"));
    }

    #[test]
    fn pg_booleans_that_mean_true() {
        for v in ["on", "ON", "t", "TRUE", "tru", "y", "yes", "1"] {
            assert!(is_pg_true(v), "{v}");
        }
        for v in ["", "o", "off", "of", "0", "false", "no", " on", "truee", "yess", "2"] {
            assert!(!is_pg_true(v), "{v}");
        }
    }

    #[test]
    fn restating_the_pin_is_recognised_only_for_pinned_settings() {
        assert!(restates_pin("Client_Encoding", "'utf-8'"));
        assert!(restates_pin("standard_conforming_strings", "yes"));
        assert!(!restates_pin("client_encoding", "SJIS"));
        assert!(!restates_pin("standard_conforming_strings", "off"));
        assert!(!restates_pin("search_path", "utf8"));
    }
}
