//! The fuzz targets' committed corpora (`fuzz/corpus/<target>/`) replayed on
//! stable Rust through the same oracles (`fuzz/oracles.rs`), so `cargo test`
//! checks every committed input even where nightly or cargo-fuzz is missing;
//! and the oracles themselves shown able to fail: each one rejects the claims
//! the screen made before the CR-comment fix (parent of f3b0945).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../fuzz/oracles.rs"]
mod oracles;

use std::path::Path;

/// Each target's corpus must hold at least this many inputs: a missing or
/// emptied corpus fails instead of passing.
const MIN_INPUTS: usize = 200;

#[test]
fn every_committed_corpus_input_agrees_with_postgresql() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failures = Vec::new();
    for target in oracles::TARGETS {
        let dir = root.join(target);
        let mut n = 0usize;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if let Err(e) = oracles::check(target, &data) {
                failures.push(format!("{target} {}: {e}", path.display()));
            }
            n += 1;
        }
        assert!(n >= MIN_INPUTS, "{target}: only {n} corpus inputs in {}", dir.display());
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The seeds must reach the decisions the oracles judge, or a replay proves
/// nothing: some inputs pass each screen, some get rewritten.
#[test]
fn the_corpora_exercise_every_claim() {
    use pg_tenant_proxy::guard::probe;
    use pg_tenant_proxy::guard::Verdict;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let read = |target: &str| -> Vec<Vec<u8>> {
        std::fs::read_dir(root.join(target))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect()
    };
    let texts = |target: &str| -> Vec<String> {
        read(target)
            .into_iter()
            .filter_map(|d| String::from_utf8(d).ok())
            .collect()
    };
    let fast = texts("fast_path");
    let one = fast.iter().filter(|t| probe::one_plain_statement(t)).count();
    let many = fast.iter().filter(|t| probe::plainly_safe(t)).count();
    assert!(
        one >= 20 && many >= 20,
        "one_plain_statement {one}, plainly_safe {many}"
    );
    let kw = texts("first_keyword")
        .iter()
        .filter(|t| probe::starts_with_query_keyword(t))
        .count();
    assert!(kw >= 20, "starts_with_query_keyword true on {kw}");
    let cont = texts("string_continuation")
        .iter()
        .filter(|t| !oracles::continuations(t).is_empty())
        .count();
    assert!(cont >= 10, "{cont} inputs with a string continuation");
    let scope = pg_tenant_proxy::guard::TenantScope::new(oracles::ORG);
    let rewritten = read("notify_rewrite")
        .iter()
        .filter(|d| matches!(oracles::guard().check_query(d, &scope), Verdict::Rewrite(_)))
        .count();
    assert!(rewritten >= 10, "{rewritten} inputs rewritten");
}

#[test]
fn the_continuation_oracle_finds_known_continuations() {
    for (text, at) in [
        ("'a'\n'b'", 2),
        ("'a'\r'b'", 2),
        ("'a' -- c\r'b'", 2),
        ("SELECT 'x', E'a\\'b'\r\n'c'", 18),
        ("SELECT B'01'\x0c\n'10'", 11),
        ("SELECT 'it''s' /* */ , 'a'\n'b'", 25),
    ] {
        let found: Vec<usize> = oracles::continuations(text).into_iter().map(|(q, _)| q).collect();
        assert_eq!(found, vec![at], "{text:?}");
        assert!(
            oracles::check("string_continuation", text.as_bytes()).is_ok(),
            "{text:?}"
        );
    }
    for text in [
        "'a' 'b'",
        "'it''s'",
        "'a\n'",
        "'a' /* */\n'b'",
        "$$a$$\n'b'",
        "-- 'a'\n'b'",
        "'a'\n'b",
    ] {
        assert!(oracles::continuations(text).is_empty(), "{text:?}");
    }
}

/// The screen as it was before f3b0945: a `--` comment ended only at LF, and
/// only LF counted as the newline of a continuation.
fn old_string_continues_after(b: &[u8], at: usize) -> (bool, usize) {
    let mut j = at + 1;
    let mut newline = false;
    loop {
        match b.get(j) {
            Some(c) if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') => {
                newline |= *c == b'\n';
                j += 1;
            }
            Some(b'-') if b.get(j + 1) == Some(&b'-') => {
                while b.get(j).is_some_and(|c| *c != b'\n') {
                    j += 1;
                }
            }
            _ => break,
        }
    }
    (newline && b.get(j) == Some(&b'\''), j)
}

