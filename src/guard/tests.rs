//! Unit tests of the guard internals; the corpus tests live in
//! `tests/guard_unit.rs`.

use super::*;
use crate::error::SqlState;

fn guard() -> Guard {
    match Guard::new(&GuardConfig::default()) {
        Ok(g) => g,
        Err(e) => panic!("default config rejected: {e}"),
    }
}

fn scope() -> TenantScope {
    TenantScope::new(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef))
}

fn code(v: &Verdict) -> Option<SqlState> {
    match v {
        Verdict::Deny(e) => Some(e.code),
        _ => None,
    }
}

#[test]
fn plain_select_allowed() {
    let g = guard();
    assert_eq!(g.check_query(b"SELECT 1", &scope()), Verdict::Allow);
}

#[test]
fn second_statement_set_refused_whole_message() {
    let g = guard();
    let v = g.check_query(b"SELECT 1; SET app.current_organization_id = 'x'", &scope());
    assert_eq!(code(&v), Some(SqlState::InsufficientPrivilege));
}

#[test]
fn listen_in_multi_statement_rewrites_only_its_span() {
    let g = guard();
    let s = scope();
    let v = g.check_query(b"SELECT 1 ;  LISTEN Jobs ; SELECT 'x'", &s);
    let expected = format!(
        "SELECT 1 ;  LISTEN {}; SELECT 'x'",
        notify::quote_ident(&s.scoped_channel("jobs"))
    );
    assert_eq!(v, Verdict::Rewrite(expected));
}

#[test]
fn notify_payload_quoted() {
    let g = guard();
    let s = scope();
    let v = g.check_query(b"NOTIFY \"a\"\"b\", 'it''s'", &s);
    let expected = format!("NOTIFY {}, 'it''s'", notify::quote_ident(&s.scoped_channel("a\"b")));
    assert_eq!(v, Verdict::Rewrite(expected));
}

#[test]
fn unscope_drops_other_tenants() {
    let a = scope();
    let b = TenantScope::new(uuid::Uuid::from_u128(7));
    let up = a.scoped_channel("jobs");
    assert_eq!(a.unscope_channel(&up), Some("jobs"));
    assert_eq!(b.unscope_channel(&up), None);
    assert_eq!(a.unscope_channel("jobs"), None);
}

#[test]
fn cache_serves_repeated_statement() {
    let g = guard();
    let s = scope();
    for _ in 0..3 {
        assert_eq!(g.check_parse(b"SELECT * FROM t WHERE id = $1", &s), Verdict::Allow);
    }
    assert!(g.cache.as_ref().is_some_and(|c| c.len() == 1));
}

#[test]
fn config_always_protects_pinned_settings() {
    let cfg = GuardConfig {
        protected_settings: vec!["App.Other".into()],
        ..GuardConfig::default()
    };
    let Ok(g) = Guard::new(&cfg) else {
        panic!("config rejected")
    };
    for sql in [
        "SET app.other = 1",
        "SET app.current_organization_id = 'x'",
        "SET app.current_user_id = 'x'",
    ] {
        assert_eq!(
            code(&g.check_query(sql.as_bytes(), &scope())),
            Some(SqlState::InsufficientPrivilege),
            "{sql}"
        );
    }
}

#[test]
fn bad_config_name_rejected() {
    let cfg = GuardConfig {
        protected_settings: vec!["".into()],
        ..GuardConfig::default()
    };
    assert!(Guard::new(&cfg).is_err());
}

#[test]
fn guard_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Guard>();
    check::<TenantScope>();
}

#[path = "../../tests/guard_corpus/mod.rs"]
mod guard_corpus;

/// Texts to compare the prefilter and the walk on: both corpora, plus
/// variants of each (case changes, wrapped in a query, commented).
fn comparison_texts() -> Vec<String> {
    let mut out = Vec::new();
    for case in guard_corpus::must_pass().into_iter().chain(guard_corpus::attacks()) {
        let Some(sql) = case.sql_str() else { continue };
        out.push(sql.to_owned());
        out.push(sql.to_ascii_uppercase());
        out.push(sql.to_ascii_lowercase());
        out.push(format!("SELECT 1; {sql}"));
        out.push(format!("/* x */ ({sql})"));
        out.push(format!("WITH q AS ({sql}) SELECT * FROM q"));
        out.push(format!("SELECT * FROM t WHERE x IN ({sql})"));
    }
    out
}

#[test]
fn prefilter_never_passes_what_the_walk_refuses() {
    let g = guard();
    let mut passed = 0usize;
    for text in comparison_texts() {
        if text.contains('\0') || !prefilter::plainly_safe(&text) {
            continue;
        }
        passed += 1;
        match g.walk_text(&text) {
            Checked::Verdict(Cached::Allow) => {}
            Checked::Verdict(Cached::Deny(e)) => {
                panic!("prefilter passed {text:?}, walk refused: {}", e.message)
            }
            Checked::NeedsRewrite(_) => panic!("prefilter passed {text:?}, walk rewrites it"),
        }
    }
    // The prefilter must actually take part (plain queries skip the walk).
    assert!(passed > 50, "prefilter passed only {passed} texts");
}

#[test]
fn prefilter_refuses_nothing_itself() {
    // The prefilter only ever answers "plainly safe" or "don't know": every
    // attack must still be refused with the prefilter in the path.
    let g = guard();
    for case in guard_corpus::attacks() {
        assert!(
            matches!(g.check_query(&case.sql, &scope()), Verdict::Deny(_)),
            "{}",
            case.name
        );
    }
}

#[test]
fn deeply_nested_expression_refused_not_forwarded() {
    let g = guard();
    // Names pg_* so the prefilter declines and the full decode runs.
    let sql = format!("SELECT {}", vec!["pg_backend_pid()"; 400].join(" + "));
    assert_eq!(
        code(&g.check_query(sql.as_bytes(), &scope())),
        Some(SqlState::ProgramLimitExceeded)
    );
}

#[test]
fn direct_parse_agrees_with_pg_query_on_both_corpora() {
    for case in guard_corpus::must_pass().into_iter().chain(guard_corpus::attacks()) {
        let Some(sql) = case.sql_str() else { continue };
        if sql.contains('\0') {
            continue;
        }
        match (super::parse::parse(sql), pg_query::parse(sql, 0)) {
            (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs.protobuf, "{}", case.name),
            (Err(super::parse::ParseError::Syntax(a)), Err(pg_query::Error::Parse(b))) => {
                assert_eq!(a, b, "{}", case.name)
            }
            (Err(super::parse::ParseError::TooDeep), Err(pg_query::Error::Decode(_))) => {}
            (a, b) => panic!("{}: {a:?} vs {:?}", case.name, b.map(|_| ())),
        }
    }
}
