//! Decides which run-time setting changes a client may make: `SET`, `RESET`,
//! `SET ... TO DEFAULT`, `SET ... FROM CURRENT` and `set_config(name, ...)`.
//!
//! Input: setting names and values as the parser decoded them from untrusted
//! SQL (quoting and `U&""` escapes already resolved). Names compare
//! ASCII-case-insensitively, as PostgreSQL's `guc_name_compare` does.

use super::limits::{LimitError, SettingLimits};
use super::refusal::{self, Refusal};

/// `VariableSetKind` numbers in pg_query's protobuf.
pub(crate) mod kind {
    pub const SET_VALUE: i64 = 1;
    pub const SET_DEFAULT: i64 = 2;
    pub const SET_CURRENT: i64 = 3;
    pub const SET_MULTI: i64 = 4;
    pub const RESET: i64 = 5;
    pub const RESET_ALL: i64 = 6;
}

/// Settings that switch the current role. Their reset value is the login
/// role, so `RESET`/`DEFAULT`/`SET ROLE NONE` are harmless and allowed.
const ROLE_SETTINGS: &[&str] = &["role", "session_authorization"];

/// Settings that change how the server lexes SQL text. The proxy parses
/// with `standard_conforming_strings=on` and UTF-8, pinned at startup.
const LEXING_SETTINGS: &[&str] = &[
    crate::pin::STANDARD_CONFORMING_STRINGS,
    crate::pin::CLIENT_ENCODING,
    "backslash_quote",
];

/// The multi-value `SET` forms the grammar produces (`SET TRANSACTION ...`,
/// `SET SESSION CHARACTERISTICS AS TRANSACTION ...`, `SET TRANSACTION
/// SNAPSHOT`). They change transaction modes, not named settings.
const MULTI_FORMS: &[&str] = &["transaction", "session characteristics", "transaction snapshot"];

/// A `SET`-family statement, reduced to what the policy needs.
pub(crate) struct SetRequest<'a> {
    /// `VariableSetKind` number.
    pub kind: i64,
    /// The setting name as the parser decoded it ("" for `RESET ALL`).
    pub name: &'a str,
    /// The first value if it is a plain string constant (e.g. `SET ROLE NONE`).
    pub first_value: Option<&'a str>,
    /// The first value if it is any constant (string, integer or number), as text.
    pub first_constant: Option<String>,
    /// How many values were given.
    pub nargs: usize,
}

/// Settings whose every allowed change is a no-op (restating the pin, or
/// returning to the login role).
pub(crate) fn is_noop_only(name: &str) -> bool {
    is_in(ROLE_SETTINGS, name) || is_in(LEXING_SETTINGS, name)
}

fn is_in(list: &[&str], name: &str) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The policy view of the configured protected names (already lowercased).
pub(crate) struct Settings {
    protected: Vec<String>,
    limits: SettingLimits,
}

/// The refusal for a value over a configured ceiling.
pub(crate) fn limit_refusal(e: &LimitError) -> Refusal {
    match e {
        LimitError::Exceeds { name, max } => refusal::over_limit(name, max),
        LimitError::Unreadable { name, max } => refusal::unreadable_limited(name, max),
    }
}

impl Settings {
    pub(crate) fn new(protected: Vec<String>, limits: SettingLimits) -> Settings {
        Settings { protected, limits }
    }

    pub(crate) fn is_limited(&self, name: &str) -> bool {
        self.limits.is_limited(name)
    }

    pub(crate) fn is_protected(&self, name: &str) -> bool {
        self.protected.iter().any(|p| p.eq_ignore_ascii_case(name))
    }

    /// Checks one `SET`/`RESET` (top level, in a function's `SET` clause, or
    /// anywhere else the grammar allows one).
    pub(crate) fn check_set(&self, req: &SetRequest<'_>) -> Result<(), Refusal> {
        match req.kind {
            kind::RESET_ALL => Ok(()),
            kind::SET_MULTI => {
                if is_in(MULTI_FORMS, req.name) {
                    Ok(())
                } else {
                    Err(refusal::unknown_set_form())
                }
            }
            kind::SET_VALUE | kind::SET_DEFAULT | kind::SET_CURRENT | kind::RESET => self.check_named(req),
            _ => Err(refusal::unknown_set_form()),
        }
    }