#[test]
fn each_oracle_rejects_the_old_screens_answers() {
    // The original bypass: the old screen read "a comment, then SELECT".
    for stmt in [
        "-- x\r/*\nSELECT */ SET app.current_organization_id = 'b'",
        "--\r/* \n select */ reset all",
        "\x0bSELECT 1",
        "select1",
        "SELECT$1",
        "selecté",
        "(SET x = 1)",
    ] {
        assert!(
            oracles::first_keyword_claim(stmt, true).is_err(),
            "first_keyword oracle accepted a false claim on {stmt:?}"
        );
    }
    for stmt in [
        "SELECT 1",
        "/* /* */ */ ((select 1))",
        "-- x\r\nTABLE t",
        "(\r\x0cvalues (1))",
    ] {
        assert!(oracles::first_keyword_claim(stmt, true).is_ok(), "{stmt:?}");
    }
    // A continuation after CR, which the old screen missed.
    let passes = |b: &[u8]| {
        !b.contains(&b'\\') && !old_string_continues_after(b, b.iter().position(|c| *c == b'\'').unwrap_or(0)).0
    };
    for text in ["SELECT 'set_'\r'config'", "SELECT 'set_' -- x\r'config'", "'a'\r'b'"] {
        assert!(
            oracles::string_continuation_claims(text, passes, old_string_continues_after).is_err(),
            "string_continuation oracle accepted the old screen on {text:?}"
        );
        assert!(
            oracles::check("string_continuation", text.as_bytes()).is_ok(),
            "{text:?}"
        );
    }
    // The old screen passed the bypass on the parse-free path: the fast-path
    // oracle rejects that answer, and accepts today's.
    let bypass = "-- x\r/*\nSELECT */ SET app.current_organization_id = 'b'";
    assert!(oracles::fast_path_claims(bypass, true, false).is_err());
    assert!(oracles::fast_path_claims("SELECT 1; SELECT 2", true, false).is_err());
    assert!(oracles::fast_path_claims("SELECT 1; SET ROLE x", false, true).is_err());
    assert!(oracles::check("fast_path", bypass.as_bytes()).is_ok());
    // Transaction pool mode: state that outlives the transaction, or a
    // tracked setting, on the parse-free path is a disagreement.
    for text in [
        "SELECT 1 AS a INTO TEMP t",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "DISCARD ALL",
        "EXECUTE p",
    ] {
        assert!(oracles::pooled_claims(text, true, false).is_err(), "{text:?}");
        assert!(oracles::check("fast_path", text.as_bytes()).is_ok(), "{text:?}");
    }
    assert!(oracles::pooled_claims("SELECT 1; SET search_path = a", false, true).is_err());
    assert!(oracles::pooled_claims("SELECT 1", true, true).is_ok());
}

