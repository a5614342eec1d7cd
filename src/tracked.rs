//! The session settings a client keeps in transaction pool mode, although
//! each of its transactions may run on a different database connection.
//!
//! The guard lets a session-level `SET`/`RESET`/`set_config(..., false)`
//! through only for these names (anything else is refused with 0A000 in that
//! mode), the pool reads their values back after a transaction that touched
//! them, and replays a client's values on a connection whose values differ.
//! Startup parameters forwarded upstream must be among them too.

/// Settings tracked per client, lower case, as `current_setting` accepts
/// them. Keep this list to settings that only change how results look or
/// how long a statement may take: nothing here widens what a tenant sees.
pub const TRACKED_SETTINGS: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_min_messages",
    "datestyle",
    "default_transaction_deferrable",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "extra_float_digits",
    "idle_in_transaction_session_timeout",
    "intervalstyle",
    "lock_timeout",
    "search_path",
    "statement_timeout",
    "timezone",
];

/// Whether `name` (any case; the grammar's `TIME ZONE` arrives as
/// `timezone`) is a tracked setting.
pub fn is_tracked(name: &str) -> bool {
    TRACKED_SETTINGS.iter().any(|t| t.eq_ignore_ascii_case(name))
}

/// Statement that reads every tracked setting, in [`TRACKED_SETTINGS`] order,
/// as one row of text columns.
pub fn readback_sql() -> String {
    let cols: Vec<String> = TRACKED_SETTINGS
        .iter()
        .map(|n| format!("pg_catalog.current_setting('{n}')"))
        .collect();
    format!("SELECT {}", cols.join(", "))
}

/// Statement that sets each `(index into TRACKED_SETTINGS, value)` for the
/// session, or `None` for an empty list. Values are quoted as SQL string
/// literals (standard_conforming_strings is pinned on, so only `'` needs
/// doubling).
pub fn replay_sql(changes: &[(usize, &str)]) -> Option<String> {
    if changes.is_empty() {
        return None;
    }
    let calls: Vec<String> = changes
        .iter()
        .filter_map(|(i, v)| {
            let name = TRACKED_SETTINGS.get(*i)?;
            Some(format!(
                "pg_catalog.set_config('{name}', '{}', false)",
                v.replace('\'', "''")
            ))
        })
        .collect();
    Some(format!("SELECT {}", calls.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_sorted_and_unique() {
        let mut sorted = TRACKED_SETTINGS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, TRACKED_SETTINGS);
        assert!(TRACKED_SETTINGS
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }

    #[test]
    fn replay_quotes_values() {
        let sql = replay_sql(&[(11, "a', public")]).unwrap();
        assert_eq!(sql, "SELECT pg_catalog.set_config('search_path', 'a'', public', false)");
        assert!(replay_sql(&[]).is_none());
        assert!(is_tracked("TimeZone") && !is_tracked("work_mem"));
    }
}
