//! Names of functions and relations that open side channels between tenants
//! sharing one database role, or that run SQL the parser cannot see.
//!
//! Input: identifiers and function names as the parser decoded them from
//! untrusted SQL. Matching is ASCII-case-insensitive and ignores the schema,
//! so `pg_catalog."pg_terminate_backend"` and a look-alike in another schema
//! are both refused.

use super::refusal::{self, Refusal};

/// Refused wherever they appear as a name (function call, relation, operator
/// or cast definition, ...): each builds a different refusal message.
const ACTIVITY: &[&str] = &[
    "pg_stat_activity",
    "pg_stat_get_activity",
    "pg_stat_get_backend_activity",
    "pg_stat_statements",
    "pg_stat_statements_info",
    "pg_stat_statements_reset",
    "pg_locks",
    "pg_lock_status",
    "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids",
    "pg_isolation_test_session_is_blocked",
    "pgrowlocks",
    "pg_prepared_xacts",
    "pg_prepared_xact",
];

/// Statistics over every tenant's rows: table-level counters and the
/// planner's size estimates (`pg_stats` itself hides RLS tables).
const STATISTICS: &[&str] = &[
    "reltuples",
    "relpages",
    "relallvisible",
    "pg_relation_size",
    "pg_table_size",
    "pg_total_relation_size",
    "pg_indexes_size",
];

const SIGNAL: &[&str] = &[
    "pg_cancel_backend",
    "pg_terminate_backend",
    "pg_signal_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_log_backend_memory_contexts",
    "pg_promote",
];

const LARGE_OBJECT: &[&str] = &[
    "lo_close",
    "lo_creat",
    "lo_create",
    "lo_export",
    "lo_from_bytea",
    "lo_get",
    "lo_import",
    "lo_lseek",
    "lo_lseek64",
    "lo_open",
    "lo_put",
    "lo_tell",
    "lo_tell64",
    "lo_truncate",
    "lo_truncate64",
    "lo_unlink",
    "loread",
    "lowrite",
    "pg_largeobject",
    "pg_largeobject_metadata",
];

const ADVISORY: &[&str] = &[
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
];

/// Functions that execute SQL given to them as text.
const DYNAMIC_SQL: &[&str] = &[
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "ts_stat",
    // These read whole relations named by a string, so a refused view such as
    // pg_stat_activity could be read through them.
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    // Contrib functions that run a query given as text: tablefunc and xml2.
    "connectby",
    "xpath_table",
];

/// Function-name prefixes refused for calls only (a column may legitimately
/// be called `lo_limit`, but a function with that prefix is a large-object
/// or lock call, possibly a future one).
const CALL_PREFIXES: &[(&str, Family)] = &[
    ("lo_", Family::LargeObject),
    ("pg_advisory", Family::Advisory),
    ("pg_try_advisory", Family::Advisory),
    ("pg_stat_get_backend_", Family::Activity),
    ("dblink", Family::DynamicSql),
    ("crosstab", Family::DynamicSql),
    ("pg_stat_get_", Family::Statistics),
];

/// Name prefixes refused wherever they appear: the statistics views
/// (`pg_stat_user_tables`, `pg_statio_*`, `pg_stats_ext`, ...).
const NAME_PREFIXES: &[(&str, Family)] = &[("pg_stat", Family::Statistics)];

#[derive(Clone, Copy)]
enum Family {
    Activity,
    Signal,
    LargeObject,
    Advisory,
    DynamicSql,
    Notify,
    Statistics,
}

/// Functions that only release locks the calling session holds: harmless,
/// and sent by drivers' pool resets (asyncpg runs `pg_advisory_unlock_all()`).
const SESSION_LOCAL_UNLOCKS: &[&str] = &[
    "pg_advisory_unlock",
    "pg_advisory_unlock_all",
    "pg_advisory_unlock_shared",
];

fn refuse(family: Family, name: &str) -> Refusal {
    match family {
        Family::Activity => refusal::activity(name),
        Family::Signal => refusal::signal(name),
        Family::LargeObject => refusal::large_object(name),
        Family::Advisory => refusal::advisory_lock(name),
        Family::DynamicSql => refusal::dynamic_sql(name),
        Family::Notify => refusal::pg_notify(),
        Family::Statistics => refusal::statistics(name),
    }
}

fn exact_family(name: &str) -> Option<Family> {
    let lists: [(&[&str], Family); 7] = [
        (ACTIVITY, Family::Activity),
        (SIGNAL, Family::Signal),
        (LARGE_OBJECT, Family::LargeObject),
        (ADVISORY, Family::Advisory),
        (DYNAMIC_SQL, Family::DynamicSql),
        (&["pg_notify"], Family::Notify),
        (STATISTICS, Family::Statistics),
    ];
    lists
        .iter()
        .find(|(list, _)| list.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map(|(_, f)| *f)
}

/// Checks any identifier (relation, function, column, type or option name).
pub(crate) fn check_identifier(name: &str) -> Result<(), Refusal> {
    if let Some(f) = exact_family(name) {
        return Err(refuse(f, name));
    }
    if let Some((_, f)) = NAME_PREFIXES.iter().find(|(p, _)| starts_with_ignore_case(name, p)) {
        return Err(refuse(*f, name));
    }
    Ok(())
}

fn starts_with_ignore_case(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len()).is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

/// Checks the (unqualified) name of a called function.
pub(crate) fn check_call(name: &str) -> Result<(), Refusal> {
    check_identifier(name)?;
    let lower = name.to_ascii_lowercase();
    if SESSION_LOCAL_UNLOCKS.contains(&lower.as_str()) {
        return Ok(());
    }
    if let Some((_, f)) = CALL_PREFIXES.iter().find(|(p, _)| lower.starts_with(p)) {
        return Err(refuse(*f, name));
    }
    Ok(())
}

/// Every name or name prefix any rule of the walk reacts to. The prefilter
/// falls back to the full walk whenever a statement's text contains one
/// (a test checks that each contains one of the prefilter's anchors).
#[cfg(test)]
pub(crate) fn sensitive_names() -> impl Iterator<Item = &'static str> {
    ACTIVITY
        .iter()
        .chain(SIGNAL)
        .chain(LARGE_OBJECT)
        .chain(ADVISORY)
        .chain(DYNAMIC_SQL)
        .chain(STATISTICS)
        .chain(SESSION_LOCAL_UNLOCKS)
        .copied()
        .chain(CALL_PREFIXES.iter().map(|(p, _)| *p))
        .chain(NAME_PREFIXES.iter().map(|(p, _)| *p))
        .chain(["pg_notify", "set_config", "ts_rewrite", "pg_settings"])
}

/// Whether a name is `pg_settings` (updating it calls `set_config`).
pub(crate) fn is_pg_settings(name: &str) -> bool {
    name.eq_ignore_ascii_case("pg_settings")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalike_prefix_column_passes_but_call_refused() {
        assert!(check_identifier("lo_price").is_ok());
        assert!(check_call("lo_price").is_err());
        assert!(check_call("LO_IMPORT").is_err());
        assert!(check_call("lower").is_ok());
        assert!(check_call("current_setting").is_ok());
    }
}
