//! The guard's policy against the shared corpora, without a server: every
//! must-pass statement is forwarded, every attack is refused with its
//! SQLSTATE, whether the verdict is computed or served from the cache.

mod guard_corpus;

use guard_corpus::{Case, Expect};
use pg_tenant_proxy::error::Severity;
use pg_tenant_proxy::guard::{Guard, GuardConfig, TenantScope, Verdict};
use std::sync::Arc;

fn guard_with(cfg: GuardConfig) -> Guard {
    match Guard::new(&cfg) {
        Ok(g) => g,
        Err(e) => panic!("config rejected: {e}"),
    }
}

fn scope() -> TenantScope {
    TenantScope::new(uuid::Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888))
}

/// Describes a mismatch, or `None` when the verdict is what the case expects.
fn mismatch(case: &Case, v: &Verdict) -> Option<String> {
    let ok = match (&case.expect, v) {
        (Expect::Allow, Verdict::Allow) | (Expect::Rewrite, Verdict::Rewrite(_)) => true,
        (Expect::Deny(code), Verdict::Deny(e)) => e.code.code() == code && e.severity == Severity::Error,
        _ => false,
    };
    if ok {
        None
    } else {
        Some(format!(
            "{} (class {:?}): expected {:?}, got {:?}",
            case.name, case.class, case.expect, v
        ))
    }
}

fn run_all(guard: &Guard, cases: &[Case], rounds: usize) -> Vec<String> {
    let s = scope();
    let mut failures = Vec::new();
    for _ in 0..rounds {
        for case in cases {
            for v in [guard.check_query(&case.sql, &s), guard.check_parse(&case.sql, &s)] {
                if let Some(m) = mismatch(case, &v) {
                    failures.push(m);
                }
            }
        }
    }
    failures
}

#[test]
fn corpora_large_enough_and_cover_every_class() {
    let pass = guard_corpus::must_pass();
    let attacks = guard_corpus::attacks();
    assert!(pass.len() >= 80, "must-pass corpus has {}", pass.len());
    assert!(attacks.len() >= 60, "attack corpus has {}", attacks.len());
    for class in [1u8, 2, 3, 4, 5, 7] {
        let n = attacks.iter().filter(|c| c.class == Some(class)).count();
        assert!(n >= 3, "class {class} has only {n} attacks");
    }
    assert!(attacks.iter().all(|c| c.class.is_some()));
}

#[test]
fn must_pass_statements_forwarded() {
    let g = guard_with(GuardConfig::default());
    // Two rounds: computed, then served from the cache.
    let failures = run_all(&g, &guard_corpus::must_pass(), 2);
    assert!(failures.is_empty(), "false positives:\n{}", failures.join("\n"));
}

#[test]
fn attacks_refused_with_sqlstate() {
    let g = guard_with(GuardConfig::default());
    let failures = run_all(&g, &guard_corpus::attacks(), 2);
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
}

#[test]
fn attacks_refused_with_cache_disabled() {
    let g = guard_with(GuardConfig {
        verdict_cache_entries: 0,
        ..GuardConfig::default()
    });
    let failures = run_all(&g, &guard_corpus::attacks(), 1);
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
    let failures = run_all(&g, &guard_corpus::must_pass(), 1);
    assert!(failures.is_empty(), "false positives:\n{}", failures.join("\n"));
}

#[test]
fn attack_after_safe_statement_refuses_whole_message() {
    let g = guard_with(GuardConfig::default());
    let s = scope();
    for case in guard_corpus::attacks() {
        let Some(sql) = case.sql_str() else { continue };
        if !matches!(case.expect, Expect::Deny(ref c) if c == "42501") {
            continue;
        }
        for wrapped in [format!("SELECT 1; {sql}"), format!("/* harmless */ {sql};\nSELECT 2")] {
            let v = g.check_query(wrapped.as_bytes(), &s);
            assert!(
                matches!(v, Verdict::Deny(_)),
                "{}: wrapped form {wrapped:?} gave {v:?}",
                case.name
            );
        }
    }
}

