//! Builds the ErrorResponse a client gets when the guard refuses a statement.
//!
//! Input: names taken from the client's own (untrusted) SQL are quoted into
//! messages, shortened and with control characters replaced; nothing else
//! about the session, the server or other tenants is ever included.

use crate::error::{ClientError, SqlState};

/// A refusal is a client-visible error with `Severity::Error`.
pub(crate) type Refusal = ClientError;

const PREFIX: &str = "pg-tenant-proxy: ";

/// Longest client-supplied name echoed back in a message, in characters.
const MAX_ECHO_CHARS: usize = 64;

/// Quotes a client-supplied name for a message: shortened, printable.
fn echo(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_ECHO_CHARS) + 2);
    out.push('"');
    for (n, c) in name.chars().enumerate() {
        if n >= MAX_ECHO_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

fn denied(message: String) -> Refusal {
    ClientError::error(SqlState::InsufficientPrivilege, format!("{PREFIX}{message}"))
}

pub(crate) fn protected_setting(name: &str) -> Refusal {
    denied(format!(
        "setting {} is pinned by the proxy and cannot be changed",
        echo(&name.to_ascii_lowercase())
    ))
    .with_hint(
        "The tenant and user are fixed for the whole session when it is opened; read them with current_setting().",
    )
    .with_class("protected_setting")
}

pub(crate) fn role_change(name: &str) -> Refusal {
    denied(format!(
        "changing {} is not allowed through the proxy: the session role is fixed",
        echo(&name.to_ascii_lowercase())
    ))
    .with_hint("RESET ROLE, SET ROLE NONE and RESET SESSION AUTHORIZATION are allowed.")
    .with_class("role_change")
}

pub(crate) fn lexing_setting(name: &str) -> Refusal {
    denied(format!(
        "setting {} cannot be changed: it alters how the server reads SQL text",
        echo(&name.to_ascii_lowercase())
    ))
    .with_hint("The proxy pins client_encoding=UTF8 and standard_conforming_strings=on; RESET restores them.")
    .with_class("lexing_setting")
}

pub(crate) fn over_limit(name: &str, max: &str) -> Refusal {
    denied(format!(
        "setting {} may be at most {max} through the proxy (and a timeout cannot be turned off)",
        echo(name)
    ))
    .with_hint("The operator sets this ceiling in guard.setting_limits; RESET restores the session's value.")
    .with_class("over_limit")
}

pub(crate) fn unreadable_limited(name: &str, max: &str) -> Refusal {
    denied(format!(
        "setting {} has a ceiling of {max} through the proxy: give it as a constant number with a unit, e.g. '{max}'",
        echo(name)
    ))
    .with_class("unreadable_limited")
}

pub(crate) fn unknown_set_form() -> Refusal {
    denied("this form of SET is not recognised by the proxy".into()).with_class("unknown_set_form")
}

pub(crate) fn set_config_not_constant() -> Refusal {
    denied("set_config() is allowed only with a constant setting name as its first argument".into())
        .with_hint("Write the setting name as a string literal, e.g. set_config('application_name', $1, false).")
        .with_class("set_config_not_constant")
}

pub(crate) fn set_config_elsewhere() -> Refusal {
    denied("set_config may only be called directly, with a constant setting name".into())
        .with_class("set_config_elsewhere")
}

pub(crate) fn code_block(what: &str) -> Refusal {
    denied(format!(
        "{what} is not allowed through the proxy: its code cannot be inspected"
    ))
    .with_class("code_block")
}

pub(crate) fn settings_persisted(what: &str) -> Refusal {
    denied(format!(
        "{what} is not allowed through the proxy: it changes settings of other sessions"
    ))
    .with_class("settings_persisted")
}

pub(crate) fn role_management(what: &str) -> Refusal {
    denied(format!(
        "{what} is not allowed through the proxy: roles are managed by the operator"
    ))
    .with_class("role_management")
}

pub(crate) fn activity(name: &str) -> Refusal {
    denied(format!(
        "{} is not available through the proxy: it shows other sessions' activity",
        echo(name)
    ))
    .with_class("activity")
}

pub(crate) fn signal(name: &str) -> Refusal {
    denied(format!(
        "{} is not available through the proxy: sessions of other tenants share this role",
        echo(name)
    ))
    .with_hint("Use pg_cancel_backend on your own queries by cancelling them from the client (CancelRequest).")
    .with_class("signal")
}

pub(crate) fn large_object(name: &str) -> Refusal {
    denied(format!(
        "large objects ({}) are not available through the proxy: they are shared by all tenants",
        echo(name)
    ))
    .with_hint("Store binary data in a bytea column of a tenant table.")
    .with_class("large_object")
}

/// Something transaction pool mode cannot offer: 0A000, naming the mode.
pub(crate) fn pooled(what: &str, hint: &str) -> Refusal {
    ClientError::error(
        SqlState::FeatureNotSupported,
        format!(
            "{PREFIX}{what} is not available in transaction pool mode: the database connection \
             is shared, one transaction at a time, with other sessions and tenants"
        ),
    )
    .with_hint(hint)
    .with_class("transaction_pooling")
}

pub(crate) fn pooled_session_setting(name: &str) -> Refusal {
    pooled(
        &format!("a session-level change of {}", echo(name)),
        "Use SET LOCAL (or set_config(name, value, true)) inside the transaction; only these settings \
         are carried between transactions: application_name, bytea_output, client_min_messages, DateStyle, \
         default_transaction_*, extra_float_digits, idle_in_transaction_session_timeout, IntervalStyle, \
         lock_timeout, search_path, statement_timeout, TimeZone.",
    )
}

pub(crate) fn pooled_outside_block(what: &str) -> Refusal {
    pooled(
        what,
        "It runs only outside a transaction block, and the proxy pins the tenant inside each transaction; \
         run it from a session-mode proxy or as the database owner.",
    )
}

pub(crate) fn advisory_lock(name: &str) -> Refusal {
    denied(format!(
        "advisory locks ({}) are not available through the proxy: their keys are shared by all tenants",
        echo(name)
    ))
    .with_hint("Use row locks (SELECT ... FOR UPDATE) on a tenant row instead.")
    .with_class("advisory_lock")
}

pub(crate) fn statistics(name: &str) -> Refusal {
    denied(format!(
        "{} is not available through the proxy: it counts or describes rows of every tenant",
        echo(name)
    ))
    .with_class("statistics")
}

pub(crate) fn table_lock() -> Refusal {
    denied("LOCK TABLE in this mode is not allowed through the proxy: it would block other tenants".into())
        .with_hint("Lock your own rows with SELECT ... FOR UPDATE; ACCESS SHARE, ROW SHARE and ROW EXCLUSIVE table locks are allowed.")
    .with_class("table_lock")
}

pub(crate) fn two_phase(what: &str) -> Refusal {
    denied(format!(
        "{what} is not allowed through the proxy: prepared transactions outlive the session and are visible to other tenants"
    ))
    .with_class("two_phase")
}

pub(crate) fn explain() -> Refusal {
    denied(
        "EXPLAIN is not available through the proxy: its row estimates come from statistics over every tenant's rows"
            .into(),
    )
    .with_hint("Run EXPLAIN as a DBA directly on the database, or set guard.allow_explain = true.")
    .with_class("explain")
}

pub(crate) fn pg_notify() -> Refusal {
    denied("pg_notify() is available through the proxy only as a direct call with two arguments in a query or DML statement".into())
        .with_hint("Call pg_notify(channel, payload) from SELECT, INSERT, UPDATE or DELETE, or use NOTIFY: the proxy scopes the channel to your tenant.")
    .with_class("pg_notify")
}

pub(crate) fn dynamic_sql(name: &str) -> Refusal {
    denied(format!(
        "{} is not available through the proxy: it runs SQL the proxy cannot inspect",
        echo(name)
    ))
    .with_class("dynamic_sql")
}

pub(crate) fn pg_settings_write() -> Refusal {
    denied("writing to pg_settings is not allowed through the proxy: it changes settings".into())
        .with_hint("Use SET or set_config() with a constant setting name.")
        .with_class("pg_settings_write")
}

pub(crate) fn nested_notify() -> Refusal {
    denied("LISTEN, NOTIFY and UNLISTEN are allowed only as statements of their own".into()).with_class("nested_notify")
}

pub(crate) fn channel_too_long(max: usize) -> Refusal {
    denied(format!(
        "channel name is too long: at most {max} bytes are available through the proxy"
    ))
    .with_class("channel_too_long")
}

pub(crate) fn fast_path() -> Refusal {
    denied("the fast-path function call interface is not available through the proxy".into())
        .with_hint("Call the function with a SELECT statement instead.")
        .with_class("fast_path")
}

pub(crate) fn unparsable(parser_message: &str) -> Refusal {
    ClientError::error(
        SqlState::SyntaxError,
        format!(
            "{PREFIX}statement refused because it could not be parsed: {}",
            parser_message.chars().take(200).collect::<String>()
        ),
    )
    .with_class("unparsable")
}

pub(crate) fn too_deep() -> Refusal {
    ClientError::error(
        SqlState::ProgramLimitExceeded,
        format!("{PREFIX}statement refused: it is nested too deeply for the proxy to inspect"),
    )
    .with_hint("Split long chains of operators or deeply nested expressions.")
    .with_class("too_deep")
}

pub(crate) fn too_large() -> Refusal {
    ClientError::error(
        SqlState::ProgramLimitExceeded,
        format!("{PREFIX}statement refused: its parse tree is too large for the proxy to inspect"),
    )
    .with_hint("Send fewer rows or statements per message.")
    .with_class("too_large")
}

pub(crate) fn statement_too_long(len: usize, max: usize) -> Refusal {
    ClientError::error(
        SqlState::ProgramLimitExceeded,
        format!(
            "{PREFIX}statement refused: it is {len} bytes long; the proxy inspects statements of up to {max} bytes"
        ),
    )
    .with_hint("Send fewer rows or statements per message, or raise guard.max_statement_bytes.")
    .with_class("statement_too_long")
}

pub(crate) fn invalid_utf8() -> Refusal {
    ClientError::error(
        SqlState::CharacterNotInRepertoire,
        format!("{PREFIX}statement refused: it is not valid UTF-8"),
    )
    .with_hint("The proxy pins client_encoding=UTF8.")
    .with_class("invalid_utf8")
}

pub(crate) fn nul_byte() -> Refusal {
    ClientError::error(
        SqlState::CharacterNotInRepertoire,
        format!("{PREFIX}statement refused: it contains a zero byte"),
    )
    .with_class("nul_byte")
}

pub(crate) fn internal() -> Refusal {
    denied("statement refused: the proxy could not inspect it".into()).with_class("internal")
}