#[test]
fn the_rewrite_oracle_checks_scoping() {
    for text in [
        "LISTEN x",
        "SELECT 1; NOTIFY a, 'p'; /* c */ UNLISTEN b;",
        "UNLISTEN *; LISTEN \"Q\"\"x\"",
    ] {
        assert!(oracles::check("notify_rewrite", text.as_bytes()).is_ok(), "{text:?}");
        let scope = pg_tenant_proxy::guard::TenantScope::new(oracles::ORG);
        assert!(
            matches!(
                oracles::guard().check_query(text.as_bytes(), &scope),
                pg_tenant_proxy::guard::Verdict::Rewrite(_)
            ),
            "{text:?}"
        );
    }
    // Wrong rewrites are caught: unscoped, another tenant's prefix, a changed
    // neighbour, a lost statement.
    let ours = |c: &str| format!("\"{}{c}\"", oracles::ORG_CHANNEL_PREFIX);
    for (old, new) in [
        ("LISTEN x", "LISTEN x".to_owned()),
        ("LISTEN x", "LISTEN \"qqqqqgAAQACAAAAAAAAAAg:x\"".to_owned()),
        ("SELECT 1; LISTEN x", format!("SELECT 2; LISTEN {}", ours("x"))),
        ("SELECT 1; LISTEN x", format!("LISTEN {}", ours("x"))),
        ("NOTIFY x, 'a'", format!("NOTIFY {}, 'b'", ours("x"))),
        (
            "SELECT 1; /* c */ LISTEN x",
            format!("SELECT 1; /* d */ LISTEN {}", ours("x")),
        ),
        (
            "LISTEN x; -- c\nSELECT 1",
            format!("LISTEN {}; -- d\nSELECT 1", ours("x")),
        ),
    ] {
        assert!(oracles::check_rewrite(old, &new).is_err(), "{old:?} -> {new:?}");
    }
    assert!(oracles::check_rewrite("SELECT 1; LISTEN x", &format!("SELECT 1; LISTEN {}", ours("x"))).is_ok());
    // pg_notify(): only the channel argument may change, and only by the prefix.
    let p = oracles::ORG_CHANNEL_PREFIX;
    assert!(oracles::check_rewrite(
        "SELECT pg_notify($1, $2)",
        &format!("SELECT pg_notify(('{p}' || ($1\n)), $2)")
    )
    .is_ok());
    for new in [
        "SELECT pg_notify($1, $2)".to_owned(),
        "SELECT pg_notify(('qqqqqgAAQACAAAAAAAAAAg:' || ($1\n)), $2)".to_owned(),
        format!("SELECT pg_notify(('{p}' || ($1\n)), $3)"),
        format!("SELECT pg_notify(('{p}' || ($1\n)), $2) FROM t"),
        format!("SELECT pg_notify($1 || '{p}', $2)"),
    ] {
        assert!(
            oracles::check_rewrite("SELECT pg_notify($1, $2)", &new).is_err(),
            "{new:?}"
        );
    }
    assert!(oracles::check("notify_rewrite", b"SELECT pg_notify('a', 'b')").is_ok());
    // Nodes after the channel move by the inserted bytes; only their
    // locations may differ (`ARRAY[...]` records where `[` and `]` were,
    // `x IN (...)` where its list was), never their contents.
    for old in [
        "SELECT`pg_notify('',(ARRAY[]))",
        "SELECT pg_notify($1, ARRAY['a', 'b']::text || (x IN (1, 2)))",
    ] {
        assert!(oracles::check("notify_rewrite", old.as_bytes()).is_ok(), "{old:?}");
    }
    let old = "SELECT pg_notify($1, ARRAY['a', 'b']::text || (x IN (1, 2)))";
    let scoped = |rest: &str| format!("SELECT pg_notify(('{p}' || ($1\n)), {rest}");
    assert!(oracles::check_rewrite(old, &scoped("ARRAY['a', 'b']::text || (x IN (1, 2)))")).is_ok());
    for rest in [
        "ARRAY['a', 'c']::text || (x IN (1, 2)))",
        "ARRAY['a']::text || (x IN (1, 2)))",
        "ARRAY['a', 'b']::text || (x IN (1, 3)))",
    ] {
        assert!(oracles::check_rewrite(old, &scoped(rest)).is_err(), "{rest:?}");
    }
    // The prefix the oracle expects is the guard's (computed independently).
    let scope = pg_tenant_proxy::guard::TenantScope::new(oracles::ORG);
    assert_eq!(scope.scoped_channel("x"), format!("{}x", oracles::ORG_CHANNEL_PREFIX));
}