#[test]
fn fast_path_function_call_refused() {
    let g = guard_with(GuardConfig::default());
    match g.check_function_call() {
        Verdict::Deny(e) => {
            assert_eq!(e.code.code(), "42501");
            assert_eq!(e.severity, Severity::Error);
        }
        v => panic!("fast path gave {v:?}"),
    }
}

#[test]
fn refusal_messages_name_the_proxy_and_stay_short() {
    let g = guard_with(GuardConfig::default());
    let s = scope();
    for case in guard_corpus::attacks() {
        if let Verdict::Deny(e) = g.check_query(&case.sql, &s) {
            assert!(e.message.starts_with("pg-tenant-proxy: "), "{}", case.name);
            assert!(e.message.len() < 400, "{}", case.name);
        }
    }
}

#[test]
fn protected_setting_refusal_says_what_and_why() {
    let g = guard_with(GuardConfig::default());
    let v = g.check_query(b"SET app.current_organization_id = 'x'", &scope());
    let Verdict::Deny(e) = v else {
        panic!("not refused: {v:?}")
    };
    assert_eq!(
        e.message,
        "pg-tenant-proxy: setting \"app.current_organization_id\" is pinned by the proxy and cannot be changed"
    );
    assert!(e.hint.is_some());
}

#[test]
fn listen_rewritten_to_tenant_channel_and_back() {
    let g = guard_with(GuardConfig::default());
    let a = scope();
    let b = TenantScope::new(uuid::Uuid::from_u128(1));
    let (Verdict::Rewrite(ra), Verdict::Rewrite(rb)) =
        (g.check_query(b"LISTEN jobs", &a), g.check_query(b"LISTEN jobs", &b))
    else {
        panic!("LISTEN not rewritten")
    };
    assert_ne!(ra, rb, "two tenants share a channel");
    let upstream_a = a.scoped_channel("jobs");
    assert_eq!(ra, format!("LISTEN \"{upstream_a}\""));
    assert_eq!(a.unscope_channel(&upstream_a), Some("jobs"));
    assert_eq!(b.unscope_channel(&upstream_a), None);
}

#[test]
fn rewritten_text_keeps_other_statements_byte_identical() {
    let g = guard_with(GuardConfig::default());
    let s = scope();
    let sql = "SELECT 'a;b' ; NOTIFY jobs, 'x''y' ;\n/* c */ SELECT 2";
    let Verdict::Rewrite(out) = g.check_query(sql.as_bytes(), &s) else {
        panic!("not rewritten")
    };
    assert!(out.starts_with("SELECT 'a;b' ; NOTIFY \""), "{out}");
    assert!(out.ends_with(";\n/* c */ SELECT 2"), "{out}");
    assert!(out.contains(", 'x''y'"), "{out}");
    // The rewritten text itself passes the guard (scoped again, as expected).
    assert!(matches!(g.check_query(out.as_bytes(), &s), Verdict::Rewrite(_)));
}