    fn check_named(&self, req: &SetRequest<'_>) -> Result<(), Refusal> {
        let name = req.name;
        if name.is_empty() {
            return Err(refusal::unknown_set_form());
        }
        if self.is_protected(name) {
            return Err(refusal::protected_setting(name));
        }
        let restores = req.kind == kind::RESET || req.kind == kind::SET_DEFAULT;
        if is_in(ROLE_SETTINGS, name) {
            // The startup value (the login role) comes back: harmless.
            if restores {
                return Ok(());
            }
            // `SET ROLE NONE` (PostgreSQL compares with "none" exactly).
            if req.kind == kind::SET_VALUE
                && name.eq_ignore_ascii_case("role")
                && req.nargs == 1
                && req.first_value == Some("none")
            {
                return Ok(());
            }
            return Err(refusal::role_change(name));
        }
        if is_in(LEXING_SETTINGS, name) {
            if restores {
                return Ok(());
            }
            if req.kind == kind::SET_VALUE
                && req.nargs == 1
                && req.first_value.is_some_and(|v| crate::pin::restates_pin(name, v))
            {
                return Ok(());
            }
            return Err(refusal::lexing_setting(name));
        }
        if self.limits.is_limited(name) && !restores && req.kind != kind::SET_CURRENT {
            let value = if req.nargs == 1 {
                req.first_constant.as_deref()
            } else {
                None
            };
            return self.limits.check(name, value).map_err(|e| limit_refusal(&e));
        }
        Ok(())
    }

    /// Checks the value given to `set_config(name, value, local)` for a
    /// setting with a ceiling (`None`: not a constant).
    pub(crate) fn check_set_config_value(&self, name: &str, value: Option<&str>) -> Result<(), Refusal> {
        self.limits.check(name, value).map_err(|e| limit_refusal(&e))
    }

    /// Checks the constant first argument of `set_config(name, value, local)`.
    pub(crate) fn check_set_config_name(&self, name: &str) -> Result<(), Refusal> {
        if name.is_empty() {
            return Err(refusal::set_config_not_constant());
        }
        if self.is_protected(name) {
            return Err(refusal::protected_setting(name));
        }
        if is_in(ROLE_SETTINGS, name) {
            return Err(refusal::role_change(name));
        }
        if is_in(LEXING_SETTINGS, name) {
            return Err(refusal::lexing_setting(name));
        }
        Ok(())
    }
}

/// Validates and normalises one configured protected name.
pub(crate) fn normalise_config_name(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("guard.protected_settings: empty setting name".into());
    }
    if raw.len() > 255 {
        return Err(format!(
            "guard.protected_settings: setting name longer than 255 bytes: {raw:?}"
        ));
    }
    let ok = raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'$');
    if !ok || raw.starts_with('.') || raw.ends_with('.') || raw.contains("..") {
        return Err(format!(
            "guard.protected_settings: {raw:?} is not a setting name \
             (letters, digits, '_', '$' and '.' separators only)"
        ));
    }
    Ok(raw.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::new(vec!["app.current_organization_id".into()], SettingLimits::default())
    }

    #[test]
    fn set_role_none_allowed_but_role_name_refused() {
        let s = settings();
        let none = SetRequest {
            kind: kind::SET_VALUE,
            name: "role",
            first_value: Some("none"),
            first_constant: Some("none".into()),
            nargs: 1,
        };
        assert!(s.check_set(&none).is_ok());
        let other = SetRequest {
            first_value: Some("postgres"),
            first_constant: Some("postgres".into()),
            ..none
        };
        assert!(s.check_set(&other).is_err());
    }

    #[test]
    fn config_names_validated() {
        assert!(normalise_config_name("App.Tenant").is_ok());
        assert!(normalise_config_name("").is_err());
        assert!(normalise_config_name("app. x").is_err());
        assert!(normalise_config_name("app..x").is_err());
    }
}