/// The protocol targets' seeds reach what their oracles judge: whole frames
/// and each refusal, accepted packets of every kind, accepted and refused
/// `options`, ids found and refused in claims.
#[test]
fn the_protocol_corpora_exercise_every_claim() {
    use pg_tenant_proxy::protocol::startup::{probe as startup_probe, StartupPacket};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let read = |target: &str| -> Vec<Vec<u8>> {
        std::fs::read_dir(root.join(target))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect()
    };
    let (mut whole, mut bad, mut large) = (0, 0, 0);
    for d in read("frame") {
        let Some((&[sel, ..], stream)) = d.split_first_chunk::<3>() else {
            continue;
        };
        let m = oracles::model_frames(
            stream,
            oracles::FRAME_CAPS[usize::from(sel) % oracles::FRAME_CAPS.len()],
        );
        whole += usize::from(!m.frames.is_empty());
        match m.error {
            Some(pg_tenant_proxy::protocol::frame::FrameError::BadLength(_)) => bad += 1,
            Some(pg_tenant_proxy::protocol::frame::FrameError::TooLarge { .. }) => large += 1,
            None => {}
        }
    }
    assert!(
        whole >= 100 && bad >= 20 && large >= 20,
        "frames {whole}, bad lengths {bad}, too large {large}"
    );
    let mut kinds = std::collections::BTreeMap::new();
    for d in read("startup") {
        let Some((_, stream)) = d.split_first() else { continue };
        let kind = match startup_probe::read_packet(&[stream]).0 {
            Ok(StartupPacket::Startup { .. }) => "startup",
            Ok(StartupPacket::SslRequest) => "ssl",
            Ok(StartupPacket::GssEncRequest) => "gss",
            Ok(StartupPacket::Cancel { .. }) => "cancel",
            Err(_) => "refused",
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    for (kind, min) in [("startup", 20), ("ssl", 3), ("gss", 3), ("cancel", 5), ("refused", 50)] {
        assert!(kinds.get(kind).copied().unwrap_or(0) >= min, "{kinds:?}");
    }
    let opts = read("options");
    let accepted = opts
        .iter()
        .filter(|o| oracles::model_options(o).is_some_and(|p| !p.is_empty()))
        .count();
    let refused = opts.iter().filter(|o| oracles::model_options(o).is_none()).count();
    assert!(
        accepted >= 50 && refused >= 50,
        "options accepted {accepted}, refused {refused}"
    );
    let (mut found, mut refused) = (0, 0);
    for d in read("jwt_claims") {
        let split = d.iter().position(|b| *b == b'\n').unwrap_or(d.len());
        let (Ok(name), Ok(claims)) = (
            std::str::from_utf8(&d[..split]),
            serde_json::from_slice::<serde_json::Value>(d.get(split + 1..).unwrap_or_default()),
        ) else {
            continue;
        };
        match pg_tenant_proxy::auth::jwt::probe::uuid_claim(&claims, name) {
            Ok(Some(_)) => found += 1,
            Err(_) => refused += 1,
            Ok(None) => {}
        }
    }
    assert!(found >= 20 && refused >= 20, "claims found {found}, refused {refused}");
}

/// The `options` parser before it split words as PostgreSQL does: Rust's
/// ASCII whitespace (no vertical tab), and a trailing backslash refused.
fn old_parse_options(s: &str) -> Option<Vec<(String, String)>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.push(chars.next()?),
            c if c.is_ascii_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()?
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_owned()
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_owned()
        } else {
            return None;
        };
        let (k, v) = setting.split_once('=')?;
        if k.is_empty() {
            return None;
        }
        out.push((k.replace('-', "_"), v.to_owned()));
    }
    Some(out)
}