#[test]
fn pg_notify_channel_argument_gets_the_tenant_prefix() {
    let g = guard_with(GuardConfig::default());
    let s = scope();
    let prefix = s.scoped_channel("");
    let cases = [
        (
            "select pg_notify($1, $2)".to_owned(),
            format!("select pg_notify(('{prefix}' || ($1\n)), $2)"),
        ),
        (
            "INSERT INTO t VALUES (1) RETURNING pg_catalog.pg_notify('jobs' -- c\n, 'x'); LISTEN jobs".to_owned(),
            format!(
                "INSERT INTO t VALUES (1) RETURNING pg_catalog.pg_notify(('{prefix}' || ('jobs'\n)) -- c\n, 'x'); LISTEN \"{prefix}jobs\""
            ),
        ),
        (
            "SELECT \"pg_notify\"(f(a, b[1]), 'p'), PG_NOTIFY(x, y) FROM u".to_owned(),
            format!("SELECT \"pg_notify\"(('{prefix}' || (f(a, b[1])\n)), 'p'), PG_NOTIFY(('{prefix}' || (x\n)), y) FROM u"),
        ),
    ];
    for (sql, want) in cases {
        match g.check_query(sql.as_bytes(), &s) {
            Verdict::Rewrite(out) => assert_eq!(out, want),
            other => panic!("{sql}: {other:?}"),
        }
    }
    // A spelling the scanner and the parser would count differently is refused.
    for sql in ["SELECT U&\"pg_notify\"('a', 'b')", "SELECT \"PG_NOTIFY\"('a', 'b')"] {
        assert!(matches!(g.check_query(sql.as_bytes(), &s), Verdict::Deny(_)), "{sql}");
    }
}

#[test]
fn channel_at_limit_accepted_and_one_byte_over_refused() {
    let g = guard_with(GuardConfig::default());
    let s = scope();
    let max = pg_tenant_proxy::guard::MAX_CLIENT_CHANNEL_BYTES;
    let ok = format!("LISTEN \"{}\"", "c".repeat(max));
    let over = format!("LISTEN \"{}\"", "c".repeat(max + 1));
    assert!(matches!(g.check_query(ok.as_bytes(), &s), Verdict::Rewrite(_)));
    assert!(matches!(g.check_query(over.as_bytes(), &s), Verdict::Deny(_)));
}

#[test]
fn do_block_allowed_only_when_configured() {
    let s = scope();
    let sql = b"DO $$ BEGIN RAISE NOTICE 'hi'; END $$";
    let strict = guard_with(GuardConfig::default());
    assert!(matches!(strict.check_query(sql, &s), Verdict::Deny(_)));
    let lax = guard_with(GuardConfig {
        allow_do_blocks: true,
        ..GuardConfig::default()
    });
    assert_eq!(lax.check_query(sql, &s), Verdict::Allow);
}

#[test]
fn allowed_create_function_still_checks_set_clause() {
    let g = guard_with(GuardConfig {
        allow_create_function: true,
        ..GuardConfig::default()
    });
    let s = scope();
    let fine = b"CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1";
    assert_eq!(g.check_query(fine, &s), Verdict::Allow);
    let pinned = b"CREATE FUNCTION f() RETURNS int LANGUAGE sql SET app.current_organization_id = 'x' RETURN 1";
    assert!(matches!(g.check_query(pinned, &s), Verdict::Deny(_)));
    let body = b"CREATE FUNCTION f() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT set_config('role', 'x', false); END";
    assert!(matches!(g.check_query(body, &s), Verdict::Deny(_)));
}

#[test]
fn shared_guard_consistent_across_threads() {
    let g = Arc::new(guard_with(GuardConfig {
        verdict_cache_entries: 32,
        ..GuardConfig::default()
    }));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let g = Arc::clone(&g);
            std::thread::spawn(move || {
                let mut failures = run_all(&g, &guard_corpus::attacks(), 2);
                failures.extend(run_all(&g, &guard_corpus::must_pass(), 2));
                failures
            })
        })
        .collect();
    for h in handles {
        match h.join() {
            Ok(f) => assert!(f.is_empty(), "{}", f.join("\n")),
            Err(_) => panic!("worker panicked"),
        }
    }
}

#[test]
#[ignore = "prints every verdict for review"]
fn print_verdicts() {
    let g = guard_with(GuardConfig::default());
    let s = scope();
    for case in guard_corpus::attacks().iter().chain(guard_corpus::must_pass().iter()) {
        let v = g.check_query(&case.sql, &s);
        let text = match v {
            Verdict::Deny(e) => format!("DENY {} {}", e.code.code(), e.message),
            other => format!("{other:?}"),
        };
        println!("{:45} {}", case.name, text);
    }
}