#[test]
fn the_protocol_oracles_know_postgres_and_reject_old_answers() {
    // pg_split_opts and getopt, by known answers.
    let words = |s: &[u8]| oracles::pg_split_opts(s);
    assert_eq!(
        words(b" a\x0bb\\ c\\\\ \\"),
        vec![b"a".to_vec(), b"b c\\".to_vec(), b"".to_vec()]
    );
    let pairs = |v: &[(&str, &str)]| {
        Some(
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        oracles::model_options(b"-c a=1\x0b--b-c=2"),
        pairs(&[("a", "1"), ("b_c", "2")])
    );
    assert_eq!(oracles::model_options(b"-ca=b=c --"), pairs(&[("a", "b=c")]));
    for refused in [&b"-c"[..], b"-e", b"foo", b"-c a", b"-- x", b"-c =1", b"-c a=1 \\"] {
        assert_eq!(oracles::model_options(refused), None, "{refused:?}");
    }
    // The old parser's answers are caught (vertical tab, trailing backslash).
    let old = [
        "-c application_name=x\x0b--statement_timeout=0",
        "-c a=b\\",
        "-c a=1 --",
    ];
    for text in old {
        assert_ne!(
            old_parse_options(text),
            oracles::model_options(text.as_bytes()),
            "{text:?}"
        );
        assert!(oracles::check("options", text.as_bytes()).is_ok(), "{text:?}");
    }
    // The frame layout, and a relay that forwarded an incomplete Terminate
    // would be caught: the one-read and byte-wise runs must agree.
    let m = oracles::model_frames(b"S\0\0\0\x04Q\0\0\0\x02", 64);
    assert_eq!(m.frames, vec![(b'S', vec![])]);
    assert_eq!(m.stop, 5);
    assert!(oracles::check("frame", b"\x07\x01\x00X\0\0\0\x07ab").is_ok());
    assert!(oracles::check("frame", b"\x07\x01\x00S\0\0\0\x04X\0\0\0\x04Q\0\0\0\x02").is_ok());
    // UUID spellings Uuid::parse_str takes, and ones it does not.
    let u = 0x1111_1111_2222_4333_8444_5555_5555_5555u128;
    for s in [
        "11111111-2222-4333-8444-555555555555",
        "111111112222433384445555555555 55",
        "{11111111-2222-4333-8444-555555555555}",
        "Urn:UUID:11111111-2222-4333-8444-555555555555",
        "11111111222243338444555555555555",
    ] {
        let want = (!s.contains(' ')).then_some(u);
        assert_eq!(oracles::model_uuid(s), want, "{s:?}");
        assert_eq!(uuid::Uuid::parse_str(s).ok().map(|x| x.as_u128()), want, "{s:?}");
    }
    for s in [
        "{11111111222243338444555555555555}",
        "urn:uuid:{11111111-2222-4333-8444-555555555555}",
    ] {
        assert_eq!(oracles::model_uuid(s), None, "{s:?}");
    }
}

/// The relay's reading of what a statement does to its transaction (used by
/// the `set_local` pin form) against PostgreSQL's parser, over every SQL
/// input of the committed corpora: a statement PostgreSQL parses as BEGIN,
/// START TRANSACTION or COPY is always seen as one that may open a block or
/// a COPY (so the proxy never sends its COMMIT in the same write), and a
/// single COMMIT or ROLLBACK (not ROLLBACK TO) is always seen as closing
/// the transaction.
#[test]
fn transaction_effects_agree_with_postgresql_on_every_corpus_input() {
    use pg_query::protobuf::node::Node;
    use pg_query::protobuf::TransactionStmtKind as K;
    use pg_tenant_proxy::guard::{closes_transaction, may_begin_or_copy};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let (mut opening, mut closing, mut parsed) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for target in ["fast_path", "first_keyword", "string_continuation", "notify_rewrite"] {
        for entry in std::fs::read_dir(root.join(target)).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            let Ok(sql) = std::str::from_utf8(&data) else { continue };
            let Ok(tree) = pg_query::parse(sql, 0) else { continue };
            parsed += 1;
            let nodes: Vec<Node> = tree
                .protobuf
                .stmts
                .iter()
                .filter_map(|s| s.stmt.as_ref().and_then(|n| n.node.clone()))
                .collect();
            for node in &nodes {
                let opens = match node {
                    Node::TransactionStmt(t) => matches!(t.kind(), K::TransStmtBegin | K::TransStmtStart),
                    Node::CopyStmt(_) => true,
                    _ => false,
                };
                if opens {
                    opening += 1;
                    if !may_begin_or_copy(sql.as_bytes()) {
                        failures.push(format!("opens a block or a COPY, not seen: {sql:?}"));
                    }
                }
            }
            if let [Node::TransactionStmt(t)] = nodes.as_slice() {
                if matches!(t.kind(), K::TransStmtCommit | K::TransStmtRollback) {
                    closing += 1;
                    if !closes_transaction(sql.as_bytes()) {
                        failures.push(format!("closes the transaction, not seen: {sql:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The corpora must reach both claims, or this proves nothing.
    assert!(
        parsed > 1000 && opening > 20 && closing > 10,
        "parsed {parsed}, opening {opening}, closing {closing}"
    );
}
